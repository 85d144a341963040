"""Channel-wise distillation: KL divergence between per-channel spatial distributions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["ChannelWiseDivergence", "CWDTarget", "channel_wise_divergence", "cwd_target"]


@dataclass(frozen=True)
class CWDTarget:
    """The teacher's side of a CWD term, computed once (no autograd) and shared by every pair reading that feature.

    Attributes:
        logits: ``T / tau`` per channel, ``(N*C, H*W)``, float32 or wider.
        prob: ``p_T = softmax(T / tau)`` over each channel's positions, same shape.
        lse: ``logsumexp(T / tau)`` per channel, ``(N*C, 1)``: ``log p_T = logits - lse``.
        shape: the teacher feature's ``(N, C, H, W)``.
        tau: the temperature it was computed at.
    """

    logits: Tensor
    prob: Tensor
    lse: Tensor
    shape: tuple[int, ...]
    tau: float


def _check_pair(student: Tensor, teacher_shape: tuple[int, ...]) -> None:
    if student.dim() != 4 or len(teacher_shape) != 4:
        raise ValueError(
            "channel_wise_divergence needs 4-D (N, C, H, W) features, got student shape "
            f"{tuple(student.shape)} and teacher shape {tuple(teacher_shape)}; record a convolutional feature map"
        )
    if tuple(student.shape) != tuple(teacher_shape):
        raise ValueError(
            f"channel_wise_divergence: student shape {tuple(student.shape)} and teacher shape "
            f"{tuple(teacher_shape)} differ; add a connector to the pair (e.g. ConvConnector with "
            "in_channels/out_channels, resize for H, W) or pick layers whose shapes match"
        )


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise ValueError(f"channel_wise_divergence: tau must be > 0, got {tau}")


def _wide(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _softmax_lse(logits: Tensor) -> tuple[Tensor, Tensor]:
    """``softmax`` and ``logsumexp`` of each row from one fused softmax (``exp`` is the costly part on a CPU).

    The largest probability of a row is ``exp(max - lse)``, at least ``1 / (H*W)``: its log gives the lse precisely.
    """
    prob = torch.softmax(logits, dim=1)
    return prob, logits.amax(dim=1, keepdim=True) - prob.amax(dim=1, keepdim=True).log()


def cwd_target(teacher: Tensor, tau: float = 1.0) -> CWDTarget:
    """The teacher's per-channel spatial distributions at ``tau`` (a constant: no autograd, float32 or wider)."""
    _check_tau(tau)
    if teacher.dim() != 4:
        raise ValueError(
            f"channel_wise_divergence needs 4-D (N, C, H, W) features, got teacher shape {tuple(teacher.shape)}; "
            "record a convolutional feature map"
        )
    n, c, h, w = teacher.shape
    with torch.no_grad(), torch.autocast(device_type=teacher.device.type, enabled=False):
        logits = _wide(teacher.detach()).reshape(n * c, h * w) / tau  # (N*C, H*W)
        prob, lse = _softmax_lse(logits)
    return CWDTarget(logits, prob, lse, (n, c, h, w), float(tau))


class _KLToTarget(torch.autograd.Function):
    """``sum KL(p_T || softmax(S / tau))`` over rows of the student feature ``S``, fused into one autograd step.

    ``KL = sum p_T (x_T - x) - sum_rows (lse_T - lse(x))`` with ``x = S / tau`` (each row of ``p_T`` sums to 1): one
    softmax forward, and the gradient written out, ``(softmax(x) - p_T) / tau``. Zero for identical inputs, exactly.
    """

    @staticmethod
    def forward(ctx, student: Tensor, target: CWDTarget) -> Tensor:  # student (N*C, H*W)
        logits = student / target.tau
        prob, lse = _softmax_lse(logits)
        kl = torch.dot(target.prob.reshape(-1), (target.logits - logits).reshape(-1)) - (target.lse - lse).sum()
        ctx.save_for_backward(prob, target.prob)
        ctx.tau = target.tau
        return kl

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        prob, target_prob = ctx.saved_tensors
        return (prob - target_prob).mul_(grad / ctx.tau), None  # not in place: backward may run twice (retain_graph)


def channel_wise_divergence(student: Tensor, teacher: Tensor | CWDTarget, tau: float = 1.0) -> Tensor:
    """Channel-wise KL divergence KL(p_T || p_S) (Shu et al., arXiv 2011.13256), as in mmrazor.

    Each channel of each sample is turned into a distribution over its H*W positions,
    ``p = softmax(x / tau)``; the loss is ``tau^2 * sum_{n,c} KL(p_T[n,c] || p_S[n,c]) / (N * C)``.

    Computed in float32 or wider (half inputs are cast up; autocast is off inside) with fused softmaxes, stable
    for large values. The teacher is a constant target (detached): its side, a
    :class:`CWDTarget` (:func:`cwd_target`), can be computed once and passed instead of the tensor to every pair
    that reads the same teacher feature. The student's side is one fused autograd step (one ``exp`` pass forward,
    the gradient ``softmax(S / tau) - p_T`` written out).

    Args:
        student: student feature (N, C, H, W).
        teacher: teacher feature, same shape, or its :func:`cwd_target` at the same ``tau``.
        tau: softmax temperature, > 0.

    Returns:
        The scalar loss.

    Raises:
        ValueError: if the features are not 4-D, their shapes differ, ``tau <= 0`` or the target's tau differs.
    """
    _check_tau(tau)
    target = teacher if isinstance(teacher, CWDTarget) else None
    _check_pair(student, target.shape if target is not None else tuple(teacher.shape))
    if target is None:
        target = cwd_target(teacher, tau)
    elif target.tau != float(tau):
        raise ValueError(f"channel_wise_divergence: the teacher target was computed at tau {target.tau}, not {tau}")
    n, c, h, w = student.shape
    with torch.autocast(device_type=student.device.type, enabled=False):
        flat = _wide(student).reshape(n * c, h * w)  # (N*C, H*W)
        if target.logits.dtype != flat.dtype:
            dt = flat.dtype
            target = CWDTarget(target.logits.to(dt), target.prob.to(dt), target.lse.to(dt), target.shape, target.tau)
        return _KLToTarget.apply(flat, target) * (tau**2) / (n * c)


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

    def prepare_target(self, teacher: Tensor) -> CWDTarget:
        """The teacher's side, once per step for every pair reading ``teacher`` at this ``tau``."""
        return cwd_target(teacher, self.tau)

    def target_key(self) -> tuple:
        """Pairs whose losses have equal keys can share one :meth:`prepare_target` of the same feature."""
        return ("ChannelWiseDivergence", self.tau)

    def forward(self, student: Tensor, teacher: Tensor | CWDTarget) -> Tensor:
        """Weighted :func:`channel_wise_divergence` of ``student`` against the constant ``teacher``."""
        return self.loss_weight * channel_wise_divergence(student, teacher, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, loss_weight={self.loss_weight}"
