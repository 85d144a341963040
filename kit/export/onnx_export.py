"""ONNX export of the deployed student and the checks that it computes the same thing.

* :func:`export_onnx`: ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``), dynamic batch,
  height and width. (The dynamo exporter can silently fix the input size; the parity check at a second size
  would catch that.) ``fp16=True`` stores half-precision weights behind float32 inputs and outputs.
* :func:`check_onnx`: ``onnx.checker.check_model(full_check=True)`` plus dynamic input axes.
* :func:`check_parity`: onnxruntime (CPU) against PyTorch on crops of a real photo.
* :func:`onnx_param_count`: parameters read back from the ONNX initializers.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "FP16_TOLERANCE",
    "FP32_TOLERANCE",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ExportError",
    "OnnxParams",
    "ParityCheck",
    "check_onnx",
    "check_parity",
    "export_onnx",
    "latency_ms",
    "onnx_param_count",
    "parity_inputs",
    "reference_photo",
    "second_size",
]

INPUT_NAME, OUTPUT_NAME = "input", "output"
FP32_TOLERANCE = 1e-4  # max |ONNX - PyTorch| on [0, 1] images: float32 reordering only
FP16_TOLERANCE = 1e-2  # half-precision weights and activations vs the float32 PyTorch network (~2.5/255)
_DYNAMIC = {0: "batch", 2: "height", 3: "width"}


class ExportError(RuntimeError):
    """The ONNX export or one of its checks failed."""


class _Float32IO(nn.Module):
    """Half-precision network behind float32 input and output (the submission's I/O stays float32)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.half()).float()


def export_onnx(
    net: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], opset: int = 17, fp16: bool = False
) -> Path:
    """Export a deployed network to ONNX with dynamic batch, height and width.

    Args:
        net: The deployed network (eval mode, float32, CPU); not modified.
        path: The ``.onnx`` file to write.
        input_shape: ``(N, C, H, W)`` of the example input used for tracing.
        opset: ONNX opset version.
        fp16: Store float16 weights and compute in float16 (input and output stay float32).

    Returns:
        ``path``.

    Raises:
        ExportError: ``torch.onnx.export`` failed (the message names the network and the opset).
    """
    path = Path(path)
    model = _Float32IO(copy.deepcopy(net).half()).eval() if fp16 else net.eval()
    example = torch.rand(*input_shape)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=int(opset),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: _DYNAMIC, OUTPUT_NAME: _DYNAMIC},
                do_constant_folding=True,
            )
    except Exception as err:
        raise ExportError(
            f"torch.onnx.export failed for {type(net).__name__} at opset {opset}{' (fp16)' if fp16 else ''}: "
            f"{type(err).__name__}: {str(err)[:400]}; try another --opset"
        ) from err
    return path


def check_onnx(path: str | os.PathLike):
    """``onnx.checker.check_model(full_check=True)`` and dynamic batch/height/width on the input.

    Returns:
        The loaded ``onnx.ModelProto``.

    Raises:
        ExportError: the checker rejects the model, or an input axis is fixed.
    """
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:
        raise ExportError(f"onnx.checker rejected '{path}': {type(err).__name__}: {str(err)[:400]}") from err
    dims = model.graph.input[0].type.tensor_type.shape.dim
    fixed = [f"{_DYNAMIC[i]}={d.dim_value}" for i, d in enumerate(dims) if i in _DYNAMIC and not d.dim_param]
    if fixed:
        raise ExportError(f"'{path}': input axes {', '.join(fixed)} are fixed; the export must take any size")
    return model


@dataclass(frozen=True)
class OnnxParams:
    """Parameters read back from an ONNX model.

    Attributes:
        params: Elements of the floating-point initializers (the weights).
        constants: Elements of the other initializers and ``Constant`` nodes (shapes, indices, scalars).
        weight_dtypes: Element types of the floating-point initializers, e.g. ``["float32"]``.
    """

    params: int
    constants: int
    weight_dtypes: list[str]


def onnx_param_count(model) -> OnnxParams:
    """Count the weights of an ``onnx.ModelProto`` (floating initializers) apart from its constants."""
    import onnx
    from onnx import numpy_helper

    floating = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    params = constants = 0
    dtypes = set()
    for init in model.graph.initializer:
        n = int(np.prod(init.dims)) if len(init.dims) else 1
        if init.data_type in floating:
            params += n
            dtypes.add(onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name)
        else:
            constants += n
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    constants += int(numpy_helper.to_array(attr.t).size)
    return OnnxParams(params, constants, sorted(dtypes))


def reference_photo(scale: int) -> tuple[np.ndarray, str]:
    """A real photo for the parity checks: the largest bundled val LR image at ``scale`` (else HR photo).

    Returns:
        ``(H, W, 3)`` RGB float32 in [0, 1], and its path.
    """
    from kit.data import bundled
    from kit.images import list_images, read_image

    root = bundled.build()
    folder = root / "val" / "LR_bicubic" / f"X{scale}" if scale in bundled.SCALES else root / "val" / "HR"
    path = max(list_images(folder), key=lambda p: os.path.getsize(p))
    return read_image(path), str(path)


def second_size(height: int, width: int) -> tuple[int, int]:
    """An odd size unlike the export size (about ¾ × ⅝ of it), for the dynamic-shape check."""
    return max(3, (height * 3) // 4) | 1, max(3, (width * 5) // 8) | 1


def _crop(photo: np.ndarray, top: int, left: int, h: int, w: int) -> Tensor:
    ph, pw = photo.shape[:2]
    if ph < top + h or pw < left + w:  # mirror the photo until it is large enough
        reps_h, reps_w = -(-(top + h) // ph) - 1, -(-(left + w) // pw) - 1
        photo = np.pad(photo, ((0, reps_h * ph), (0, reps_w * pw), (0, 0)), mode="symmetric")
    crop = photo[top : top + h, left : left + w]
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float()


def parity_inputs(photo: np.ndarray, height: int, width: int) -> list[Tensor]:
    """Two inputs cut from ``photo``: ``1×3×height×width`` (centre) and a batch of 2 at :func:`second_size`."""
    ph, pw = photo.shape[:2]
    first = _crop(photo, max(0, (ph - height) // 2), max(0, (pw - width) // 2), height, width).unsqueeze(0)
    h2, w2 = second_size(height, width)
    second = torch.stack([_crop(photo, 0, 0, h2, w2), _crop(photo, max(0, ph - h2), max(0, pw - w2), h2, w2)])
    return [first, second]


@dataclass(frozen=True)
class ParityCheck:
    """onnxruntime vs PyTorch on one input."""

    input_shape: tuple[int, ...]
    max_abs_error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        """Within tolerance (a NaN error is never within)."""
        return bool(self.max_abs_error <= self.tolerance)


@torch.inference_mode()
def check_parity(
    net: nn.Module, onnx_model: Callable[[Tensor], Tensor], inputs: Sequence[Tensor], tolerance: float
) -> list[ParityCheck]:
    """Max |ONNX − PyTorch| per input; the PyTorch side is ``net`` in float32.

    Raises:
        ExportError: the output shapes differ (e.g. an input size fixed at export).
    """
    checks = []
    for x in inputs:
        ref = net(x).float()
        out = torch.as_tensor(onnx_model(x)).float()
        if out.shape != ref.shape:
            raise ExportError(
                f"ONNX output {tuple(out.shape)} differs from PyTorch {tuple(ref.shape)} for input {tuple(x.shape)}; "
                "the export did not keep the input size dynamic"
            )
        checks.append(ParityCheck(tuple(x.shape), float((out - ref).abs().max()), tolerance))
    return checks


def latency_ms(model: Callable[[Tensor], Tensor], x: Tensor, runs: int = 5, warmup: int = 2) -> float:
    """Median wall time of ``runs`` calls on ``x`` after ``warmup`` calls, in milliseconds."""
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)
