"""What a submission says about itself: ``manifest.json`` (every number, file hashes, provenance) and ``README.txt``.

:func:`build_manifest` gathers what the export steps measured into one dict; :func:`write_records` writes the
README (made from that dict, so the two always agree) and the manifest with the sha256 of the other files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kit.checkpoint import sha256_file
from kit.export.budget import MACS_METHOD, Budget
from kit.export.onnx_export import INPUT_NAME, OUTPUT_NAME, OnnxParams, ParityCheck
from kit.options import REPO_ROOT

if TYPE_CHECKING:
    from kit.evaluation import EvalResult

__all__ = ["FILES", "OnnxRecord", "ValidationRecord", "build_manifest", "git_state", "sha256_file", "write_records"]

FILES = ("model.onnx", "weights.safetensors", "README.txt")  # manifest.json lists their sha256


@dataclass(frozen=True)
class OnnxRecord:
    """What the ONNX step established: the export settings, the weights read back and the parity checks."""

    opset: int
    fp16: bool
    counted: OnnxParams
    tolerance: float
    photo: str
    checks: list[ParityCheck]


@dataclass(frozen=True)
class ValidationRecord:
    """onnxruntime CPU latency and PSNR/SSIM of the ONNX model (``means``: ``result``'s means of the model)."""

    latency_ms: float
    latency_runs: int
    latency_input: list[int]
    y_channel: bool
    crop_border: int
    result: EvalResult
    means: dict[str, float]


def git_state(root: Path = REPO_ROOT) -> dict[str, Any]:
    """``{"commit": <HEAD or "unknown">, "dirty": bool | None}`` (dirty: tracked files modified)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit or "unknown", "dirty": bool(status.strip())}


def _task(scale: int) -> str:
    return f"x{scale} super-resolution" if scale > 1 else "same-size restoration (scale 1)"


def _params_note(torch_params: int, counted: OnnxParams) -> str:
    """Why the ONNX weight count differs from PyTorch's; empty when they agree and there are no constants."""
    diff = torch_params - counted.params
    note = ""
    if diff:
        note = (
            f"{abs(diff):,d} {'fewer' if diff > 0 else 'more'} than PyTorch: the exporter folded constants "
            "(buffers, or parameters combined at export) into the initializers"
        )
    if counted.constants:
        note = (
            note + "; " if note else ""
        ) + f"besides {counted.constants:,d} non-weight constant elements: shapes, indices"
    return note


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _kit_version() -> str:
    import kit

    return getattr(kit, "__version__", "unknown")


def build_manifest(
    *,
    name: str,
    architecture: str,
    scale: int,
    budget: Budget,
    reference_input: list[int],
    max_params: int | None,
    max_gmacs: float | None,
    onnx: OnnxRecord,
    validation: ValidationRecord,
    checkpoint: Mapping[str, str],
    options_file: str | None,
    opt: Mapping[str, Any],
) -> dict[str, Any]:
    """The manifest without ``files`` (added by :func:`write_records` once the files are final).

    Args:
        name: Submission name.
        architecture: Class name of the deployed network.
        scale: Output size / input size, as measured on the network.
        budget: Parameters and MACs of the deployed network at ``reference_input``.
        reference_input: ``[1, 3, H, W]`` of the size gate.
        max_params: Parameter limit that was checked (``None``: none).
        max_gmacs: GMACs limit that was checked (``None``: none).
        onnx: The ONNX step's record.
        validation: Latency and PSNR/SSIM of the ONNX model.
        checkpoint: ``{"path", "param_key"}`` of the loaded student weights (hashed here).
        options_file: Path of the options file, or ``None``.
        opt: The options, stored as JSON-safe values.
    """
    result, means = validation.result, validation.means
    return {
        "name": name,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "architecture": architecture,
        "scale": scale,
        "task": _task(scale),
        "params": {
            "torch": budget.params,
            "onnx": onnx.counted.params,
            "onnx_constants": onnx.counted.constants,
            "note": _params_note(budget.params, onnx.counted),
        },
        "macs": {
            "gmacs": budget.gmacs,
            "macs": budget.macs,
            "reference_input": reference_input,
            "method": MACS_METHOD,
        },
        "limits": {"max_params": max_params, "max_gmacs": max_gmacs, "inclusive": True},
        "onnx": {
            "file": "model.onnx",
            "opset": int(onnx.opset),
            "exporter": f"torch.onnx.export (TorchScript, dynamo=False), torch {torch.__version__}",
            "weights_dtype": "float16" if onnx.fp16 else "float32",
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
            "io": {"layout": "NCHW", "dtype": "float32", "color": "RGB", "range": [0.0, 1.0]},
            "dynamic_axes": ["batch", "height", "width"],
        },
        "parity": {
            "tolerance": onnx.tolerance,
            "reference": "the deployed PyTorch network in float32",
            "photo": onnx.photo,
            "checks": [asdict(c) for c in onnx.checks],
        },
        "latency": {
            "onnxruntime_cpu_ms_median": validation.latency_ms,
            "runs": validation.latency_runs,
            "input_shape": validation.latency_input,
            "cpu_threads": os.cpu_count(),
            "provider": "CPUExecutionProvider",
        },
        "validation": {
            "psnr": means["psnr"],
            "ssim": means["ssim"],
            "y_channel": validation.y_channel,
            "crop_border": validation.crop_border,
            "metric": result.metric_label,
            "data": result.data,
            "num_images": len(result.images()),
            "per_image": [{"image": r.image, "psnr": r.psnr, "ssim": r.ssim} for r in result.rows],
            "notes": result.notes,
        },
        "checkpoint": {
            "path": checkpoint["path"],
            "param_key": checkpoint["param_key"],
            "sha256": sha256_file(checkpoint["path"]),
        },
        "options_file": options_file,
        "options": _json_safe(opt),
        "kit_version": _kit_version(),
        "git": git_state(),
    }


def _readme(m: Mapping[str, Any]) -> str:
    """``README.txt`` for the organisers: files, I/O convention, how to run it, and the manifest's numbers."""
    s = m["scale"]
    val, par, size = m["validation"], m["parity"], m["macs"]["reference_input"]
    out_hw = f"(H*{s}) x (W*{s})" if s > 1 else "H x W"
    errors = ", ".join(f"{c['max_abs_error']:.2e} at {'x'.join(map(str, c['input_shape']))}" for c in par["checks"])
    onnx_note = f" ({m['params']['note']})" if m["params"]["note"] else ""
    return f"""{m["name"]}: {m["architecture"]} student, {_task(s)}

Files
  model.onnx            the network: ONNX opset {m["onnx"]["opset"]}, {m["onnx"]["weights_dtype"]} weights
  weights.safetensors   the same weights as a PyTorch state dict of {m["architecture"]} (deployed, fused form)
  manifest.json         every number below, sha256 of these files, the options and the code version

Input and output
  input  "{INPUT_NAME}":  float32, N x 3 x H x W, RGB, values in [0, 1]; N, H and W are free
  output "{OUTPUT_NAME}": float32, N x 3 x {out_hw}, RGB, [0, 1] (clip before saving)
  An 8-bit image is img_uint8 / 255 in, round(clip(output, 0, 1) * 255) out.

Run it (Python, onnxruntime)
  import cv2, numpy as np, onnxruntime as ort
  sess = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
  rgb = cv2.imread("in.png", cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255  # H x W x 3, RGB
  x = np.ascontiguousarray(rgb.transpose(2, 0, 1))[None]                              # 1 x 3 x H x W
  y = sess.run(["{OUTPUT_NAME}"], {{"{INPUT_NAME}": x}})[0][0].transpose(1, 2, 0)
  cv2.imwrite("out.png", (np.clip(y, 0, 1) * 255).round().astype(np.uint8)[:, :, ::-1])

Numbers
  parameters: {m["params"]["torch"]:,d} (sum of numel of the deployed PyTorch network); \
ONNX weights: {m["params"]["onnx"]:,d}{onnx_note}
  GMACs: {m["macs"]["gmacs"]:.4f} for a {"x".join(map(str, size))} input ({MACS_METHOD})
  PSNR {val["psnr"]:.3f} dB, SSIM {val["ssim"]:.4f} ({"Y channel" if val["y_channel"] else "RGB"}, \
border {val["crop_border"]} px) on {val["num_images"]} images: {val["data"]}
  onnxruntime CPU latency: {m["latency"]["onnxruntime_cpu_ms_median"]:.1f} ms, median of {m["latency"]["runs"]} \
runs at {"x".join(map(str, m["latency"]["input_shape"]))} (on the machine that exported it)
  ONNX vs PyTorch, max abs error: {errors} (tolerance {par["tolerance"]:g})
"""


def write_records(folder: Path, manifest: dict[str, Any]) -> None:
    """Write ``README.txt``, then ``manifest.json`` with ``files`` (sha256 of :data:`FILES`) added to ``manifest``.

    The README goes first because the manifest lists its hash; the other files must already be in ``folder``.
    """
    (folder / "README.txt").write_text(_readme(manifest), encoding="utf-8")
    manifest["files"] = {f: sha256_file(folder / f) for f in FILES}
    manifest["files_note"] = "sha256 of each file; manifest.json is not listed (it cannot hold its own hash)"
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
