"""onnxruntime's static INT8 scheme as PyTorch fake quantisation: qconfig, which convolutions, prepare for QAT.

The deployment quantiser is :func:`kit.export.int8.quantize_int8` (onnxruntime ``quantize_static``, QDQ):
per-output-channel symmetric int8 weights, per-tensor asymmetric uint8 activations with the range's min/max.
Here the same numbers are simulated during training with PyTorch's own toolkit (``torch.ao.quantization``,
FX graph mode: ``prepare_qat_fx`` with a :class:`~torch.ao.quantization.QConfigMapping`), never hand-written
fake-quant ops:

* weights: :class:`~torch.ao.quantization.FakeQuantize` over a per-channel min/max observer of the current
  weights, ``qint8`` ``per_channel_symmetric`` (axis 0, the output channels) on [-127, 127], scale max|w|/127, as
  onnxruntime's ``quantize_static`` (PyTorch's default [-128, 127] puts each channel's largest weight on a rounding
  tie; :func:`kit.quant.qdq.export_qdq` writes the range ONNX takes);
* activations: a moving-average min/max observer, ``quint8`` ``per_tensor_affine`` (0 always in range, as
  onnxruntime's MinMax calibration), or with ``ranges="learned"`` a scale and zero point trained by gradient
  (:mod:`kit.quant.ranges`);
* what is quantised: every ``nn.Conv2d`` (its input, weight and output) except those kept float; everything
  between convolutions (SiLU, the attention's sigmoid/multiply, adds, the bicubic residual, PixelShuffle) runs in
  float on dequantised values. So ``--int8-keep-float image`` holds by construction, ``first``/``last`` keep
  the convolutions reading the input / writing the output in float (:func:`end_convolutions`), and a
  convolution's module path keeps that one in float;
* before preparing, a convolution reading a channel concatenation is split into one convolution per part
  (:mod:`kit.quant.split`), so each part has its own input scale.

Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
CVPR 2018 (fake quantisation with straight-through gradients).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import fx, nn

__all__ = ["QAT_FLOAT_PARTS", "end_convolutions", "ort_qconfig", "prepare_qat", "set_fake_quant", "set_observing"]

QAT_FLOAT_PARTS = ("image", "first", "last")


def ort_qconfig(ranges: str = "minmax"):
    """The :class:`~torch.ao.quantization.QConfig` of onnxruntime's scheme (int8 per-channel weights, uint8 acts).

    Args:
        ranges: ``minmax``: activation ranges follow a moving-average min/max; ``learned``: trained by gradient
            (:mod:`kit.quant.ranges`, LSQ).
    """
    from torch.ao.quantization import FakeQuantize, MovingAveragePerChannelMinMaxObserver, QConfig

    from kit.quant.ranges import learned_activation, uint8_activation

    activation = FakeQuantize.with_args(**uint8_activation())
    weight = FakeQuantize.with_args(  # averaging constant 1: the range of the weights as they are now
        observer=MovingAveragePerChannelMinMaxObserver,
        averaging_constant=1.0,
        quant_min=-127,  # [-127, 127] and max|w|/127, as onnxruntime's quantize_static: no weight on a rounding tie
        quant_max=127,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
        reduce_range=False,
    )
    if ranges == "learned":
        activation = learned_activation()
    return QConfig(activation=activation, weight=weight)


def conv_nodes(graph: fx.Graph, root: nn.Module) -> set[fx.Node]:
    """The nodes of ``graph`` that call a convolution (``nn.Conv2d``, QAT's included) of ``root``."""
    return {
        n for n in graph.nodes if n.op == "call_module" and isinstance(root.get_submodule(str(n.target)), nn.Conv2d)
    }


def end_convolutions(net: nn.Module) -> dict[str, list[str]]:
    """``{"first": [...], "last": [...]}``: module paths of the convolutions reading the input / writing the output.

    Found on the FX graph as :func:`kit.export.int8.float_nodes` finds them on the ONNX graph: forward from the
    input and backward from the output, stopping at the first convolution on each path.
    """
    graph = fx.symbolic_trace(net).graph
    convs = conv_nodes(graph, net)
    first, frontier, seen = [], [n for n in graph.nodes if n.op == "placeholder"], set()
    while frontier:
        for user in frontier.pop().users:
            if user not in seen:
                seen.add(user)
                (first.append(str(user.target)) if user in convs else frontier.append(user))
    last, frontier, seen = [], [n for n in graph.nodes if n.op == "output"], set()
    while frontier:
        for arg in frontier.pop().all_input_nodes:
            if arg not in seen:
                seen.add(arg)
                (last.append(str(arg.target)) if arg in convs else frontier.append(arg))
    return {"first": sorted(set(first)), "last": sorted(set(last))}


def _check_options(net: nn.Module, keep_float: Sequence[str], ranges: str) -> None:
    from kit.quant.ranges import RANGES

    if ranges not in RANGES:
        raise ValueError(f"QAT ranges {ranges!r} unknown; use one of {', '.join(RANGES)}")
    convs = {name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    unknown = [p for p in keep_float if p not in QAT_FLOAT_PARTS and p not in convs]
    if unknown:
        raise ValueError(
            f"QAT keep_float part(s) {unknown} unknown; use some of {', '.join(QAT_FLOAT_PARTS)} or convolution "
            f"paths of the deployed network, e.g. {', '.join(sorted(convs)[:3])}"
        )


def prepare_qat(
    net: nn.Module,
    keep_float: Sequence[str],
    in_channels: int = 3,
    split_concat: bool = True,
    ranges: str = "minmax",
) -> fx.GraphModule:
    """The deployed (fused) ``net`` traced and prepared for QAT with :func:`ort_qconfig` on its convolutions.

    Args:
        net: A deployed network (plain ``nn.Conv2d`` layers; ``deploy_network`` output); deep-copied first.
        keep_float: Parts kept float, of ``image``, ``first``, ``last``, or module paths of convolutions of the
            deployed network (SPAN's ``conv_cat`` reads a concatenation of tensors of very different ranges).
        in_channels: Input channels of the example input used for tracing.
        split_concat: Split each quantised convolution reading a channel concatenation into one convolution per
            part, summed (:mod:`kit.quant.split`): each part gets its own input quantiser.
        ranges: Activation ranges, ``minmax`` or ``learned`` (:func:`ort_qconfig`).

    Returns:
        The ``torch.fx.GraphModule`` in train mode, observers and fake quantisation on.

    Raises:
        ValueError: an unknown part in ``keep_float`` or ``ranges``, or ``net`` has no convolution to quantise.
    """
    from torch.ao.quantization import QConfigMapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    from kit.quant.split import ConvSum, split_concat_convolutions

    _check_options(net, keep_float, ranges)
    net = copy.deepcopy(net).train()  # prepare_qat_fx swaps modules of the network it is given
    ends = end_convolutions(net)
    mapping = QConfigMapping().set_object_type(nn.Conv2d, ort_qconfig(ranges))
    kept = [name for part in keep_float if part != "image" for name in ends.get(part, [part])]
    for name in kept:
        mapping.set_module_name(name, None)
    if len([m for m in net.modules() if isinstance(m, nn.Conv2d)]) <= len(set(kept)):
        raise ValueError(f"QAT: {type(net).__name__} has no convolution left to quantise (kept float: {kept})")
    example = torch.rand(1, in_channels, 16, 16)
    if split_concat:
        net = split_concat_convolutions(net, example, set(kept)) or net
    custom = PrepareCustomConfig().set_non_traceable_module_classes([ConvSum])  # a leaf: hooks on its path fire
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice (FX mode is what it names)
        prepared = prepare_qat_fx(net, mapping, example_inputs=(example,), prepare_custom_config=custom)
    with torch.no_grad():  # weight ranges come from the weights: set now, so every state dict has their shapes
        for module in prepared.modules():
            if hasattr(module, "weight_fake_quant"):
                module.weight_fake_quant(module.weight)
    return prepared


def set_observing(net: nn.Module, on: bool) -> None:
    """Switch the observers of every fake quantiser in ``net`` on (ranges follow the data) or off (frozen)."""
    from torch.ao.quantization import disable_observer, enable_observer

    net.apply(enable_observer if on else disable_observer)


def set_fake_quant(net: nn.Module, on: bool) -> None:
    """Switch the rounding of every fake quantiser in ``net`` on (simulated INT8) or off (the fp32 network)."""
    from torch.ao.quantization import disable_fake_quant, enable_fake_quant

    net.apply(enable_fake_quant if on else disable_fake_quant)
