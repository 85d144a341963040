"""Target mixing (traiNNer-redux's ECO schedule): the pixel loss's target moves from the teacher's image to the GT.

.. code-block:: yaml

    train:
      recipes:
        mix:
          start: 0.0             # alpha at iter 0 (0 = all teacher, 1 = all GT)
          end: 1.0               # alpha at end_iter and after
          end_iter: 2000         # default: train.total_iter
          schedule: linear       # linear | cosine
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from kit.distill.recipes.base import RECIPE_REGISTRY, Recipe
from kit.registry import OptionsKeyError


@RECIPE_REGISTRY.register("mix")
@dataclass(eq=False)
class TargetMix(Recipe):
    """ECO-style mixing: ``target = alpha * GT + (1 - alpha) * teacher``.

    ``alpha`` goes from ``start`` to ``end`` over ``[0, end_iter]`` (linear or cosine), constant afterwards. Early
    on the teacher's smoother, reachable target is easier for a small student; the GT takes over by the end.
    """

    order = 0

    start: float = 0.0
    end: float = 1.0
    end_iter: int | None = None
    schedule: str = "linear"

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if not 0.0 <= float(value) <= 1.0:
                raise OptionsKeyError(f"train:recipes:mix:{name} must be in [0, 1], got {value}")
        if self.schedule not in ("linear", "cosine"):
            raise OptionsKeyError(f"train:recipes:mix:schedule must be linear or cosine, got {self.schedule!r}")
        self.start, self.end = float(self.start), float(self.end)
        self.iters = max(int(self.end_iter if self.end_iter is not None else 1), 1)

    def bind(self, host: Any) -> None:
        """Without ``end_iter`` the schedule spans the run (``train.total_iter``)."""
        if self.end_iter is None:
            self.iters = max(int(host.opt["train"].get("total_iter", 1)), 1)

    def alpha(self, current_iter: int) -> float:
        """Weight of the ground truth at ``current_iter`` (1-based)."""
        t = min(max(current_iter, 0) / self.iters, 1.0)
        if self.schedule == "cosine":
            t = 0.5 - 0.5 * math.cos(math.pi * t)
        return self.start + (self.end - self.start) * t

    def pixel_target(self, target: torch.Tensor, teacher: torch.Tensor, current_iter: int) -> torch.Tensor:
        """``lerp(teacher, target, alpha)``."""
        return torch.lerp(teacher, target, self.alpha(current_iter))

    def gt_use(self) -> str | None:
        return "train:recipes:mix blends the GT into the target; remove the mix recipe"
