"""A contrastive term in the teacher's own feature space (DCKD-style; Zhou et al., AAAI 2025, arXiv 2412.08939).

.. code-block:: yaml

    train:
      recipes:
        contrast:
          layer: block_1            # teacher module whose output is the feature space (the forward stops there)
          teacher: null             # which teacher, with several (default: the first)
          weight: 0.1
          negatives: [bicubic, ema] # bicubic upsampling of the input; the EMA student's image (its own past)

The student's image is pulled toward the teacher's image and pushed away from images it should not settle
on, all measured through the frozen teacher's first layers applied to full-size images:

``loss = weight · mean_n  d(φ(s), φ(t)) / (d(φ(s), φ(t)) + Σ_neg d(φ(s), φ(neg)) + eps)``, ``d`` = mean absolute
difference. DCKD's ratio has no ``d(φ(s), φ(t))`` in the denominator; here the student starts *at* a negative
(bicubic, through its image residual; its EMA is a copy of it), where that ratio is unbounded. With it the term
lies in [0, 1] and is scale-free.

``bicubic`` is the fixed lower bound (what the student starts from, through its image residual). ``ema`` is
DCKD's "history" negative: the student's exponential moving average (``train.ema_decay``), so the bound moves
with the student's own progress. The teacher's weights are frozen; gradient reaches the student through φ(s).
The teacher forward stops at ``layer`` (a hook raises once the feature is recorded), so the term costs the
teacher's first layers at the output size, not a whole teacher pass. No outside network is needed: DCKD's
VQGAN distribution module is not reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from kit.distill.pairs.recorder import closest_paths
from kit.distill.recipes.base import RECIPE_REGISTRY, Recipe, Step
from kit.registry import OptionsKeyError

NEGATIVES = ("bicubic", "ema")


class _Reached(Exception):
    """Raised by the hook once the feature is recorded: the rest of the teacher is not run."""

    def __init__(self, feature: torch.Tensor) -> None:
        super().__init__("feature recorded")
        self.feature = feature


class TeacherFeatureSpace:
    """φ(x): the output of one teacher module for an image ``x``, the teacher run only up to that module."""

    def __init__(self, teacher: nn.Module, layer: str) -> None:
        modules = dict(teacher.named_modules())
        if layer not in modules or not layer:
            close = closest_paths(teacher, layer)
            hint = f"; close names: {', '.join(close)}" if close else "; list them with kit-inspect --checkpoint"
            raise OptionsKeyError(f"train:recipes:contrast:layer {layer!r} is not a module of the teacher{hint}")
        self.teacher, self.module = teacher, modules[layer]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        def stop(_module, _inputs, output):
            raise _Reached(output[0] if isinstance(output, (tuple, list)) else output)

        handle = self.module.register_forward_hook(stop)
        try:
            self.teacher(x)
        except _Reached as reached:
            return reached.feature.float()
        finally:
            handle.remove()
        raise RuntimeError("the teacher's forward never reached train:recipes:contrast:layer")


@RECIPE_REGISTRY.register("contrast")
@dataclass(eq=False)
class ContrastRecipe(Recipe):
    """The options of ``train.recipes.contrast`` and the term itself (see the module docstring)."""

    EPS = 1e-6
    order = 10
    after_pairs = False  # summed between output distillation and the feature pairs
    hooks_teacher = True  # the forward stops at the layer from a hook added per step

    layer: str | None = None
    teacher: str | None = None
    weight: float = 0.1
    negatives: Sequence[str] = NEGATIVES

    def __post_init__(self) -> None:
        if not self.layer:
            raise OptionsKeyError("train:recipes:contrast needs layer: a teacher module path (kit-inspect lists them)")
        self.layer, self.teacher_name = str(self.layer), self.teacher
        self.weight = float(self.weight)
        self.negatives = list(self.negatives)
        bad = [n for n in self.negatives if n not in NEGATIVES]
        if bad or not self.negatives:
            raise OptionsKeyError(f"train:recipes:contrast:negatives {bad or '[]'}: choose from {NEGATIVES}")
        self.space: TeacherFeatureSpace | None = None

    def bind(self, host: Any) -> None:
        """Picks the teacher (and checks the layer) once the model holds its teachers."""
        teachers: dict[str, nn.Module] = host.teachers
        if "ema" in self.negatives and not hasattr(host, "net_g_ema"):
            raise OptionsKeyError(
                "train:recipes:contrast:negatives has ema but the run keeps no EMA student: set train:ema_decay "
                "(e.g. 0.999) or drop ema from the negatives"
            )
        name = self.teacher_name if self.teacher_name is not None else next(iter(teachers))
        if name not in teachers:
            raise OptionsKeyError(f"train:recipes:contrast:teacher {name!r}: the teachers are {sorted(teachers)}")
        self.space = TeacherFeatureSpace(teachers[name], self.layer)

    def terms(self, step: Step) -> dict[str, torch.Tensor]:
        """``l_contrast``: toward the teachers' image, away from bicubic and the EMA student."""
        ema = getattr(step.host, "net_g_ema", None)
        negatives = self.negative_images(step.lq, tuple(step.output.shape[-2:]), ema)
        return {"l_contrast": self.loss(step.output, step.teacher_target, negatives)}

    def negative_images(self, lq: torch.Tensor, size: tuple[int, int], ema: nn.Module | None) -> list[torch.Tensor]:
        images = []
        for kind in self.negatives:
            if kind == "bicubic":
                images.append(F.interpolate(lq, size=size, mode="bicubic", align_corners=False).clamp(0, 1))
            else:
                with torch.no_grad():
                    images.append(ema(lq).float())
        return images

    def loss(self, output: torch.Tensor, teacher_image: torch.Tensor, negatives: list[torch.Tensor]) -> torch.Tensor:
        """``weight · mean_n d_pos / (d_pos + Σ d_neg + eps)``; φ(teacher image) and φ(negatives) without grad."""
        if self.space is None:
            raise RuntimeError("ContrastRecipe.bind(host) was not called")
        anchor = self.space(output)
        with torch.no_grad():
            positive = self.space(teacher_image)
            away = [self.space(n) for n in negatives]

        def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a - b).abs().flatten(1).mean(1)  # (N,)

        d_pos = dist(anchor, positive)
        if not away:
            return self.weight * d_pos.mean()
        d_neg = torch.stack([dist(anchor, n) for n in away]).sum(0)
        return self.weight * (d_pos / (d_pos + d_neg + self.EPS)).mean()
