"""Data upcycling (DUKD, Zhang et al. 2023, arXiv 2309.14162): extra student inputs the teacher labels.

.. code-block:: yaml

    train:
      recipes:
        upcycle:
          weight: 1.0
          loss: {type: L1Loss, loss_weight: 1.0}
          variants: [hr_crop, zoom_out]  # LR-sized crops of the HR image; the LR zoomed out by the scale
          flips: true            # random flips/transposes of the upcycled input (invertible augmentations)
          every: 1               # apply every N iterations
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from kit.distill.recipes.base import RECIPE_REGISTRY, Recipe, Step, option_scale
from kit.registry import OptionsKeyError, build_loss

DEFAULT_LOSS = {"type": "L1Loss", "loss_weight": 1.0}


@RECIPE_REGISTRY.register("upcycle")
@dataclass(eq=False)
class Upcycle(Recipe):
    """DUKD data upcycling: extra student inputs labelled by the teacher, with their own loss.

    Variants (one drawn per application, from the global torch RNG so runs are reproducible):

    - ``hr_crop`` (zoom-in): an LR-sized crop of the HR image is the input; the teacher labels it at ×scale.
    - ``zoom_out``: the LR input bicubic-downscaled by the scale is the input; the teacher labels it.

    With ``flips`` the upcycled input is also flipped/transposed at random (invertible augmentations, so the
    teacher's label of the augmented input is a consistent target).
    """

    VARIANTS = ("hr_crop", "zoom_out")
    order = 30

    weight: float = 1.0
    loss: dict | None = None
    variants: Sequence[str] = VARIANTS
    flips: bool = True
    every: int = 1

    def __post_init__(self) -> None:
        self.loss_weight = float(self.weight)
        self.loss = build_loss(self.loss if self.loss is not None else DEFAULT_LOSS, "upcycle:loss")
        self.variants = list(self.variants)
        bad = [v for v in self.variants if v not in self.VARIANTS]
        if bad or not self.variants:
            raise OptionsKeyError(f"train:recipes:upcycle:variants {bad or '[]'}: choose from {self.VARIANTS}")
        self.flips = bool(self.flips)
        self.every = max(int(self.every), 1)
        self.scale = 1

    def bind(self, host: Any) -> None:
        """``zoom_out`` downscales by the run's scale."""
        self.scale = option_scale(host)

    def due(self, current_iter: int) -> bool:
        return current_iter % self.every == 0

    def inputs(self, lq: torch.Tensor, gt: torch.Tensor, variant: str) -> torch.Tensor:
        """The upcycled student input for one variant. ``lq``: (N, C, h, w); ``gt``: (N, C, s·h, s·w)."""
        n, _, h, w = lq.shape
        if variant == "hr_crop":
            top = int(torch.randint(0, gt.shape[-2] - h + 1, ()).item())
            left = int(torch.randint(0, gt.shape[-1] - w + 1, ()).item())
            return gt[..., top : top + h, left : left + w]
        s = max(self.scale, 2)
        size = (max(h // s, 4), max(w // s, 4))
        return F.interpolate(lq, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """A random flip/transpose of ``x`` (with ``flips``)."""
        if not self.flips:
            return x
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        if torch.rand(()) < 0.5:
            x = x.flip(-2)
        if torch.rand(()) < 0.5:
            x = x.transpose(-1, -2)
        return x

    def make(
        self, lq: torch.Tensor, gt: torch.Tensor | None, label: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input, teacher label)`` for this step; ``label(x)`` runs the frozen teacher(s)."""
        variant = self.variants[int(torch.randint(0, len(self.variants), ()).item())]
        x = self.augment(self.inputs(lq, gt, variant)).contiguous()
        return x, label(x)

    def terms(self, step: Step) -> dict[str, torch.Tensor]:
        """``l_upcycle``: the student's image of the upcycled input against the teacher's (every ``every`` steps)."""
        if not self.due(step.current_iter):
            return {}
        up_lq, up_target = self.make(step.lq, step.gt, step.label)
        return {"l_upcycle": self.loss_weight * self.loss(step.student(up_lq), up_target)}

    def gt_use(self) -> str | None:
        if "hr_crop" not in self.variants:
            return None
        return "train:recipes:upcycle variant hr_crop crops the GT; use variants: [zoom_out]"
