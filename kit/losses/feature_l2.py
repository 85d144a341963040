"""FitNets-style feature regression: the (optionally normalised) squared L2 distance of two features."""

from __future__ import annotations

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import Tensor, nn

__all__ = ["L2Loss", "l2_loss"]

# Guards the division of an all-zero feature (mmrazor divides by the bare norm and returns NaN there).
_EPS = 1e-12


def _check_pair(student: Tensor, teacher: Tensor, where: str) -> None:
    if student.dim() < 2:
        raise ValueError(
            f"{where} needs features of at least 2 dims (N, ...), got student shape {tuple(student.shape)}; "
            "record a feature map (N, C, H, W) or a batch of vectors (N, C)"
        )
    if student.shape != teacher.shape:
        raise ValueError(
            f"{where}: student shape {tuple(student.shape)} and teacher shape {tuple(teacher.shape)} differ; "
            "add a connector to the pair (e.g. ConvConnector with in_channels/out_channels, resize for H, W) "
            "or pick layers whose shapes match"
        )


def _at_least_float32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def l2_loss(student: Tensor, teacher: Tensor, normalize: bool = True, div_element: bool = False) -> Tensor:
    """Squared L2 distance between a student and a teacher feature (mmrazor's FitNets ``L2Loss``).

    With ``normalize`` each sample's flattened feature (N, C*H*W) is divided by its L2 norm, so the
    loss compares directions and ignores the scale of either network's features. The sum of squared
    differences is divided by the number of elements (``div_element``) or by the batch size N.

    Computed in float32 or wider (half inputs are cast up; autocast is off inside), and the teacher is
    a constant target (detached).

    Args:
        student: student feature (N, ...), at least 2-D.
        teacher: teacher feature of the same shape.
        normalize: divide each sample by its L2 norm first.
        div_element: divide by ``numel`` instead of by N.

    Returns:
        The scalar loss.

    Raises:
        ValueError: if the tensors are not at least 2-D or their shapes differ.
    """
    _check_pair(student, teacher, "l2_loss")
    with torch.autocast(device_type=student.device.type, enabled=False):
        n = student.shape[0]
        s = _at_least_float32(student).reshape(n, -1)  # (N, C*H*W)
        t = _at_least_float32(teacher.detach()).reshape(n, -1)
        if normalize:
            s = s / s.norm(p=2, dim=1, keepdim=True).clamp_min(_EPS)
            t = t / t.norm(p=2, dim=1, keepdim=True).clamp_min(_EPS)
        loss = (s - t).pow(2).sum()
        return loss / (s.numel() if div_element else n)


@LOSS_REGISTRY.register()
class L2Loss(nn.Module):
    """FitNets feature regression, as mmrazor's ``L2Loss``; see :func:`l2_loss`.

    Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015 (arXiv 1412.6550).

    ``loss = loss_weight * sum((s - t)^2) / (numel if div_element else N)``, with s and t each divided
    per sample by its L2 norm when ``normalize``. Normalised, each sample contributes at most 4
    (opposite directions), so the loss divided by N lies in [0, 4]; with ``div_element`` it is tiny.

    YAML::

        loss: {type: L2Loss, loss_weight: 1.0, normalize: true, div_element: false}

    Args:
        loss_weight: multiplies the loss.
        normalize: divide each sample's flattened feature by its L2 norm first.
        div_element: divide by the number of elements instead of by the batch size.
    """

    def __init__(self, loss_weight: float = 1.0, normalize: bool = True, div_element: bool = False) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.normalize = bool(normalize)
        self.div_element = bool(div_element)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Weighted :func:`l2_loss` of ``student`` against the constant ``teacher``."""
        return self.loss_weight * l2_loss(student, teacher, self.normalize, self.div_element)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, normalize={self.normalize}, div_element={self.div_element}"
