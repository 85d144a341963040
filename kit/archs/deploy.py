"""Turn a trained student into its deploy form, and count parameters the way challenges do."""

from __future__ import annotations

import copy

from torch import nn


def deploy_network(net: nn.Module) -> nn.Module:
    """Return the network to export: ``net.fuse()`` when the class defines it, else ``net``; in eval mode.

    ``net`` is deep-copied first, so it is left untouched (its mode, weights and branches).

    Args:
        net: A trained student, e.g. :class:`~kit.archs.rep_student.RepSRStudent`.

    Returns:
        A module computing the same function in eval mode, with re-parameterisable branches fused.
    """
    net = copy.deepcopy(net)
    fuse = getattr(net, "fuse", None)
    if callable(fuse):
        net = fuse()
    return net.eval()


def count_params(net: nn.Module) -> int:
    """Number of parameters, Σ numel (the NTIRE Efficient SR definition); shared tensors count once."""
    return sum(p.numel() for p in net.parameters())
