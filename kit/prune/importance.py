"""Which channels of a group to keep: the teacher's activation energy on calibration crops, or filter magnitude.

* ``energy`` (default): for every conv in the group, the mean square of the teacher's activations on the
  calibration crops at that channel — its output channels for a producer, its input channels for a consumer (so a
  residual stream is scored where it is read, after each block's attention). Each conv's scores are divided by
  their mean so every conv in the group votes with the same weight, then summed onto the root's channels.
  Measured with ``kit-prune --family SPANStudent --width 28`` on the official SPAN ch48 (48 crops of the bundled
  train photos), Set5 PSNR-Y before any training: energy + refit 30.03 dB, ``taylor`` + refit 30.56, ``l1`` + refit
  16.68; without the refit, energy 17.69, ``taylor`` 23.99, ``l1`` 8.23. What each start gives after training:
  docs/pruning.md.
* ``taylor``: first-order Taylor importance of the L1 loss to the HR crops (Molchanov et al., CVPR 2019; torch-pruning's
  ``GroupTaylorImportance``, :func:`kit.prune.graph.taylor_importance`): how much the loss would change, to first
  order, without each channel's weights. Needs the calibration photos' HR crops.
* ``l1``: the L1 norm of each producer's filter (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017),
  normalised and summed the same way; the naive baseline.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from kit.prune.graph import ChannelGroup, conv_names

__all__ = ["CRITERIA", "ChannelEnergy", "activation_energy", "group_scores", "keep_channels", "kept_outputs"]

CRITERIA = ("energy", "taylor", "l1")


class ChannelEnergy:
    """Mean square per channel of every conv's input and output over calibration batches."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str], Tensor] = {}
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, name: str, kind: str, x: Tensor) -> None:
        """Accumulate a batch ``(N, C, H, W)`` for the conv ``name``'s ``kind`` (``"in"``/``"out"``) side."""
        key = (name, kind)
        total = x.detach().double().square().sum(dim=(0, 2, 3))
        self.sums[key] = self.sums.get(key, 0) + total
        self.counts[key] = self.counts.get(key, 0) + x.shape[0] * x.shape[2] * x.shape[3]

    def get(self, name: str, kind: str) -> Tensor:
        """``(C,)`` mean squares of conv ``name``'s ``kind`` side."""
        return self.sums[(name, kind)] / self.counts[(name, kind)]


@torch.no_grad()
def activation_energy(net: nn.Module, crops: Tensor, batch: int = 8) -> ChannelEnergy:
    """Per-channel activation energy of every conv of ``net`` (eval mode) on ``crops`` ``(N, C, h, w)``."""
    energy = ChannelEnergy()
    hooks = []
    for module, name in conv_names(net).items():

        def hook(_: nn.Module, args: tuple[Tensor, ...], out: Tensor, name: str = name) -> None:
            energy.add(name, "in", args[0])
            energy.add(name, "out", out)

        hooks.append(module.register_forward_hook(hook))
    try:
        for start in range(0, crops.shape[0], batch):
            net(crops[start : start + batch])
    finally:
        for h in hooks:
            h.remove()
    return energy


def _normalised(values: Tensor) -> Tensor:
    return values / values.mean().clamp_min(1e-12)


def group_scores(group: ChannelGroup, net: nn.Module, criterion: str, energy: ChannelEnergy | None) -> Tensor:
    """``(group.size,)`` importance of each root channel of ``group`` (higher: keep).

    Args:
        group: The channel group.
        net: The network the group was traced on (for ``l1``, its weights).
        criterion: ``"energy"`` or ``"l1"``.
        energy: :func:`activation_energy` of ``net`` (``energy`` only).
    """
    scores = torch.zeros(group.size, dtype=torch.float64)
    for item in group.items:
        if criterion == "l1":
            if item.kind != "out":
                continue
            weight = net.get_submodule(item.module).weight.detach().double()
            values = weight.abs().sum(dim=(1, 2, 3))
        else:
            values = energy.get(item.module, item.kind)
        scores.index_add_(0, torch.tensor(item.root_idxs), _normalised(values)[list(item.idxs)])
    return scores


def keep_channels(scores: Tensor, width: int) -> list[int]:
    """The ``width`` highest-scoring root channels, in increasing order (ties: the lower index)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:width])


def kept_outputs(groups: list[ChannelGroup], keep: Mapping[str, list[int]]) -> dict[str, list[int]]:
    """For every conv whose output channels belong to a group, the output channels it keeps (original indices)."""
    kept = {}
    for group in groups:
        roots = set(keep[group.root])
        for item in group.items:
            if item.kind == "out":
                kept[item.module] = sorted(i for i, r in zip(item.idxs, item.root_idxs) if r in roots)
    return kept
