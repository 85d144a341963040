"""The student's size from a target stated as challenges state it: a parameter or GMAC cap, or a width and depth.

Parameters are counted on the deployed network (Σ numel, re-parameterisable branches fused: the NTIRE Efficient SR
definition, :func:`kit.archs.count_params`); GMACs are fvcore's at a ``1×C×H×W`` input (as ``kit.export.counts``
and the NTIRE organisers count them: one multiply-add is one flop). A cap is met and never exceeded: the widest
width (channels per group; the same width for every group, so the result is the registered family at that width)
whose network fits is chosen; when even one channel does not fit, :class:`PruneTargetError` says why in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from kit.archs.deploy import count_params
from kit.prune.families import PruneFamily

__all__ = ["PruneTarget", "PruneTargetError", "measure", "resolve_target"]


class PruneTargetError(ValueError):
    """A target the teacher cannot be pruned to (the message is one line saying why)."""


@dataclass(frozen=True)
class PruneTarget:
    """What the pruned student must be.

    Attributes:
        width: Channels per group (``num_feat``); ``None``: the widest that meets the caps.
        blocks: Blocks to keep; ``None``: all the teacher's.
        max_params: Inclusive cap on deployed parameters.
        max_gmacs: Inclusive cap on fvcore GMACs at ``input_size``.
        input_size: ``(H, W)`` of the LR input the GMACs are counted at.
    """

    width: int | None = None
    blocks: int | None = None
    max_params: int | None = None
    max_gmacs: float | None = None
    input_size: tuple[int, int] = (256, 256)

    def describe(self) -> str:
        """The target as the flags state it, e.g. ``--max-params 150688 --max-gmacs 9.83 (at 256x256)``."""
        parts = [f"--width {self.width}"] if self.width is not None else []
        parts += [f"--max-params {self.max_params}"] if self.max_params is not None else []
        if self.max_gmacs is not None:
            parts.append(f"--max-gmacs {self.max_gmacs:g} (at {self.input_size[0]}x{self.input_size[1]})")
        parts += [f"--blocks {self.blocks}"] if self.blocks is not None else []
        return " ".join(parts)


def measure(family: PruneFamily, arguments: Mapping[str, Any], input_size: tuple[int, int] | None) -> tuple[int, float]:
    """``(parameters, GMACs)`` of the deployed family network (GMACs ``nan`` when ``input_size`` is ``None``)."""
    from kit.export.counts import fvcore_flops

    torch.manual_seed(0)
    net = family.build(arguments, deploy=True).eval()
    params = count_params(net)
    if input_size is None:
        return params, float("nan")
    return params, fvcore_flops(net, (1, int(arguments["num_in_ch"]), *input_size)) / 1e9


def _fits(target: PruneTarget, params: int, gmacs: float) -> bool:
    return (target.max_params is None or params <= target.max_params) and (
        target.max_gmacs is None or gmacs <= target.max_gmacs
    )


def resolve_target(family: PruneFamily, teacher: Mapping[str, Any], target: PruneTarget) -> dict[str, Any]:
    """The student's constructor arguments for ``target``.

    Raises:
        PruneTargetError: a width/depth the teacher does not have, no cap and no width, or caps that even one
            channel per group exceeds.
    """
    widest, depth = int(teacher[family.width_argument]), int(teacher["num_block"])
    blocks = depth if target.blocks is None else target.blocks
    if not 1 <= blocks <= depth:
        raise PruneTargetError(f"--blocks {blocks}: the teacher has {depth} blocks; keep between 1 and {depth}")
    if target.width is not None:
        if not 1 <= target.width <= widest:
            raise PruneTargetError(
                f"--width {target.width}: the teacher's {family.width_argument} is {widest}; pruning only removes "
                f"channels, so choose 1 to {widest}"
            )
        return family.student_arguments(teacher, target.width, blocks)
    if target.max_params is None and target.max_gmacs is None:
        raise PruneTargetError("no target: give --width, --max-params or --max-gmacs")
    size = target.input_size if target.max_gmacs is not None else None
    low, high = 1, widest  # the widest fitting width, by bisection: size grows with the width
    params, gmacs = measure(family, family.student_arguments(teacher, low, blocks), size)
    if not _fits(target, params, gmacs):
        gmac_text = "" if size is None else f" and {gmacs:.4g} GMACs at {size[0]}x{size[1]}"
        raise PruneTargetError(
            f"{family.name} cannot meet {target.describe()}: even at {family.width_argument} 1 with {blocks} blocks it "
            f"has {params:,} parameters{gmac_text}; raise the cap or keep fewer blocks (--blocks)"
        )
    while low < high:
        mid = (low + high + 1) // 2
        if _fits(target, *measure(family, family.student_arguments(teacher, mid, blocks), size)):
            low = mid
        else:
            high = mid - 1
    return family.student_arguments(teacher, low, blocks)
