"""Which channels are coupled (torch-pruning's dependency graph), pruning them, and dropping whole blocks.

Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023 (PyPI ``torch-pruning``). The graph is traced
from the deployed network, so the residual stream shared across blocks, the concatenation into ``conv_cat``
(SPAN) or the ESA mask multiplied into the features (RLFN) are found, not listed. The image-producing conv before
the pixel shuffle is never a root: its output channels are the image's sub-pixels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "ChannelGroup",
    "GroupItem",
    "channel_groups",
    "choose_blocks",
    "conv_names",
    "prune_groups",
    "taylor_importance",
    "with_blocks",
]


@dataclass(frozen=True)
class GroupItem:
    """One conv's share of a channel group.

    Attributes:
        module: The conv's name in the network.
        kind: ``"out"`` (its output channels) or ``"in"`` (its input channels).
        idxs: Channel indices in that conv's own dimension.
        root_idxs: For each of ``idxs``, the root's channel it moves with (a concatenated tensor may repeat one).
    """

    module: str
    kind: str
    idxs: tuple[int, ...]
    root_idxs: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that must be kept or removed together, named by the conv whose output channels root them."""

    root: str
    size: int
    items: tuple[GroupItem, ...]


def conv_names(net: nn.Module) -> dict[nn.Module, str]:
    """Every ``nn.Conv2d`` of ``net`` with its name."""
    return {m: n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}


def _graph(net: nn.Module, example: Tensor):
    import torch_pruning as tp

    with torch.enable_grad():  # the graph is traced through autograd
        return tp.DependencyGraph().build_dependency(net, example_inputs=example, verbose=False)


def _image_conv(net: nn.Module) -> nn.Module:
    """The conv that produces the image's sub-pixels (``upsampler.0``)."""
    return net.get_submodule("upsampler.0")


def channel_groups(net: nn.Module, example: Tensor) -> list[ChannelGroup]:
    """The prunable channel groups of ``net`` (deployed, plain convs), traced on ``example``.

    Args:
        net: The network, left unchanged.
        example: An input batch ``(1, C, h, w)`` to trace with.
    """
    names = conv_names(net)
    graph = _graph(net, example)
    groups = []
    for group in graph.get_all_groups(ignored_layers=[_image_conv(net)], root_module_types=[nn.Conv2d]):
        items = []
        for item in group.items:
            module = item.dep.target.module
            if module not in names:  # element-wise, concat and output nodes carry no weights
                continue
            kind = "out" if graph.is_out_channel_pruning_fn(item.dep.handler) else "in"
            items.append(GroupItem(names[module], kind, tuple(item.idxs), tuple(item.root_idxs)))
        groups.append(ChannelGroup(items[0].module, len(items[0].idxs), tuple(items)))
    return groups


def taylor_importance(net: nn.Module, crops: Tensor, targets: Tensor, batch: int = 8) -> dict[str, Tensor]:
    """First-order Taylor importance of every channel group (by root conv name), from torch-pruning.

    Molchanov et al., "Importance Estimation for Neural Network Pruning", CVPR 2019, as torch-pruning's
    ``GroupTaylorImportance`` computes it over a group: ``|w · dL/dw|`` summed over each channel's weights in every
    conv of the group, where ``L`` is the L1 loss of ``net`` to the HR crops ``targets`` (the training loss),
    accumulated over ``crops``. A copy of ``net`` is scored; ``net`` is left unchanged.

    Args:
        net: The network (deployed, plain convs).
        crops: LR crops ``(N, C, h, w)``.
        targets: Their HR crops ``(N, C, s·h, s·w)``.
        batch: Crops per forward pass.
    """
    import torch_pruning as tp

    scored = copy.deepcopy(net).float().eval()
    for param in scored.parameters():
        param.requires_grad_(True)
        param.grad = None
    with torch.enable_grad():
        for start in range(0, crops.shape[0], batch):
            x, y = crops[start : start + batch], targets[start : start + batch]
            loss = (scored(x) - y).abs().mean() * (x.shape[0] / crops.shape[0])
            loss.backward()
    names = conv_names(scored)
    graph = _graph(scored, crops[:1])
    criterion = tp.importance.GroupTaylorImportance()
    scores = {}
    for group in graph.get_all_groups(ignored_layers=[_image_conv(scored)], root_module_types=[nn.Conv2d]):
        value = criterion(group)
        if value is not None:
            scores[names[group[0].dep.target.module]] = value.detach().double().cpu()
    return scores


def prune_groups(net: nn.Module, example: Tensor, keep: Mapping[str, Sequence[int]]) -> nn.Module:
    """A copy of ``net`` where each group (by root conv name) keeps only the root channels ``keep[root]``.

    Groups are disjoint in every conv's dimensions, so each is pruned on its own; the graph re-maps concatenation
    offsets after each step.
    """
    import torch_pruning as tp

    pruned = copy.deepcopy(net)
    graph = _graph(pruned, example)
    for root, kept in keep.items():
        module = pruned.get_submodule(root)
        removed = sorted(set(range(module.out_channels)) - {int(i) for i in kept})
        if removed:
            graph.get_pruning_group(module, tp.prune_conv_out_channels, removed).prune()
    return pruned


def with_blocks(
    net: nn.Module, build: Callable[[int], nn.Module], prefix: Callable[[int], str], kept: Sequence[int]
) -> tuple[nn.Module, dict[str, str]]:
    """A network with only the blocks ``kept`` (0-based, in order) of ``net``, renumbered, other weights shared.

    Args:
        net: The deployed network.
        build: Builds the same family with that many blocks (deployed).
        prefix: State-dict prefix of block ``i`` (``block_{i+1}.``, ``body.{i}.``).
        kept: The blocks to keep.

    Returns:
        The network (eval mode), and for each of its convs the name of the conv of ``net`` it came from.
    """
    state = net.state_dict()
    small = build(len(kept))
    renamed = {prefix(new): prefix(old) for new, old in enumerate(kept)}
    source = {}
    for key in small.state_dict():
        old = next((o + key[len(n) :] for n, o in renamed.items() if key.startswith(n)), key)
        source[key] = old
    small.load_state_dict({key: state[old] for key, old in source.items()}, strict=True)
    names = {n: n for n in conv_names(small).values()}
    for name in names:
        names[name] = source[f"{name}.weight"].removesuffix(".weight")
    return small.eval(), names


@torch.no_grad()
def choose_blocks(
    net: nn.Module,
    build: Callable[[int], nn.Module],
    prefix: Callable[[int], str],
    have: int,
    blocks: int,
    crops: Tensor,
) -> list[int]:
    """The ``blocks`` blocks to keep: greedily drop the one whose removal changes ``net``'s output least.

    Args:
        net: The deployed network.
        build: Builds the same family with that many blocks (deployed).
        prefix: State-dict prefix of block ``i``.
        have: How many blocks ``net`` has.
        blocks: How many to keep.
        crops: Calibration inputs ``(N, C, h, w)``.
    """
    reference = net(crops)
    kept = list(range(have))
    while len(kept) > blocks:
        trials = []
        for i in kept:
            small, _ = with_blocks(net, build, prefix, [k for k in kept if k != i])
            trials.append((float((small(crops) - reference).square().mean()), i))
        kept.remove(min(trials)[1])
    return kept
