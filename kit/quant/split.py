"""Split concatenated inputs: ``conv(cat[a, b, c])`` rewritten as ``conv_a(a) + conv_b(b) + conv_c(c)``, exactly.

A per-tensor uint8 quantiser on a concatenation gives all its parts one scale; when their ranges differ (SPAN's
``conv_cat`` reads parts of about ±28 and ±1.9), the small ones lose most of their levels. A convolution
(``groups == 1``) is linear in its input channels, so one convolution per part, each with the slice of the weight
over that part's channels (the first part carries the bias), summed, computes the same function; prepared for
QAT, each part convolution then has its own input quantiser.

Done on the FX graph (``torch.fx.symbolic_trace``) before ``prepare_qat_fx``: the parts are the modules
``<path>_part<k>`` beside the original, and the sum is a :class:`ConvSum` module at the original path, so a
forward hook on that path (a distillation pair such as ``quantised.conv_cat``) records the full sum.
:func:`join_split_weights` puts the original weights back together (:meth:`QATStudent.fp32_network`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["ConvSum", "join_split_weights", "split_concat_convolutions", "split_convolutions"]

_CATS = (torch.cat, torch.concat, torch.concatenate)


class ConvSum(nn.Module):
    """The output of a split convolution: the sum of its parts' outputs (``<path>_part0`` … called before it).

    It has no weights; the parts are its siblings so that ``prepare_qat_fx`` (which keeps it a leaf, see
    :func:`kit.quant.scheme.prepare_qat`) quantises each as a convolution of its own.
    """

    def __init__(self, parts: int) -> None:
        super().__init__()
        self.parts = parts

    def forward(self, *outputs: Tensor) -> Tensor:
        total = outputs[0]
        for out in outputs[1:]:
            total = total + out
        return total

    def extra_repr(self) -> str:
        return f"parts={self.parts}"


def split_convolutions(net: nn.Module) -> list[str]:
    """Module paths of the convolutions of ``net`` that :func:`split_concat_convolutions` split."""
    return [name for name, m in net.named_modules() if isinstance(m, ConvSum)]


def _channel_cat(node: fx.Node) -> list[fx.Node] | None:
    """The parts of ``node`` when it concatenates two or more tensors along the channels (dim 1), else None."""
    if node.op != "call_function" or node.target not in _CATS:
        return None
    parts = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    rank = len(node.meta["tensor_meta"].shape)
    if not isinstance(parts, (list, tuple)) or len(parts) < 2 or not all(isinstance(p, fx.Node) for p in parts):
        return None
    return list(parts) if dim % rank == 1 else None


def _split_one(gm: fx.GraphModule, conv_node: fx.Node, parts: list[fx.Node]) -> None:
    """Replace ``conv_node`` (reading the concatenation of ``parts``) by part convolutions and their sum."""
    path = str(conv_node.target)
    conv: nn.Conv2d = gm.get_submodule(path)
    parent_path, _, name = path.rpartition(".")
    parent = gm.get_submodule(parent_path)
    cat_node, start, outputs = conv_node.args[0], 0, []
    for k, part in enumerate(parts):
        channels = part.meta["tensor_meta"].shape[1]
        piece = nn.Conv2d(
            channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            bias=k == 0 and conv.bias is not None, padding_mode=conv.padding_mode,
        ).to(conv.weight)  # fmt: skip
        with torch.no_grad():
            piece.weight.copy_(conv.weight[:, start : start + channels])
            if piece.bias is not None:
                piece.bias.copy_(conv.bias)
        start += channels
        if hasattr(parent, f"{name}_part{k}"):
            raise ValueError(f"split_concat: {path}_part{k} exists already in {type(gm).__name__}")
        parent.add_module(f"{name}_part{k}", piece)
        with gm.graph.inserting_before(conv_node):
            outputs.append(gm.graph.call_module(f"{path}_part{k}", (part,)))
    setattr(parent, name, ConvSum(len(parts)))
    with gm.graph.inserting_before(conv_node):
        total = gm.graph.call_module(path, tuple(outputs))
    conv_node.replace_all_uses_with(total)
    gm.graph.erase_node(conv_node)
    gm.graph.erase_node(cat_node)


def split_concat_convolutions(net: nn.Module, example: Tensor, keep: Collection[str] = ()) -> fx.GraphModule | None:
    """``net`` traced, with every convolution that reads a channel concatenation split (see the module docstring).

    Args:
        net: The network (modified in no way: the returned graph module holds new part convolutions).
        example: An input for shape propagation (the parts' channel counts).
        keep: Module paths of convolutions left as they are (kept float).

    Returns:
        The rewritten ``torch.fx.GraphModule``, or None when no convolution qualified. Only a convolution with
        ``groups == 1`` whose concatenation has no other user is split.
    """
    gm = fx.symbolic_trace(net)
    ShapeProp(gm).propagate(example)
    found = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or str(node.target) in keep or not node.args:
            continue
        module, source = gm.get_submodule(str(node.target)), node.args[0]
        if not isinstance(module, nn.Conv2d) or module.groups != 1 or not isinstance(source, fx.Node):
            continue
        parts = _channel_cat(source)
        if parts is not None and len(source.users) == 1:
            found.append((node, parts))
    for node, parts in found:
        _split_one(gm, node, parts)
    if not found:
        return None
    gm.graph.lint()
    gm.recompile()
    return gm


def join_split_weights(state: Mapping[str, Tensor], split: Collection[str]) -> dict[str, Tensor]:
    """``state`` with each split convolution's ``weight``/``bias`` put back together from its parts' (fp32 layout).

    The weights are the parts' concatenated along the input channels (dim 1); the bias is the first part's.
    """
    joined = dict(state)
    for path in split:
        weights, k = [], 0
        while f"{path}_part{k}.weight" in state:
            weights.append(state[f"{path}_part{k}.weight"])
            k += 1
        joined[f"{path}.weight"] = torch.cat(weights, dim=1)
        if f"{path}_part0.bias" in state:
            joined[f"{path}.bias"] = state[f"{path}_part0.bias"]
    return joined
