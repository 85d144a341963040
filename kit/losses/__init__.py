"""Distillation losses, registered into BasicSR's ``LOSS_REGISTRY``.

Every loss has ``forward(student, teacher) -> Tensor`` and ``loss_weight`` in its constructor; the maths
is a plain function beside it. Output distillation (student image vs teacher image) uses BasicSR's own
``L1Loss``, ``MSELoss`` and ``CharbonnierLoss`` unchanged: their ``forward(pred, target)`` fits.
"""

from __future__ import annotations

from kit.losses.cwd import ChannelWiseDivergence, channel_wise_divergence
from kit.losses.feature_l2 import L2Loss, l2_loss

__all__ = ["ChannelWiseDivergence", "L2Loss", "channel_wise_divergence", "l2_loss"]
