"""The recipe interface, its registry and the recipes of one run.

A recipe is a class registered under its options key; its constructor arguments are its options (strict, no
``**kwargs``), checked by :mod:`kit.registry` like every ``type:`` mapping, with the closest name on a typo. A
recipe changes the pixel loss's target, scales the feature pairs, adds loss terms and/or changes the weights after
each step (:meth:`Recipe.after_step`)::

    @RECIPE_REGISTRY.register("sharpen")
    @dataclass(eq=False)
    class Sharpen(Recipe):
        weight: float = 1.0                      # train.recipes.sharpen.weight

        def terms(self, step: Step) -> dict[str, torch.Tensor]:
            edges = step.teacher_target - F.avg_pool2d(step.teacher_target, 3, 1, 1)
            return {"l_sharpen": self.weight * (step.output - edges).abs().mean()}

The file goes into ``kit/distill/recipes/``: the package imports every module there (BasicSR's ``archs/``
rule), so the recipe is known by its key, ``train: {recipes: {sharpen: {weight: 0.5}}}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from kit.registry import OptionsKeyError, build_from_registry, registered_name


class RecipeRegistry:
    """Recipe classes by their options key (``mix``, ``pool``, …); read by :func:`kit.registry.build_from_registry`."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._classes: dict[str, type[Recipe]] = {}

    def register(self, key: str) -> Callable[[type[Recipe]], type[Recipe]]:
        """Class decorator: the recipe is ``train.recipes.<key>``."""

        def add(cls: type[Recipe]) -> type[Recipe]:
            if key in self._classes:
                raise KeyError(f"recipe '{key}' is registered twice ({self._classes[key].__name__}, {cls.__name__})")
            cls.key = key
            self._classes[key] = cls
            return cls

        return add

    def get(self, key: str) -> type[Recipe]:
        """The class registered under ``key``."""
        return self._classes[key]

    def keys(self) -> list[str]:
        """Every registered key."""
        return list(self._classes)


RECIPE_REGISTRY = RecipeRegistry("recipe")


@dataclass(eq=False)
class Step:
    """What a recipe reads at one training step; the teacher's tensors are constants of the step.

    Attributes:
        host: The DistillModel (``lq``, ``gt``, ``net_g``, ``teachers``, ``autocast()``, ``teacher_images()``).
        current_iter: The iteration, 1-based.
        output: The student's image of the batch, float, ``(N, 3, sH, sW)``.
        teacher_images: Every teacher's image of the batch, ``{name: (N, 3, sH, sW)}``.
        teacher_target: Their weighted mean image.
        teacher_features: The recorded teacher features of the feature pairs, ``{pair: (N, C, H, W)}``.
        connected: The student's features after the connectors, ``{pair: (N, C, H, W)}`` (empty without pairs).
    """

    host: Any
    current_iter: int
    output: torch.Tensor
    teacher_images: dict[str, torch.Tensor]
    teacher_target: torch.Tensor
    teacher_features: dict[str, torch.Tensor]
    connected: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def lq(self) -> torch.Tensor:
        """The batch's input, ``(N, 3, H, W)``."""
        return self.host.lq

    @property
    def gt(self) -> torch.Tensor | None:
        """The batch's ground truth, ``(N, 3, sH, sW)``; ``None`` on a GT-free run."""
        return getattr(self.host, "gt", None)

    def student(self, x: torch.Tensor) -> torch.Tensor:
        """The student's image of an extra input (under the run's autocast), float, with its graph."""
        with self.host.autocast():
            return self.host.net_g(x).float()

    def label(self, x: torch.Tensor) -> torch.Tensor:
        """The teachers' (weighted mean) image of an extra input: frozen, no gradient."""
        return self.host.teacher_target(self.host.teacher_images(x))


class Recipe:
    """One recipe of ``train.recipes``: every method has a neutral default, a recipe overrides what it changes.

    Class attributes:
        key: Its options key (set by :meth:`RecipeRegistry.register`).
        order: Where it acts among the recipes, whatever the options' order: its random numbers are drawn and its
            terms summed in this order (a fixed order keeps runs identical when the options are reordered).
        after_pairs: Its terms come after the feature pairs' (else between output distillation and the pairs).
        hooks_teacher: It hooks the teacher's forward per step (the teacher cannot be compiled).
    """

    key: ClassVar[str] = ""
    order: ClassVar[int] = 100
    after_pairs: ClassVar[bool] = True
    hooks_teacher: ClassVar[bool] = False

    def bind(self, host: Any) -> None:
        """Once the model holds its teachers and pairs, before the recorders attach (``host``: the DistillModel)."""

    def pixel_target(self, target: torch.Tensor, teacher: torch.Tensor, current_iter: int) -> torch.Tensor:
        """The pixel loss's target, given the one so far (the GT) and the teachers' image."""
        return target

    def pair_scale(self, name: str, term: torch.Tensor, reference: torch.Tensor | None, current_iter: int) -> float:
        """Multiplier of feature pair ``name``'s loss ``term`` (``reference``: the pixel or output-KD loss)."""
        return 1.0

    def terms(self, step: Step) -> dict[str, torch.Tensor]:
        """Loss terms added this step, by log key (``l_<name>``)."""
        return {}

    def after_step(self, current_iter: int) -> None:
        """After the optimiser's step at ``current_iter``, before the EMA update: it may change the weights."""

    def gt_use(self) -> str | None:
        """What of the ground truth it reads (refused on a GT-free run), or ``None``."""
        return None

    def state_dict(self) -> dict:
        """What a resume state keeps of it (merged with the other recipes' into one mapping)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore from the run's merged recipe state."""


class Recipes:
    """The recipes of ``train.recipes`` (each optional; an entry set to null is off), in their fixed order.

    Args:
        opt: ``train.recipes``: ``{key: {argument: value}}``.
    """

    def __init__(self, opt: dict | None) -> None:
        built = []
        for key, args in dict(opt or {}).items():
            where = f"train:recipes:{key}"
            cls = RECIPE_REGISTRY.get(registered_name(RECIPE_REGISTRY, key, where))
            if args is None:
                continue
            if not isinstance(args, dict):
                raise OptionsKeyError(f"{where}: expected a mapping of its options, got {args!r}")
            built.append(build_from_registry(RECIPE_REGISTRY, {"type": cls.key, **dict(args)}, where))
        self.active: list[Recipe] = sorted(built, key=lambda r: r.order)

    def __iter__(self) -> Iterator[Recipe]:
        return iter(self.active)

    def get(self, key: str) -> Any:
        """The recipe of ``train.recipes.<key>``, or ``None`` when it is off."""
        return next((r for r in self.active if r.key == key), None)

    def bind(self, host: Any) -> None:
        """See :meth:`Recipe.bind`."""
        for recipe in self.active:
            recipe.bind(host)

    def pixel_target(self, gt: torch.Tensor, teacher: torch.Tensor, current_iter: int) -> torch.Tensor:
        """The pixel loss's target: the GT, or what the recipes make of it (the GT/teacher mix)."""
        for recipe in self.active:
            gt = recipe.pixel_target(gt, teacher, current_iter)
        return gt

    def pair_scale(self, name: str, term: torch.Tensor, reference: torch.Tensor | None, current_iter: int) -> float:
        """Multiplier of a feature pair's loss (1 without balancing)."""
        scale = 1.0
        for recipe in self.active:
            scale *= recipe.pair_scale(name, term, reference, current_iter)
        return scale

    def terms(self, step: Step, after_pairs: bool) -> dict[str, torch.Tensor]:
        """The recipes' loss terms of this step, before or after the feature pairs'."""
        out: dict[str, torch.Tensor] = {}
        for recipe in self.active:
            if recipe.after_pairs == after_pairs:
                out.update(recipe.terms(step))
        return out

    def after_step(self, current_iter: int) -> None:
        """See :meth:`Recipe.after_step`."""
        for recipe in self.active:
            recipe.after_step(current_iter)

    def hooking_teacher(self) -> list[str]:
        """Keys of the recipes that hook the teacher's forward per step."""
        return [r.key for r in self.active if r.hooks_teacher]

    def gt_uses(self) -> list[str]:
        """What of the ground truth the recipes read (see :meth:`Recipe.gt_use`)."""
        return [use for use in (r.gt_use() for r in self.active) if use]

    def state_dict(self) -> dict:
        """Every recipe's state merged into one mapping (the resume state's ``recipes``)."""
        state: dict = {}
        for recipe in self.active:
            state.update(recipe.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        """Hand the merged mapping to every recipe."""
        for recipe in self.active:
            recipe.load_state_dict(state)


def option_scale(host: Any) -> int:
    """The run's upscaling factor (``scale``), as the recipes read it from the host's options."""
    return int(host.opt.get("scale", 1))
