"""The QAT network's own QDQ ONNX model, and how closely onnxruntime runs it as the simulation predicted.

:func:`export_qdq` exports the prepared graph with its observers frozen through ``torch.onnx.export``
(TorchScript exporter, :func:`kit.export.onnx_export.export_onnx`): each ``FakeQuantize`` becomes a
``QuantizeLinear``/``DequantizeLinear`` pair with the trained scale and zero point (per channel on the weights,
axis 0), so nothing is calibrated again; onnxruntime fuses the pairs around each convolution into
``QLinearConv`` at load. The kit's exact bicubic rewrite (:mod:`kit.export.onnx_rewrite`) is applied as for fp32.

:func:`simulation_agreement` compares the simulation (the PyTorch QAT network in eval mode) with onnxruntime on
the same inputs: onnxruntime's integer kernels round the accumulator where the simulation rounds a float, so
the two differ by a few output steps on some pixels; the export records by how much.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kit.export.onnx_rewrite import PREFIX, rewrite_cubic_upsampling

__all__ = ["QDQ_TOOL", "export_qdq", "fold_weight_quantisation", "frozen_copy", "simulation_agreement"]

QDQ_TOOL = "torch.ao.quantization (FX, prepare_qat_fx) fake quantisation exported by torch.onnx (QDQ)"


def frozen_copy(qat: nn.Module) -> nn.Module:
    """An eval-mode copy of a QAT network (its ``quantised`` graph when it has one) with every observer off.

    Learned ranges become standard ``FakeQuantize`` modules with the same scale and zero point
    (:func:`kit.quant.ranges.fixed_quantisers`): ``torch.onnx`` cannot export the learnable kernel.
    """
    from kit.quant.ranges import fixed_quantisers
    from kit.quant.scheme import set_observing

    net = copy.deepcopy(getattr(qat, "quantised", qat)).eval()
    set_observing(net, False)
    fixed_quantisers(net)
    return net


@torch.no_grad()
def _exportable_weight_range(net: nn.Module) -> nn.Module:
    """Give each weight quantiser on ``[-127, 127]`` the range ``torch.onnx`` exports, computing the same function.

    The scheme's weights are symmetric on ``[-127, 127]`` (scale ``max|w| / 127``, as onnxruntime's own
    ``quantize_static``: no weight lies on a rounding tie), which ONNX's ``QuantizeLinear`` has no attribute for;
    the exporter takes only ``[-128, 127]``. Each weight is clipped to ``±127 · scale`` of its channel first, so
    neither range ever clamps it and the wider one rounds every weight to the same integer.
    """
    for module in net.modules():
        quantiser = getattr(module, "weight_fake_quant", None)
        if quantiser is None or int(quantiser.quant_min) != -127:
            continue
        bound = quantiser.quant_max * quantiser.scale.reshape(-1, *([1] * (module.weight.dim() - 1)))
        module.weight.copy_(torch.maximum(torch.minimum(module.weight, bound), -bound))
        quantiser.quant_min = -128
        quantiser.activation_post_process.quant_min = -128
    return net


def export_qdq(qat: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], opset: int = 17) -> dict[str, Any]:
    """Write ``qat``'s QDQ ONNX model to ``path``; returns what was done (for the manifest's ``int8`` entry).

    Raises:
        ExportError: the export failed (the message names the network and the opset).
    """
    import onnx

    from kit.export.onnx_export import ExportError, export_onnx
    from kit.quant.split import split_convolutions

    if not bool(getattr(qat, "observed", True)):
        raise ExportError(f"{type(qat).__name__} has never run a training step: its quantisation ranges are unset")
    export_onnx(_exportable_weight_range(frozen_copy(qat)), path, input_shape, opset)
    model = onnx.load(str(path))
    rewrites = rewrite_cubic_upsampling(model)
    folded = fold_weight_quantisation(model)
    if rewrites or folded:
        onnx.save(model, str(path))
    kinds = [n.op_type for n in model.graph.node]
    floats = _float_convolutions(model)
    return {
        "file": Path(path).name,
        "tool": QDQ_TOOL,
        "format": "QDQ",
        "weights": "int8, per-channel symmetric",
        "activations": "uint8, per-tensor (quantisation-aware trained ranges)",
        "calibration_method": _ranges_text(getattr(qat, "ranges", "minmax")),
        "calibration": "the fine-tuning's training crops",
        "kept_float": list(getattr(qat, "keep_float", ())),
        "split_concat": split_convolutions(getattr(qat, "quantised", qat)),
        "quantize_linear_nodes": kinds.count("QuantizeLinear"),
        "weights_folded_to_int8": folded,
        "float_nodes": floats,
        "float_convolutions": floats,
        "rewrites": rewrites,
    }


def _ranges_text(ranges: str) -> str:
    if ranges == "learned":
        return "QAT learned ranges (LSQ: min/max of the first batch, then trained by gradient with the network)"
    return "QAT observers (moving-average min/max, trained with the network)"


def _constants(model) -> dict[str, Any]:
    """Every initializer, ``Constant`` output and ``Identity`` of one of an ``onnx.ModelProto``, as numpy arrays."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:  # topological order: an Identity of a constant is a constant
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def fold_weight_quantisation(model) -> int:
    """Replace each ``QuantizeLinear`` of a constant (the weights) by its int8 result, in place; returns how many.

    The exporter writes the float weights and quantises them in the graph; onnxruntime would fold them at load,
    but the file would hold float weights. Computed as ``QuantizeLinear`` does: ``x / scale`` rounded half to
    even, plus the zero point, saturated to its type.
    """
    import numpy as np
    from onnx import numpy_helper

    values = _constants(model)
    done = []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or not all(name in values for name in node.input[:3]):
            continue
        x, scale, zero = (values[name] for name in node.input[:3])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:  # per channel: broadcast along ``axis``
            shape = [1] * x.ndim
            shape[axis] = scale.size
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        info = np.iinfo(zero.dtype)
        q = np.clip(np.rint(x.astype(np.float32) / scale) + zero.astype(np.int32), info.min, info.max)
        model.graph.initializer.append(numpy_helper.from_array(q.astype(zero.dtype), node.output[0]))
        done.append(node)
    for node in done:
        model.graph.node.remove(node)
    used = {name for n in model.graph.node for name in n.input}
    for t in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(t)
    return len(done)


def _float_convolutions(model) -> list[str]:
    """Names of the Conv nodes whose weight is a plain float initializer (not dequantised int8)."""
    initializers = {t.name for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    floats = []
    for node in model.graph.node:
        if node.op_type != "Conv" or node.name.startswith(PREFIX):
            continue
        weight = producer.get(node.input[1])
        if node.input[1] in initializers or (weight is not None and weight.op_type != "DequantizeLinear"):
            floats.append(node.name)
    return floats


def simulation_agreement(
    qat: nn.Module, runner: Callable[[Tensor], Tensor], inputs: Sequence[Tensor]
) -> list[dict[str, Any]]:
    """Max and mean abs difference of onnxruntime's output (``runner``) from the simulation's, per input."""
    sim = frozen_copy(qat)
    checks = []
    for x in inputs:
        with torch.inference_mode():
            expected = sim(x.float())
        diff = (runner(x) - expected).abs()
        checks.append(
            {"input_shape": list(x.shape), "max_abs_error": float(diff.max()), "mean_abs_error": float(diff.mean())}
        )
    return checks
