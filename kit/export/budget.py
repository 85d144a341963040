"""The size gate: parameters and MACs of the deployed student, checked against a challenge's limits.

* **Parameters**: Σ numel over the parameters of the *deployed* network (:func:`kit.archs.deploy_network`:
  re-parameterisable branches fused, eval mode) — the NTIRE Efficient SR definition. Only ``network_g`` is
  built, so the teacher, the connectors and the EMA copy never count.
* **MACs**: fvcore's ``FlopCountAnalysis(net, torch.rand(1, 3, H, W)).total()`` at the reference LR input
  (default 1×3×256×256) — NTIRE ESR's FLOPs, identical by construction (:mod:`kit.export.counts`). fvcore counts
  one fused multiply-add as one flop, so its "FLOPs" are MACs. Besides convolutions and matrix products it counts
  bilinear/nearest resizing (e.g. RLFN's ESA upsampling: 4 per output element), normalisation and adaptive
  pooling; bicubic resizing, activations, max-pooling and pixel shuffle count zero.
  :func:`count_macs` (``torch.utils.flop_counter.FlopCounterMode`` / 2, meta device) is the older count: it
  omits the resizing, e.g. 9.5840 vs fvcore's 9.6008 G on the shipped RLFN student.

A limit is inclusive: ``params <= max_params`` passes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kit.archs.deploy import count_params

__all__ = ["MACS_METHOD", "Budget", "BudgetError", "budget_violations", "count_macs", "measure_budget"]

MACS_METHOD = (
    "fvcore FlopCountAnalysis(model, torch.rand(1, 3, H, W)).total() on the deployed network (NTIRE ESR's FLOPs); "
    "fvcore counts one multiply-add as one flop, so MACs = fvcore FLOPs"
)


class BudgetError(ValueError):
    """The deployed student is over a parameter or MAC limit."""


@dataclass(frozen=True)
class Budget:
    """Size of a deployed network: parameters and MACs for ``input_shape``."""

    params: int
    macs: int
    input_shape: tuple[int, int, int, int]

    @property
    def gmacs(self) -> float:
        """MACs in units of 1e9."""
        return self.macs / 1e9


def count_macs(net: nn.Module, input_shape: tuple[int, int, int, int]) -> int:
    """Multiply-accumulates (FLOPs / 2) of one forward pass of ``net`` on an input of ``input_shape``.

    A copy of ``net`` runs on the meta device, so nothing is computed and ``net`` is untouched.
    """
    meta = copy.deepcopy(net).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(*input_shape, device="meta"))
    return int(counter.get_total_flops()) // 2


def measure_budget(deployed: nn.Module, input_shape: tuple[int, int, int, int]) -> Budget:
    """:class:`Budget` of an already deployed network (see :func:`kit.archs.deploy_network`); MACs by fvcore."""
    from kit.export.counts import fvcore_flops

    return Budget(count_params(deployed), fvcore_flops(deployed, input_shape), tuple(input_shape))


def budget_violations(budget: Budget, max_params: int | None, max_gmacs: float | None) -> list[str]:
    """One line per limit exceeded (empty when within every limit), with both numbers and the excess."""
    problems = []
    if max_params is not None and budget.params > max_params:
        over = budget.params - max_params
        share = 100 * over / max_params
        problems.append(f"parameters: {budget.params:,d} > limit {max_params:,d} (over by {over:,d}, {share:.2f}%)")
    if max_gmacs is not None and budget.gmacs > max_gmacs:
        over = budget.gmacs - max_gmacs
        shape = "x".join(map(str, budget.input_shape))
        problems.append(
            f"GMACs at {shape}: {budget.gmacs:.4f} > limit {max_gmacs:g} (over by {over:.4f}, "
            f"{100 * over / max_gmacs:.2f}%)"
        )
    return problems
