"""Feature mixing (MiPKD-style; Li et al., "Knowledge Distillation with Multi-granularity Mixture of Priors for
Image Super-Resolution", arXiv 2404.02573): the teacher's tail runs on a mix of its own feature and the student's.

.. code-block:: yaml

    train:
      distill:
        cwd: {student: body.3, teacher: conv_cat, connector: {...}, loss: {...}}
      recipes:
        mixing:
          pair: cwd            # a feature pair of train.distill: its layers and its connector
          keep: 0.5            # probability that a position keeps the teacher's feature (else the student's)
          weight: 1.0
          loss: {type: L1Loss, loss_weight: 1.0}   # the mixed image against the teacher's own image

Every step a random spatial mask picks, per position, the teacher's feature or the student's (through the
pair's connector, so both live in the teacher's space); the teacher then runs from that layer on, and its
image is compared with the teacher's unmixed image. The student's feature is thus trained to be *usable by
the teacher's remaining layers*, a stronger constraint than being close to the teacher's feature. The
teacher stays frozen; gradient reaches the student (and the connector) through the teacher's tail. Only the
feature mixer is reproduced; MiPKD's block mixer (swapping whole blocks) is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from kit.distill.pairs.wiring import PairSpec
from kit.distill.recipes.base import RECIPE_REGISTRY, Recipe, Step
from kit.registry import OptionsKeyError, build_loss

DEFAULT_LOSS = {"type": "L1Loss", "loss_weight": 1.0}


@RECIPE_REGISTRY.register("mixing")
@dataclass(eq=False)
class FeatureMixing(Recipe):
    """The options of ``train.recipes.mixing`` and the mixed teacher forward."""

    order = 20
    hooks_teacher = True  # the teacher's feature is replaced from a hook added per step

    pair: str | None = None
    keep: float = 0.5
    weight: float = 1.0
    loss: dict | None = None

    def __post_init__(self) -> None:
        if not self.pair:
            raise OptionsKeyError("train:recipes:mixing needs pair: the name of a feature pair of train:distill")
        self.pair_name = str(self.pair)
        self.keep = float(self.keep)
        if not 0.0 <= self.keep < 1.0:
            raise OptionsKeyError(f"train:recipes:mixing:keep must be in [0, 1), got {self.keep}")
        self.weight = float(self.weight)
        self.loss = build_loss(self.loss if self.loss is not None else DEFAULT_LOSS, "mixing:loss")
        self.module: nn.Module | None = None
        self.teacher_name: str | None = None

    def bind(self, host: Any) -> None:
        """Finds the pair and the teacher module it names (a plain output path: the hook replaces that output)."""
        pairs: list[PairSpec] = host.pairs
        by_name = {p.name: p for p in pairs}
        if self.pair_name not in by_name:
            raise OptionsKeyError(
                f"train:recipes:mixing:pair {self.pair_name!r} is not a feature pair of train:distill "
                f"(the pairs are {sorted(by_name) or 'none'})"
            )
        pair = by_name[self.pair_name]
        if pair.source != "output" or "#" in pair.teacher:
            raise OptionsKeyError(
                f"train:recipes:mixing:pair {self.pair_name!r}: its teacher side must be a module's output "
                f"called once (source: output, no '#k'), got {pair.teacher!r} ({pair.source})"
            )
        self.teacher_name = pair.teacher_name
        self.module = dict(host.teachers[pair.teacher_name].named_modules())[pair.teacher]

    def terms(self, step: Step) -> dict[str, torch.Tensor]:
        """``l_mixing``: the teacher's image from the mixed feature against its own image."""
        name, teacher = self.pair_name, step.host.teachers[self.teacher_name]
        with step.host.autocast():
            mixed = self.mixed_image(teacher, step.lq, step.teacher_features[name], step.connected[name])
        return {"l_mixing": self.weight * self.loss(mixed, step.teacher_images[self.teacher_name])}

    def mixed_image(
        self, teacher: nn.Module, lq: torch.Tensor, t_feat: torch.Tensor, s_feat: torch.Tensor
    ) -> torch.Tensor:
        """The teacher's image of ``lq`` with its feature at the pair's layer replaced by the random mix."""
        if self.module is None:
            raise RuntimeError("FeatureMixing.bind(host) was not called")
        n, _, h, w = t_feat.shape
        keep = (torch.rand(n, 1, h, w, device=t_feat.device) < self.keep).to(t_feat.dtype)
        mixed = keep * t_feat + (1 - keep) * s_feat.to(t_feat.dtype)

        def replace(_module, _inputs, output):
            if not isinstance(output, torch.Tensor):
                raise RuntimeError(
                    f"train:recipes:mixing: the teacher module of pair {self.pair_name!r} returns "
                    f"{type(output).__name__}, not one tensor; pair a module that returns its feature alone"
                )
            if output.shape != mixed.shape:
                raise RuntimeError(f"mixing: the teacher's feature is {tuple(output.shape)}, the mix {mixed.shape}")
            return mixed

        handle = self.module.register_forward_hook(replace)
        try:
            return teacher(lq).float()
        finally:
            handle.remove()
