"""Channel-wise distillation: KL divergence between per-channel spatial distributions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import Tensor, nn

__all__ = ["ChannelWiseDivergence", "channel_wise_divergence"]


def _check_pair(student: Tensor, teacher: Tensor) -> None:
    if student.dim() != 4 or teacher.dim() != 4:
        raise ValueError(
            "channel_wise_divergence needs 4-D (N, C, H, W) features, got student shape "
            f"{tuple(student.shape)} and teacher shape {tuple(teacher.shape)}; record a convolutional feature map"
        )
    if student.shape != teacher.shape:
        raise ValueError(
            f"channel_wise_divergence: student shape {tuple(student.shape)} and teacher shape "
            f"{tuple(teacher.shape)} differ; add a connector to the pair (e.g. ConvConnector with "
            "in_channels/out_channels, resize for H, W) or pick layers whose shapes match"
        )


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise ValueError(f"channel_wise_divergence: tau must be > 0, got {tau}")


def channel_wise_divergence(student: Tensor, teacher: Tensor, tau: float = 1.0) -> Tensor:
    """Channel-wise KL divergence KL(p_T || p_S) (Shu et al., arXiv 2011.13256), as in mmrazor.

    Each channel of each sample is turned into a distribution over its H*W positions,
    ``p = softmax(x / tau)``; the loss is ``tau^2 * sum_{n,c} KL(p_T[n,c] || p_S[n,c]) / (N * C)``.

    Computed in float32 or wider (half inputs are cast up; autocast is off inside) with ``log_softmax``
    for stability. The teacher is a constant target (detached).

    Args:
        student: student feature (N, C, H, W).
        teacher: teacher feature, same shape.
        tau: softmax temperature, > 0.

    Returns:
        The scalar loss.

    Raises:
        ValueError: if the features are not 4-D, their shapes differ, or ``tau <= 0``.
    """
    _check_pair(student, teacher)
    _check_tau(tau)
    with torch.autocast(device_type=student.device.type, enabled=False):
        n, c, h, w = student.shape
        s = student.float() if student.dtype in (torch.float16, torch.bfloat16) else student
        t = teacher.detach()
        t = t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
        log_p_s = F.log_softmax(s.reshape(n * c, h * w) / tau, dim=1)  # (N*C, H*W)
        log_p_t = F.log_softmax(t.reshape(n * c, h * w) / tau, dim=1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
        return kl * (tau**2) / (n * c)


@LOSS_REGISTRY.register()
class ChannelWiseDivergence(nn.Module):
    """Channel-wise distillation loss; see :func:`channel_wise_divergence`.

    Shu et al., "Channel-wise Knowledge Distillation for Dense Prediction", ICCV 2021 (arXiv 2011.13256);
    the same formula as mmrazor's ``ChannelWiseDivergence``:
    ``loss = loss_weight * tau^2 * sum p_T * (log p_T - log p_S) / (N * C)``, with ``p = softmax(x / tau)``
    over the H*W positions of each channel.

    YAML::

        loss: {type: ChannelWiseDivergence, tau: 4.0, loss_weight: 1.0}

    Args:
        tau: softmax temperature, > 0.
        loss_weight: multiplies the loss.
    """

    def __init__(self, tau: float = 1.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        _check_tau(tau)
        self.tau = float(tau)
        self.loss_weight = float(loss_weight)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Weighted :func:`channel_wise_divergence` of ``student`` against the constant ``teacher``."""
        return self.loss_weight * channel_wise_divergence(student, teacher, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, loss_weight={self.loss_weight}"
