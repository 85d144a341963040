"""Pair balancing: every feature pair stays below a fraction of the pixel loss.

.. code-block:: yaml

    train:
      recipes:
        balance:
          ratio: 0.1             # a pair's loss at the first step is at most ratio x the pixel loss
          warmup_iter: 100       # its weight then ramps linearly from 0 over these iterations
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kit.distill.recipes.base import RECIPE_REGISTRY, Recipe
from kit.registry import OptionsKeyError


@RECIPE_REGISTRY.register("balance")
@dataclass(eq=False)
class PairBalance(Recipe):
    """Keeps every feature pair's loss below ``ratio`` × the pixel loss, with a linear warm-up.

    At the first step each pair's scale is fixed to ``min(1, ratio * L_ref / L_pair)``, where ``L_ref`` is
    the pixel (or output-KD) loss and ``L_pair`` the pair's weighted loss at that step; a linear warm-up
    over ``warmup_iter`` then ramps it from 0. Why: a normalised FitNets L2 starts near 1 while an L1 pixel
    loss starts near 0.05, so at weight 1 the feature term outweighs the image term ~20× and drives the
    student away from the image (the pilot measured −0.91 dB). Fixing the scale once (instead of
    re-normalising every step) keeps the objective stationary, and the scale is saved for resume. Under DDP
    the two losses are averaged over the ranks first, so every rank holds the same scale.
    """

    order = 1  # after mix; both act on the main batch only

    ratio: float = 0.1
    warmup_iter: int = 0
    scales: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.ratio <= 0:
            raise OptionsKeyError(f"train:recipes:balance:ratio must be > 0, got {self.ratio}")
        self.ratio, self.warmup_iter = float(self.ratio), int(self.warmup_iter)

    def scale(self, name: str, term: torch.Tensor, reference: torch.Tensor | None, current_iter: int) -> float:
        """The multiplier of pair ``name`` at ``current_iter`` (its cap is fixed at the first call)."""
        if name not in self.scales:
            losses = torch.stack([(reference if reference is not None else term).detach(), term.detach()]).float()
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                # DDP: from the mean over ranks, so that every rank weights the pair alike (and resumes alike)
                torch.distributed.all_reduce(losses)
                losses /= torch.distributed.get_world_size()
            ref, value = (float(v) for v in losses)
            self.scales[name] = min(1.0, self.ratio * ref / value) if value > 0 else 1.0
        warm = min(current_iter / self.warmup_iter, 1.0) if self.warmup_iter > 0 else 1.0
        return self.scales[name] * warm

    def pair_scale(self, name: str, term: torch.Tensor, reference: torch.Tensor | None, current_iter: int) -> float:
        return self.scale(name, term, reference, current_iter)

    def state_dict(self) -> dict:
        return {"balance_scales": dict(self.scales)}

    def load_state_dict(self, state: dict) -> None:
        self.scales.update(state.get("balance_scales", {}))
