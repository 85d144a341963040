"""Exact rewrites of an exported ONNX graph that onnxruntime runs faster.

:func:`rewrite_cubic_upsampling`: a bicubic ``Resize`` by an integer factor ``s`` (what ``F.interpolate(x,
scale_factor=s, mode="bicubic", align_corners=False)`` exports: ``half_pixel``, ``cubic_coeff_a = -0.75``) becomes
``Pad(edge, 2)`` → depthwise 5×5 ``Conv`` to ``C·s²`` channels → ``DepthToSpace(s, CRD)``. The same function: with
an integer factor, output pixel ``q·s + p`` reads source pixels ``q + floor(d_p) - 1 … q + floor(d_p) + 2`` with
``d_p = (p + 0.5)/s - 0.5`` and Keys' cubic weights of the fractional part — weights that depend only on the
phase ``p``, i.e. a convolution per phase; clamping the source index at the border (PyTorch's rule) is edge
padding. Measured on the shipped RLFN student (128² LR input, 1 thread, this CPU): onnxruntime's cubic ``Resize``
took 355 ms of a 950 ms forward — more than all its convolutions; the rewrite takes a few ms. The export's
parity check (onnxruntime vs PyTorch at two sizes) checks the rewrite like the rest of the graph.

The kernel is a ``Constant`` node, not an initializer, so it is not counted as a weight; the nodes are named
``kit_bicubic/...`` and INT8 quantisation keeps them in float (:func:`kit.export.int8.float_nodes`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["PREFIX", "bicubic_phase_kernel", "rewrite_cubic_upsampling"]

PREFIX = "kit_bicubic"


def _keys(x: float, a: float) -> float:
    x = abs(x)
    if x <= 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    if x < 2:
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return 0.0


def bicubic_phase_kernel(scale: int, a: float = -0.75) -> np.ndarray:
    """``(scale, 5)``: row ``p`` weighs source offsets ``-2 … 2`` for output phase ``p`` (half-pixel centres)."""
    kernel = np.zeros((scale, 5), dtype=np.float64)
    for p in range(scale):
        d = (p + 0.5) / scale - 0.5
        f = math.floor(d)
        t = d - f
        for tap, dist in zip(range(f - 1, f + 3), (1 + t, t, 1 - t, 2 - t)):
            kernel[p, tap + 2] += _keys(dist, a)
    return kernel


def _attr(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _constant(model, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _channels(model, tensor: str) -> int | None:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    for info in [*inferred.graph.input, *inferred.graph.value_info]:
        if info.name == tensor:
            dims = info.type.tensor_type.shape.dim
            if len(dims) == 4 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
    return None


def rewrite_cubic_upsampling(model) -> list[str]:
    """Rewrite, in place, every integer-factor bicubic ``Resize`` of an ``onnx.ModelProto``; returns what it did.

    A ``Resize`` is left alone unless: mode ``cubic``, ``half_pixel``/``pytorch_half_pixel`` coordinates,
    ``exclude_outside`` 0, constant scales ``[1, 1, s, s]`` with an integer ``s >= 2``, and a known channel count.
    """
    from onnx import helper, numpy_helper

    done = []
    nodes = list(model.graph.node)
    for node in nodes:
        if node.op_type != "Resize" or _attr(node, "mode", "nearest") != "cubic":
            continue
        if _attr(node, "coordinate_transformation_mode", "half_pixel") not in ("half_pixel", "pytorch_half_pixel"):
            continue
        if _attr(node, "exclude_outside", 0) != 0 or len(node.input) < 3 or (len(node.input) > 3 and node.input[3]):
            continue
        scales = _constant(model, node.input[2])
        if scales is None or scales.shape != (4,) or list(scales[:2]) != [1, 1] or scales[2] != scales[3]:
            continue
        s = int(scales[2])
        channels = _channels(model, node.input[0])
        if s != scales[2] or s < 2 or channels is None:
            continue
        k = bicubic_phase_kernel(s, float(_attr(node, "cubic_coeff_a", -0.75)))  # (s, 5)
        phases = np.einsum("ya,xb->yxab", k, k).reshape(s * s, 1, 5, 5)  # (py·s + px) x 5 x 5
        weight = np.tile(phases, (channels, 1, 1, 1)).astype(np.float32)  # CRD order: c·s² + py·s + px
        tag = f"{PREFIX}/{len(done)}"
        pads, kernel = f"{tag}/pads", f"{tag}/weight"
        padded, conv = f"{tag}/padded", f"{tag}/phases"
        new = [
            helper.make_node(
                "Constant", [], [pads], f"{tag}/Pads", value=numpy_helper.from_array(np.array([0, 0, 2, 2, 0, 0, 2, 2]))
            ),
            helper.make_node("Constant", [], [kernel], f"{tag}/Weight", value=numpy_helper.from_array(weight)),
            helper.make_node("Pad", [node.input[0], pads], [padded], f"{tag}/Pad", mode="edge"),
            helper.make_node("Conv", [padded, kernel], [conv], f"{tag}/Conv", group=channels, kernel_shape=[5, 5]),
            helper.make_node("DepthToSpace", [conv], [node.output[0]], f"{tag}/DepthToSpace", blocksize=s, mode="CRD"),
        ]
        at = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        for i, n in enumerate(new):
            model.graph.node.insert(at + i, n)
        done.append(f"{node.name}: bicubic x{s} Resize -> edge Pad + depthwise 5x5 Conv + DepthToSpace (exact)")
    if done:
        _drop_unused_constants(model)
    return done


def _drop_unused_constants(model) -> None:
    used = {t for n in model.graph.node for t in n.input} | {o.name for o in model.graph.output}
    for n in [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        model.graph.node.remove(n)
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)
