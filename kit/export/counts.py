"""Sizes as the NTIRE Efficient SR organisers compute them: params, fvcore FLOPs, activations, Conv2d count.

* **FLOPs**: fvcore's ``FlopCountAnalysis(model, torch.rand(1, 3, 256, 256)).total()`` — the organisers' call,
  run here on the deployed network. fvcore counts one fused multiply-add as one flop (a convolution's count is
  C_in/groups x k_h x k_w x C_out x H_out x W_out, no bias term), so this number *is* the MACs the kit reports and
  ``--max-gmacs`` checks (``tests/test_export_counts.py`` checks a convolution by hand). fvcore also counts
  bilinear/nearest resizing (4 and 1 per output element), adaptive average pooling, normalisation layers and
  matrix products; bicubic resizing, activations, max-pooling, pixel shuffle and element-wise arithmetic count 0.
  fvcore runs the network for real (a ``torch.jit`` trace) on a random input.
* **Activations / Conv2d count**: the semantics of ``get_model_activation(model, (3, 256, 256))`` from the
  organisers' ``utils/model_summary.py`` (reimplemented here): a forward hook on every module that *is an
  instance of* ``nn.Conv2d`` or ``nn.ConvTranspose2d`` (subclasses included) adds ``output.numel()`` of every call
  and 1 to the conv count per call (a module called twice counts twice), for one ``1 x 3 x 256 x 256`` input in
  eval mode. Functional convolutions (``F.conv2d``), linear layers and everything else count 0.
* **Params**: Σ numel of the parameters (:func:`kit.archs.count_params`).
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from kit.archs.deploy import count_params

__all__ = [
    "FLOPS_METHOD",
    "ACTIVATIONS_METHOD",
    "ChallengeCounts",
    "challenge_counts",
    "fvcore_flops",
    "ntire_activations",
]

FLOPS_METHOD = (
    "fvcore FlopCountAnalysis(model, torch.rand(1, 3, H, W)).total() on the deployed network (NTIRE ESR's count); "
    "fvcore counts one multiply-add as one flop, so MACs = fvcore FLOPs"
)
ACTIVATIONS_METHOD = (
    "NTIRE ESR get_model_activation semantics: sum of output numel of every nn.Conv2d/nn.ConvTranspose2d call for "
    "one 1x3xHxW input; num_conv = number of such calls"
)


def fvcore_flops(net: nn.Module, input_shape: tuple[int, int, int, int] = (1, 3, 256, 256)) -> int:
    """fvcore's ``FlopCountAnalysis(net, torch.rand(*input_shape)).total()``, ``net`` untouched (a copy runs).

    Raises:
        ImportError: fvcore is not installed (``pip install fvcore``).
    """
    model = copy.deepcopy(net).float().cpu().eval()
    x = torch.rand(*input_shape, generator=torch.Generator().manual_seed(0))
    quiet = logging.getLogger("fvcore")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # fvcore's import and trace warn about torch.jit's deprecation
            from fvcore.nn import FlopCountAnalysis

            counter = FlopCountAnalysis(model, x)
            counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(counter.total())
    finally:
        quiet.setLevel(level)


def ntire_activations(net: nn.Module, input_res: tuple[int, int, int] = (3, 256, 256)) -> tuple[int, int]:
    """``(activations, num_conv)`` as NTIRE's ``get_model_activation(net, input_res)`` counts them.

    A copy of ``net`` runs once on a ``1 x input_res`` input in eval mode; ``net`` keeps no hooks.
    """
    model = copy.deepcopy(net).float().cpu().eval()
    totals = {"activations": 0, "calls": 0}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        totals["activations"] += output.numel()
        totals["calls"] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, *input_res))
    finally:
        for h in handles:
            h.remove()
    return totals["activations"], totals["calls"]


@dataclass(frozen=True)
class ChallengeCounts:
    """What the NTIRE ESR organisers print for a network at ``input_shape`` (their 1x3x256x256)."""

    params: int
    flops: int
    activations: int
    num_conv: int
    input_shape: tuple[int, int, int, int]

    def record(self) -> dict:
        """The manifest's ``counts`` entry."""
        return {
            "params": self.params,
            "flops": self.flops,
            "gflops": self.flops / 1e9,
            "activations": self.activations,
            "activations_m": self.activations / 1e6,
            "num_conv": self.num_conv,
            "input_shape": list(self.input_shape),
            "flops_method": FLOPS_METHOD,
            "activations_method": ACTIVATIONS_METHOD,
            "params_method": "sum of numel of the deployed network's parameters",
        }


def challenge_counts(net: nn.Module, input_shape: tuple[int, int, int, int] = (1, 3, 256, 256)) -> ChallengeCounts:
    """Params, fvcore FLOPs, activations and Conv2d count of a deployed network at ``input_shape``."""
    activations, num_conv = ntire_activations(net, tuple(input_shape[1:]))
    return ChallengeCounts(count_params(net), fvcore_flops(net, input_shape), activations, num_conv, tuple(input_shape))
