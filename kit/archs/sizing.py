"""Which configurations of a student family fit a challenge's caps (deployed parameters, GMACs at an input size).

Each :class:`Family` is a grid of constructor arguments: a few depths (rows) times widths in ascending order.
Parameters are counted on the *deployed* network built on the meta device (no memory, no arithmetic):
``deploy=True`` where the class has it, else :func:`kit.archs.deploy_network`. MACs are fvcore's count (the one
``export.py --max-gmacs`` gates on), on the CPU and only when a GMACs cap or a row asks for them. Parameters and
MACs grow with the width, so a row stops at its first width over a cap.

Example::

    fits = fitting("SPANStudent", scale=4, input_shape=(1, 3, 256, 256), max_params=5_000_000, max_gmacs=None)
    best = recommend(fits)  # the most deployed parameters within every cap; ties: fewer MACs
    best.network_g()        # {'type': 'SPANStudent', 'scale': 4, 'num_feat': ..., 'num_block': ...}
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from kit.archs.deploy import count_params, deploy_network
from kit.export.budget import Budget, budget_violations
from kit.export.counts import fvcore_flops

__all__ = ["FAMILIES", "RULE", "Candidate", "Family", "build_deployed", "fitting", "recommend"]

RULE = "the most deployed parameters within every cap (the capacity the caps allow); ties: fewer GMACs"


@dataclass(frozen=True)
class Family:
    """A student family's search grid.

    Attributes:
        name: The registered class.
        width_key: The constructor argument swept in ascending order within a row.
        widths: Its values.
        rows: The other arguments of each row (depths).
        default_scale: The scale when none is given (1 for same-size restoration).
    """

    name: str
    width_key: str
    widths: tuple[int, ...]
    rows: tuple[Mapping[str, Any], ...]
    default_scale: int = 4

    def describe(self, widths: tuple[int, ...] | None = None) -> str:
        """One line: the grid searched (``widths``: the widths searched instead of the family's)."""
        widths = widths or self.widths
        others = sorted({k for row in self.rows for k in row})
        depths = "; ".join(", ".join(f"{k} {row[k]}" for k in others) for row in self.rows)
        return f"{self.width_key} {widths[0]}–{widths[-1]} ({len(widths)} values) × [{depths}]"

    def stepped(self, step: int) -> tuple[int, ...]:
        """The family's width range in steps of ``step`` (1: every width)."""
        if step < 1:
            raise ValueError(f"the width step must be at least 1, got {step}")
        return tuple(range(self.widths[0], self.widths[-1] + 1, step))


_WIDTHS = tuple(range(16, 257, 4))  # every 4: the NTIRE 2026 ESR baseline's 28 channels (SPAN) is on the grid
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("SPANStudent", "num_feat", _WIDTHS, tuple({"num_block": n} for n in (4, 6, 8, 10, 12))),
        Family("RLFNStudent", "num_feat", _WIDTHS, tuple({"num_block": n} for n in (4, 6, 8, 10, 12))),
        Family("RepSRStudent", "num_feat", _WIDTHS, tuple({"num_block": n} for n in (4, 8, 12, 16, 24, 32))),
        Family(
            "NAFStudent",
            "width",
            tuple(range(8, 65, 4)),
            tuple(
                {"enc_blk_nums": list(enc), "middle_blk_num": mid, "dec_blk_nums": [1] * len(enc)}
                for enc, mid in (((1, 1, 1, 8), 1), ((1, 1, 1, 28), 1), ((2, 2, 4, 8), 12))
            ),
            default_scale=1,
        ),
    )
}


@dataclass
class Candidate:
    """One configuration and its deployed size (MACs counted on demand: :meth:`count_macs`).

    Attributes:
        family: The registered class.
        arguments: Its constructor arguments.
        params: Deployed parameters (Σ numel).
        macs: MACs at :attr:`input_shape`, ``None`` until counted.
        input_shape: The reference LR input of the MACs.
        latency_ms: onnxruntime CPU latency, when measured.
    """

    family: str
    arguments: dict[str, Any]
    params: int
    input_shape: tuple[int, int, int, int]
    macs: int | None = None
    latency_ms: float | None = None

    def count_macs(self) -> int:
        """Count (once) and return the MACs of the deployed network at :attr:`input_shape`.

        fvcore's count, as ``export.py``'s ``--max-gmacs`` gate and the NTIRE organisers take it
        (:func:`kit.export.counts.fvcore_flops`); fvcore runs the network, so it is built on the CPU here.
        """
        if self.macs is None:
            self.macs = fvcore_flops(build_deployed(self.family, self.arguments, "cpu"), self.input_shape)
        return self.macs

    @property
    def gmacs(self) -> float:
        """GMACs at the reference input (counted if needed)."""
        return self.count_macs() / 1e9

    @property
    def budget(self) -> Budget:
        """As :func:`kit.export.budget.measure_budget` reports it."""
        return Budget(self.params, self.count_macs(), self.input_shape)

    def network_g(self) -> dict[str, Any]:
        """The options' ``network_g`` entry that builds this configuration."""
        return {"type": self.family, **self.arguments}


def _registered(name: str) -> type[nn.Module]:
    if name not in FAMILIES:
        raise ValueError(f"no search grid for '{name}'; families: {', '.join(sorted(FAMILIES))}")
    return ARCH_REGISTRY.get(name)


def build_deployed(name: str, arguments: Mapping[str, Any], device: str | torch.device = "meta") -> nn.Module:
    """The deployed network of ``name(**arguments)`` (eval mode) on ``device`` (meta: sizes only)."""
    cls = _registered(name)
    kwargs = dict(arguments)
    direct = "deploy" in inspect.signature(cls).parameters
    if direct:
        kwargs["deploy"] = True
    with torch.device(device):
        net = cls(**kwargs)
    return net.eval() if direct else deploy_network(net)


def fitting(
    name: str,
    scale: int,
    input_shape: tuple[int, int, int, int],
    max_params: int | None,
    max_gmacs: float | None,
    widths: tuple[int, ...] | None = None,
) -> tuple[list[Candidate], int]:
    """Every configuration of the family's grid within the caps, largest (deployed parameters) first.

    MACs are counted for every configuration when ``max_gmacs`` is set, else only when asked
    (:meth:`Candidate.count_macs`), which keeps a parameter-only search to seconds.

    Args:
        name: The family (a key of :data:`FAMILIES`).
        scale: The upscaling factor (checked by the class).
        input_shape: The reference LR input for the MACs, e.g. ``(1, 3, 256, 256)``.
        max_params: Inclusive parameter cap, or ``None``.
        max_gmacs: Inclusive GMACs cap at ``input_shape``, or ``None``.
        widths: The widths to search, ascending (default: the family's grid, e.g. :meth:`Family.stepped`).

    Returns:
        The fitting candidates (most parameters first) and how many configurations were sized.
    """
    family = FAMILIES.get(name)
    if family is None:
        raise ValueError(f"no search grid for '{name}'; families: {', '.join(sorted(FAMILIES))}")
    fits, sized = [], 0
    for row in family.rows:
        for width in sorted(widths or family.widths):
            arguments = {"scale": scale, **row, family.width_key: width}
            candidate = Candidate(name, arguments, count_params(build_deployed(name, arguments)), input_shape)
            sized += 1
            if max_params is not None and candidate.params > max_params:
                break  # wider is larger
            if max_gmacs is not None and budget_violations(candidate.budget, None, max_gmacs):
                break
            fits.append(candidate)
    fits.sort(key=lambda c: -c.params)
    return fits, sized


def recommend(fits: list[Candidate]) -> Candidate | None:
    """The candidate :data:`RULE` picks, or ``None`` if none fits."""
    if not fits:
        return None
    most = max(c.params for c in fits)
    return min((c for c in fits if c.params == most), key=lambda c: c.count_macs())
