"""INT8: the fp32 ONNX model quantised statically by onnxruntime (QDQ, per-channel weights), calibrated on LR crops.

* :func:`calibration_crops`: ``count`` random ``size x size`` crops (seeded) of the options' *training* LQ
  images: the ``dataroot_lq`` folder of a paired dataset, or the GT images degraded as the training set does
  (``DegradedImageDataset``). Never the validation images, which score the result.
* :func:`float_nodes`: which nodes stay in float. ``"image"``: the nodes reached from the input without passing a
  convolution (RLFN's bicubic residual — the Resize, or its exact Pad/Conv/DepthToSpace rewrite
  ``kit_bicubic/*`` — and its final Add, RepSR's repeated input, NAFNet's pad, global residual and crop):
  quantising them would round the output image itself to 8 bits of the output's range.
  ``"first"``/``"last"``: the convolutions that read the input / write the output (classic sensitive layers).
* :func:`quantize_int8`: ``onnxruntime.quantization.quantize_static`` with ``QuantFormat.QDQ``, per-channel int8
  weights and uint8 activations, after onnxruntime's pre-processing (shape inference and graph optimisation).

The export (:mod:`kit.export.submission`) then runs the INT8 file in onnxruntime at the two parity sizes against
the fp32 file, scores it on the validation set and times both side by side.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from kit.export.onnx_rewrite import PREFIX

__all__ = [
    "CALIBRATION_METHODS",
    "FLOAT_PARTS",
    "Int8Settings",
    "calibration_crops",
    "float_nodes",
    "quantize_int8",
]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
FLOAT_PARTS = ("image", "first", "last")


@dataclass(frozen=True)
class Int8Settings:
    """How the INT8 model is made.

    Attributes:
        crops: Number of calibration crops.
        crop_size: Side of each (LR) crop in pixels.
        method: Calibration method: ``minmax``, ``entropy`` or ``percentile`` (99.999).
        keep_float: Parts left in float (see :func:`float_nodes`).
        per_channel: Per-output-channel weight scales.
        seed: Seed of the crop positions.
        qat: The quantisation-aware fine-tuned network (a :class:`kit.quant.QATStudent`) when the exported
            network is one: its own QDQ export (:mod:`kit.quant.qdq`) replaces calibration and ``quantize_static``.
    """

    crops: int = 64
    crop_size: int = 64
    method: str = "minmax"
    keep_float: tuple[str, ...] = ("image",)
    per_channel: bool = True
    seed: int = 0
    qat: Any = None

    def for_network(self, deployed: Any) -> Int8Settings:
        """These settings for ``deployed``: with its QAT network when it was fused from one (``qat_source``)."""
        return replace(self, qat=getattr(deployed, "qat_source", None))

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"INT8 calibration method '{self.method}' is not one of {', '.join(CALIBRATION_METHODS)}")
        unknown = [p for p in self.keep_float if p not in FLOAT_PARTS]
        if unknown:
            raise ValueError(f"INT8 keep-float part(s) {unknown} unknown; use some of {', '.join(FLOAT_PARTS)}")
        if self.crops < 1 or self.crop_size < 8:
            raise ValueError(f"INT8 calibration needs >= 1 crop of >= 8 px, got {self.crops} of {self.crop_size}")


def _train_lq_images(opt: Mapping[str, Any], scale: int) -> tuple[list[np.ndarray], str]:
    """The training LQ images (RGB float32 HWC in [0, 1]) and where they came from."""
    from kit.evaluation.sources import dataset_options, training_degradation
    from kit.images import list_images, mod_crop, read_image
    from kit.options import resolve_path

    train = dataset_options(opt, "train")
    if train is None:
        raise ValueError("INT8 calibration uses the training LQ images, but the options have no datasets.train")
    if (train.get("io_backend") or {}).get("type", "disk") != "disk":
        raise ValueError("INT8 calibration reads the training images from disk; an lmdb training set is not supported")
    if train.get("type") == "DegradedImageDataset" or not train.get("dataroot_lq"):
        from kit.data.degradations import apply_degradations, build_degradations

        files = list_images(resolve_path(train["dataroot_gt"]))
        specs, seed, label = training_degradation(opt, scale)
        degs = build_degradations(specs)
        images = []
        for i, path in enumerate(files):
            gt = np.ascontiguousarray(mod_crop(read_image(path), scale)[0])
            images.append(apply_degradations(gt, degs, np.random.default_rng([seed, i])))
        return images, f"{len(files)} training GT images of '{train['dataroot_gt']}' degraded by {label}"
    folder = resolve_path(train["dataroot_lq"])
    files = list_images(folder)
    return [read_image(p) for p in files], f"{len(files)} training LQ images of '{train['dataroot_lq']}'"


def calibration_crops(
    opt: Mapping[str, Any], scale: int, count: int, size: int, seed: int = 0
) -> tuple[list[np.ndarray], str]:
    """``count`` crops ``(1, 3, size, size)`` float32 of the training LQ images, images taken in turn.

    Returns:
        The crops and a sentence saying what they are (for the manifest).

    Raises:
        ValueError: no training set, an lmdb backend, or no images.
    """
    images, source = _train_lq_images(opt, scale)
    if not images:
        raise ValueError(f"INT8 calibration found no training images ({source})")
    rng = np.random.default_rng(seed)
    crops = []
    for k in range(count):
        img = images[k % len(images)]
        if img.shape[0] < size or img.shape[1] < size:  # mirror small images up to the crop size
            ph, pw = max(0, size - img.shape[0]), max(0, size - img.shape[1])
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
        top = int(rng.integers(0, img.shape[0] - size + 1))
        left = int(rng.integers(0, img.shape[1] - size + 1))
        crop = img[top : top + size, left : left + size].transpose(2, 0, 1)
        crops.append(np.ascontiguousarray(crop[None], dtype=np.float32))
    return crops, f"{count} random {size}x{size} crops (seed {seed}) of {source}"


def float_nodes(model, parts: Sequence[str]) -> list[str]:
    """Names of the nodes of an ``onnx.ModelProto`` that stay in float for ``parts`` (see the module docstring)."""
    nodes = list(model.graph.node)
    consumers: dict[str, list] = {}
    producer = {}
    for n in nodes:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
        for t in n.output:
            producer[t] = n
    image, first = [], []
    frontier, seen = [i.name for i in model.graph.input], set()
    while frontier:  # forward from the input, stopping at convolutions
        tensor = frontier.pop()
        for n in consumers.get(tensor, []):
            if n.name in seen:
                continue
            seen.add(n.name)
            if n.op_type == "Conv" and not n.name.startswith(PREFIX):
                first.append(n.name)
                continue
            image.append(n.name)
            frontier.extend(n.output)
    last, frontier, seen = [], [o.name for o in model.graph.output], set()
    while frontier:  # backward from the output, stopping at convolutions
        n = producer.get(frontier.pop())
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type == "Conv" and not n.name.startswith(PREFIX):
            last.append(n.name)
            continue
        frontier.extend(n.input)
    chosen = {"image": image, "first": first, "last": last}
    names = []
    for part in parts:
        names += [n for n in chosen[part] if n not in names]
    return names


@contextlib.contextmanager
def _working_dir(path: str | os.PathLike) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class _Crops:
    """onnxruntime's calibration data reader over a list of crops."""

    def __init__(self, input_name: str, crops: Sequence[np.ndarray]) -> None:
        from tqdm import tqdm

        self.input_name, self.crops, self.i = input_name, list(crops), 0
        # the calibration's progress with its ETA (on a terminal; tqdm stays silent in a log)
        self.bar = tqdm(total=len(self.crops), desc="INT8 calibration", unit="crop", disable=None, leave=False)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.crops):
            self.bar.close()
            return None
        self.i += 1
        self.bar.update(1)
        return {self.input_name: self.crops[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0
        self.bar.reset()


def quantize_int8(
    fp32_path: str | os.PathLike, out_path: str | os.PathLike, crops: Sequence[np.ndarray], settings: Int8Settings
) -> dict[str, Any]:
    """Quantise ``fp32_path`` statically into ``out_path`` (QDQ, int8 weights, uint8 activations).

    Returns:
        What was done, for the manifest: format, types, calibration method, nodes left in float.

    Raises:
        RuntimeError: onnxruntime's quantisation failed (its message is included).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[settings.method]
    fp32_path, out_path = Path(fp32_path).resolve(), Path(out_path).resolve()
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp, _working_dir(tmp):  # onnxruntime writes temp files to cwd
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            model = onnx.load(str(pre))
            keep = float_nodes(model, settings.keep_float)
            input_name = model.graph.input[0].name
            quantize_static(
                str(pre),
                str(out_path),
                _Crops(input_name, crops),
                quant_format=QuantFormat.QDQ,
                per_channel=settings.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                nodes_to_exclude=keep,
                extra_options={"CalibTensorRangeSymmetric": False, "CalibMovingAverage": False},
            )
        except Exception as err:
            raise RuntimeError(f"onnxruntime quantize_static failed: {type(err).__name__}: {str(err)[:400]}") from err
    return {
        "file": Path(out_path).name,
        "tool": "onnxruntime.quantization.quantize_static after quant_pre_process",
        "format": "QDQ",
        "weights": "int8, per-channel" if settings.per_channel else "int8, per-tensor",
        "activations": "uint8, per-tensor",
        "calibration_method": settings.method,
        "kept_float": list(settings.keep_float),
        "float_nodes": keep,
    }


def _ort_session(path: str | os.PathLike, threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def side_by_side_latency(
    paths: Sequence[str | os.PathLike], x: np.ndarray, runs: int = 5, threads: int | None = None
) -> list[float]:
    """Median onnxruntime CPU latency (ms) of each model on ``x``, timed in alternation so load affects all alike.

    Each model gets two warm-up runs; then the models run one after the other ``runs`` times.
    """
    import statistics
    import time

    sessions = [_ort_session(p, threads) for p in paths]
    names = [(s.get_inputs()[0].name, s.get_outputs()[0].name) for s in sessions]
    for s, (i, o) in zip(sessions, names):
        for _ in range(2):
            s.run([o], {i: x})
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(max(1, runs)):
        for k, (s, (i, o)) in enumerate(zip(sessions, names)):
            start = time.perf_counter()
            s.run([o], {i: x})
            times[k].append(time.perf_counter() - start)
    return [1e3 * statistics.median(t) for t in times]
