"""The size gate: parameters and MACs of the deployed student, checked against a challenge's limits.

* **Parameters**: Σ numel over the parameters of the *deployed* network (:func:`kit.archs.deploy_network`:
  re-parameterisable branches fused, eval mode) — the NTIRE Efficient SR definition. Only ``network_g`` is
  built, so the teacher, the connectors and the EMA copy never count.
* **MACs**: FLOPs / 2 counted by ``torch.utils.flop_counter.FlopCounterMode`` for one forward pass on a
  reference LR input (default 1×3×256×256), run on the meta device (no arithmetic). Like fvcore (NTIRE's
  counter), it counts convolutions and matrix products; activations, interpolation, pooling and pixel shuffle
  count zero.

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
    "torch.utils.flop_counter.FlopCounterMode on the deployed network; MACs = FLOPs / 2; counts convolutions and "
    "matrix products (as fvcore), not activations, interpolation, pooling or pixel shuffle"
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
    """:class:`Budget` of an already deployed network (see :func:`kit.archs.deploy_network`)."""
    return Budget(count_params(deployed), count_macs(deployed, input_shape), tuple(input_shape))


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
