"""Prune a pretrained teacher into a smaller network of its registered family: choose, cut, refit, convert.

1. The teacher's arguments are read from its weights and it is built as plain convs (:mod:`kit.prune.families`).
2. The target becomes the student's arguments (:mod:`kit.prune.target`); blocks beyond its depth are dropped,
   greedily, the one whose removal changes the output least first (:func:`kit.prune.graph.choose_blocks`).
3. Each channel group (torch-pruning's dependency graph, :mod:`kit.prune.graph`) keeps its most important
   channels (:mod:`kit.prune.importance`), as many as the student's argument for that group says.
4. Every conv is refit by least squares to the teacher's outputs, in forward order (:mod:`kit.prune.refit`).
5. The result is loaded strictly into the registered student in its deployed form, then converted to its trainable
   form (:meth:`~kit.prune.families.PruneFamily.trainable_state`), which is loaded strictly into ``network_g``
   and checked to compute the same function.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from kit.prune.families import PruneFamily, get_family
from kit.prune.graph import channel_groups, choose_blocks, prune_groups, taylor_importance, with_blocks
from kit.prune.importance import CRITERIA, activation_energy, group_scores, keep_channels, kept_outputs
from kit.prune.refit import RefitReport, refit_network
from kit.prune.target import PruneTarget, PruneTargetError, measure, resolve_target

__all__ = ["FORMS", "PruneResult", "PruneSettings", "prune_teacher", "teacher_arguments"]

FORMS = ("trainable", "deployed")  # the forms of the written student (:meth:`PruneResult.network_g`)


@dataclass(frozen=True)
class PruneSettings:
    """How to prune.

    Attributes:
        target: The student's size (:class:`~kit.prune.target.PruneTarget`).
        importance: ``"energy"`` (the teacher's activation energy), ``"taylor"`` (first-order Taylor of the L1 loss
            to the HR crops) or ``"l1"`` (filter magnitude).
        refit: Refit every conv by least squares after the cut.
        ridge: Ridge penalty of the refit toward the teacher's weights, relative to the mean diagonal of each
            conv's input Gram matrix. 0.1 measured best for SPAN ch48 → 28 on the bundled photos (Set5 PSNR-Y before
            training: 1e-3 22.4, 1e-2 25.5, 3e-2 28.8, 0.1 30.2, 0.3 29.8, 1 29.4 dB; 24 crops).
        batch: Crops per forward pass.
        seed: Seed of the trainable form's random re-parameterisation (the function does not depend on it).
        teacher_options: Arguments the weights cannot tell (RLFNStudent: ``img_residual``).
    """

    target: PruneTarget
    importance: str = "energy"
    refit: bool = True
    ridge: float = 0.1
    batch: int = 8
    seed: int = 0
    teacher_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class PruneResult:
    """The pruned student and what it is.

    Attributes:
        family: The registered class (``SPANStudent``).
        teacher_arguments: The teacher's constructor arguments.
        arguments: The student's (its ``network_g`` entry, without ``type``).
        deployed: The pruned, refit network as the registered family's deployed form (eval mode).
        state: The ``network_g`` state dict in its trainable form (loads with ``strict=True``).
        params: Deployed parameters.
        gmacs: fvcore GMACs at the target's input size.
        kept_blocks: The teacher's blocks kept (0-based).
        refit: One report per conv (empty without refit).
        max_difference: Largest |network_g(x) − deployed(x)| on two calibration crops.
    """

    family: str
    teacher_arguments: dict[str, Any]
    arguments: dict[str, Any]
    deployed: nn.Module
    state: dict[str, Tensor]
    params: int
    gmacs: float
    kept_blocks: list[int]
    refit: list[RefitReport]
    max_difference: float

    def network_g(self, form: str = "trainable") -> tuple[dict[str, Any], dict[str, Tensor]]:
        """The ``network_g`` entry and the state dict that loads strictly into it, in ``form``.

        ``trainable``: :attr:`state` (re-parameterisable branches whose fusion is the pruned kernels).
        ``deployed``: the plain-convolution network itself (``deploy: true`` where the family has that form):
        the same function, and 4-5× cheaper to train on a CPU than SPAN's expanded branches (measured in
        ``python -m bench prune --form``).
        """
        if form not in FORMS:
            raise ValueError(f"form '{form}' is not one of {', '.join(FORMS)}")
        entry = {"type": self.family, **self.arguments}
        if form == "trainable":
            return entry, self.state
        if get_family(self.family).deploy_argument:
            entry["deploy"] = True
        return entry, {k: v.detach().clone() for k, v in self.deployed.state_dict().items()}


def teacher_arguments(family_name: str, state: Mapping[str, Tensor], options: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments of the ``family_name`` network the weights ``state`` belong to.

    Raises:
        ValueError: an unsupported family.
        PruneTargetError: the weights are not of that family (one line).
    """
    family = get_family(family_name)
    try:
        return family.teacher_arguments(state, options)
    except (KeyError, ValueError) as err:
        why = f"no '{err.args[0]}'" if isinstance(err, KeyError) else str(err).strip().splitlines()[0][:200]
        raise PruneTargetError(f"the teacher's weights are not a {family.name} ({why})") from err


def _teacher(family: PruneFamily, state: Mapping[str, Tensor], options: Mapping[str, Any]) -> tuple[dict, nn.Module]:
    arguments = teacher_arguments(family.name, state, options)
    try:
        return arguments, family.deployed_teacher(state, arguments)
    except RuntimeError as err:  # load_state_dict: keys or shapes of another network
        first = str(err).strip().splitlines()
        why = " ".join(first[:2])[:200]
        raise PruneTargetError(f"the teacher's weights do not load into {family.name}: {why}") from err


def _with_depth(family: PruneFamily, teacher: nn.Module, arguments: dict, blocks: int, crops: Tensor):
    """The teacher with ``blocks`` blocks, the name of each conv's teacher conv, the blocks kept."""
    have = int(arguments["num_block"])
    if blocks == have:
        return copy.deepcopy(teacher), {}, list(range(have))

    def build(k: int) -> nn.Module:
        return family.build({**arguments, "num_block": k}, deploy=True)

    kept = choose_blocks(teacher, build, family.block_prefix, have, blocks, crops[:8])
    base, sources = with_blocks(teacher, build, family.block_prefix, kept)
    return base, sources, kept


def _cut(
    family: PruneFamily,
    base: nn.Module,
    arguments: dict,
    crops: Tensor,
    targets: Tensor | None,
    settings: PruneSettings,
):
    """``base`` with each group cut to the student's width, and each conv's kept output channels."""
    example = crops[:1]
    groups = channel_groups(base, example)
    energy = activation_energy(base, crops, settings.batch) if settings.importance == "energy" else None
    taylor = taylor_importance(base, crops, targets, settings.batch) if settings.importance == "taylor" else {}
    keep = {}
    for group in groups:
        outputs = [item.module for item in group.items if item.kind == "out"]
        width = family.group_width(outputs, arguments)
        if settings.importance == "taylor":
            scores = taylor[group.root]
        else:
            scores = group_scores(group, base, settings.importance, energy)
        keep[group.root] = keep_channels(scores, width)
    return prune_groups(base, example, keep), kept_outputs(groups, keep)


def _registered(family: PruneFamily, pruned: nn.Module, arguments: dict) -> nn.Module:
    deployed = family.build(arguments, deploy=True)
    deployed.load_state_dict(pruned.state_dict(), strict=True)
    return deployed.eval()


@torch.no_grad()
def prune_teacher(
    family_name: str,
    state: Mapping[str, Tensor],
    crops: Tensor,
    settings: PruneSettings,
    targets: Tensor | None = None,
) -> PruneResult:
    """Prune the teacher whose weights are ``state`` into a smaller ``family_name`` network (see the module doc).

    Args:
        family_name: The registered student family (``SPANStudent``, ``RLFNStudent``).
        state: The teacher's state dict (trainable or deployed form).
        crops: Calibration LR crops ``(N, C, h, w)`` in [0, 1] (:func:`kit.prune.calibration.calibration_crops`).
        settings: Target, importance, refit (:class:`PruneSettings`).
        targets: The crops' HR crops ``(N, C, s·h, s·w)`` (:func:`kit.prune.calibration.calibration_pairs`); needed
            by the ``taylor`` criterion only.

    Raises:
        ValueError: an unsupported family or importance criterion.
        PruneTargetError: weights of another architecture, or a target that cannot be met (one line each).
    """
    if settings.importance not in CRITERIA:
        raise ValueError(f"importance '{settings.importance}' is not one of {', '.join(CRITERIA)}")
    if settings.importance == "taylor" and targets is None:
        raise ValueError("importance 'taylor' needs the calibration crops' HR crops (targets)")
    family = get_family(family_name)
    teacher_args, teacher = _teacher(family, state, settings.teacher_options)
    arguments = resolve_target(family, teacher_args, settings.target)
    base, sources, kept_blocks = _with_depth(family, teacher, teacher_args, arguments["num_block"], crops)
    pruned, kept = _cut(family, base, arguments, crops, targets, settings)
    reports = (
        refit_network(pruned, teacher, crops, kept, sources, settings.ridge, settings.batch) if settings.refit else []
    )
    deployed = _registered(family, pruned, arguments)
    student_state = family.trainable_state(deployed, arguments, settings.seed)
    student = family.build(arguments, deploy=False)
    student.load_state_dict(student_state, strict=True)
    difference = float((student.eval()(crops[:2]) - deployed(crops[:2])).abs().max())
    target = settings.target
    params, gmacs = measure(family, arguments, target.input_size)
    if (target.max_params is not None and params > target.max_params) or (
        target.max_gmacs is not None and gmacs > target.max_gmacs
    ):  # resolve_target chose a fitting size; this guards the promise
        raise PruneTargetError(f"the pruned network ({params:,} params, {gmacs:.4g} GMACs) exceeds {target.describe()}")
    return PruneResult(
        family.name,
        teacher_args,
        arguments,
        deployed,
        student_state,
        params,
        gmacs,
        kept_blocks,
        reports,
        difference,
    )
