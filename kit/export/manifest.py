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
from kit.export.portable import portable_path, scrub_paths
from kit.options import REPO_ROOT

if TYPE_CHECKING:
    from kit.evaluation import EvalResult
    from kit.export.counts import ChallengeCounts

__all__ = [
    "FILES",
    "ManifestInputs",
    "OnnxRecord",
    "ValidationRecord",
    "build_manifest",
    "git_state",
    "sha256_file",
    "write_records",
]

FILES = ("model.onnx", "weights.safetensors", "README.txt")  # always there; manifest.json lists every file's sha256


@dataclass(frozen=True)
class OnnxRecord:
    """What the ONNX step established: the export settings, the weights read back and the parity checks."""

    opset: int
    fp16: bool
    counted: OnnxParams
    tolerance: float
    photo: str
    checks: list[ParityCheck]
    rewrites: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidationRecord:
    """onnxruntime CPU latency and PSNR/SSIM of the ONNX model (``means``: ``result``'s means of the model).

    ``rgb_border4``: PSNR/SSIM on RGB with a 4-px border (NTIRE ESR's metric) beside the options' metric.
    """

    latency_ms: float
    latency_runs: int
    latency_input: list[int]
    y_channel: bool
    crop_border: int
    result: EvalResult
    means: dict[str, float]
    rgb_border4: dict[str, Any] | None = None


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


@dataclass(frozen=True)
class ManifestInputs:
    """What the export steps established, gathered into the manifest by :func:`build_manifest`.

    Attributes:
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
        counts: NTIRE ESR's counts (params, fvcore FLOPs, activations, Conv2d calls) at 1x3x256x256.
        runtime: :func:`kit.export.runtime.runtime_record`.
        ntire: The NTIRE package's record (:meth:`kit.export.ntire.NtirePackage.record`), if written.
        int8: The INT8 model's record (:func:`kit.export.int8_verify.int8_model`), if written.
    """

    name: str
    architecture: str
    scale: int
    budget: Budget
    reference_input: list[int]
    max_params: int | None
    max_gmacs: float | None
    onnx: OnnxRecord
    validation: ValidationRecord
    checkpoint: Mapping[str, str]
    options_file: str | None
    opt: Mapping[str, Any]
    counts: ChallengeCounts | None = None
    runtime: Mapping[str, Any] | None = None
    ntire: Mapping[str, Any] | None = None
    int8: Mapping[str, Any] | None = None


def build_manifest(inputs: ManifestInputs) -> dict[str, Any]:
    """The manifest without ``files`` (added by :func:`write_records` once the files are final).

    Every path in it is relative to the repo root, or a plain file name when outside it (:func:`scrub_paths`):
    a submission carries no machine paths.
    """
    i = inputs
    budget = i.budget
    manifest = {
        "name": i.name,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "architecture": i.architecture,
        "scale": i.scale,
        "task": _task(i.scale),
        "params": {
            "torch": budget.params,
            "onnx": i.onnx.counted.params,
            "onnx_constants": i.onnx.counted.constants,
            "note": _params_note(budget.params, i.onnx.counted),
        },
        "macs": {
            "gmacs": budget.gmacs,
            "macs": budget.macs,
            "reference_input": i.reference_input,
            "method": MACS_METHOD,
        },
        "limits": {"max_params": i.max_params, "max_gmacs": i.max_gmacs, "inclusive": True},
        **_onnx_sections(i.onnx),
        **_validation_sections(i.validation),
        "counts": i.counts.record() if i.counts is not None else None,
        "runtime": dict(i.runtime) if i.runtime is not None else None,
        "ntire": dict(i.ntire) if i.ntire is not None else None,
        "int8": dict(i.int8) if i.int8 is not None else None,
        "checkpoint": {
            "path": portable_path(i.checkpoint["path"]),
            "param_key": i.checkpoint["param_key"],
            "sha256": sha256_file(i.checkpoint["path"]),
        },
        "options_file": portable_path(i.options_file) if i.options_file else None,
        "options": _json_safe(i.opt),
        "kit_version": _kit_version(),
        "git": git_state(),
    }
    return scrub_paths(_json_safe(manifest))


def _onnx_sections(onnx: OnnxRecord) -> dict[str, Any]:
    """The manifest's ``onnx`` (the file and its conventions) and ``parity`` entries."""
    return {
        "onnx": {
            "file": "model.onnx",
            "opset": int(onnx.opset),
            "exporter": f"torch.onnx.export (TorchScript, dynamo=False), torch {torch.__version__}",
            "weights_dtype": "float16" if onnx.fp16 else "float32",
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
            "io": {"layout": "NCHW", "dtype": "float32", "color": "RGB", "range": [0.0, 1.0]},
            "dynamic_axes": ["batch", "height", "width"],
            "rewrites": list(onnx.rewrites),
        },
        "parity": {
            "tolerance": onnx.tolerance,
            "reference": "the deployed PyTorch network in float32",
            "photo": onnx.photo,
            "checks": [asdict(c) for c in onnx.checks],
        },
    }


def _validation_sections(validation: ValidationRecord) -> dict[str, Any]:
    """The manifest's ``latency`` and ``validation`` entries."""
    result, means = validation.result, validation.means
    return {
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
            "rgb_border4": validation.rgb_border4,
        },
    }


def _readme_files(m: Mapping[str, Any]) -> str:
    lines = [
        f"  model.onnx            the network: ONNX opset {m['onnx']['opset']}, {m['onnx']['weights_dtype']} weights",
        f"  weights.safetensors   the same weights as a PyTorch state dict of {m['architecture']} (deployed form)",
    ]
    if m.get("int8"):
        lines.append(f"  {m['int8']['file']:<21} the same network quantised to INT8 (onnxruntime, QDQ), see INT8 below")
    if m.get("ntire"):
        n = m["ntire"]
        lines += [
            f"  {n['model_file']:<21} NTIRE ESR model file (imports only torch), class {n['class']}",
            f"  {n['weights_file']:<21} its weights: a plain state dict for load_state_dict(..., strict=True)",
            f"  {n['select_model']:<21} the branch to paste into select_model() of NTIRE's test_demo.py",
        ]
    lines.append("  manifest.json         every number below, sha256 of these files, the options and the code version")
    return "\n".join(lines)


def _readme_extra(m: Mapping[str, Any]) -> str:
    """The NTIRE counts, runtime, NTIRE package and INT8 paragraphs (each only when measured)."""
    out = []
    c, val = m.get("counts"), m["validation"]
    if c:
        out.append(
            f"  NTIRE ESR counts at {'x'.join(map(str, c['input_shape']))}: params {c['params']:,d}, FLOPs "
            f"{c['gflops']:.4f} G (fvcore; = MACs), activations {c['activations_m']:.4f} M, Conv2d {c['num_conv']}"
        )
    if val.get("rgb_border4"):
        rgb = val["rgb_border4"]
        out.append(f"  PSNR {rgb['psnr']:.3f} dB, SSIM {rgb['ssim']:.4f} on RGB, border 4 px (NTIRE ESR's metric)")
    if m.get("runtime"):
        r = m["runtime"]
        out.append(f"  runtime: {r['ms']:.1f} ms ({r['method']}: {r['how']})")
    text = "\n".join(out) + ("\n" if out else "")
    if m.get("ntire"):
        n = m["ntire"]
        errors = ", ".join(f"{e['max_abs_error']:.1e}" for e in n["verified"]["checks"])
        text += f"""
NTIRE Efficient SR package (ntire/)
  Copy ntire/models/* into the kit's models/ and ntire/model_zoo/* into model_zoo/, then paste
  ntire/select_model.txt into select_model() of test_demo.py (data_range {n["data_range"]}: inputs in [0, 1]).
  Checked at export in a fresh python with kit, basicsr and spandrel unimportable: the file imports, the class
  builds without arguments, the weights load with strict=True, and its output equals the exported network
  (max abs error {errors} at two input sizes, tolerance {n["verified"]["tolerance"]:g}).
"""
    if m.get("int8"):
        q = m["int8"]
        v, lat, size = q["validation"], q["latency"], q["size_bytes"]
        text += f"""
INT8 ({q["file"]})
  {q["tool"]}: {q["format"]}, weights {q["weights"]}, activations {q["activations"]}, calibration
  {q["calibration_method"]} on {q["calibration"]}; kept in float: {", ".join(q["kept_float"]) or "nothing"}
  ({len(q["float_nodes"])} nodes). Same input and output as model.onnx.
  PSNR {v["psnr"]:.3f} dB, SSIM {v["ssim"]:.4f} ({v["metric"]}): {v["psnr_drop_vs_fp32"]:+.3f} dB below fp32;
  RGB border 4: {v["rgb_border4"]["psnr"]:.3f} dB ({v["rgb_border4"]["psnr_drop_vs_fp32"]:+.3f} dB below fp32)
  onnxruntime CPU: {lat["int8_ms_median"]:.1f} ms vs fp32 {lat["fp32_ms_median"]:.1f} ms ({lat["speedup"]:.2f}x) at \
{"x".join(map(str, lat["input_shape"]))}; size {size["int8"]:,d} vs {size["fp32"]:,d} bytes
"""
    return text


def _readme(m: Mapping[str, Any]) -> str:
    """``README.txt`` for the organisers: files, I/O convention, how to run it, and the manifest's numbers."""
    s = m["scale"]
    val, par, size = m["validation"], m["parity"], m["macs"]["reference_input"]
    out_hw = f"(H*{s}) x (W*{s})" if s > 1 else "H x W"
    errors = ", ".join(f"{c['max_abs_error']:.2e} at {'x'.join(map(str, c['input_shape']))}" for c in par["checks"])
    onnx_note = f" ({m['params']['note']})" if m["params"]["note"] else ""
    return f"""{m["name"]}: {m["architecture"]} student, {_task(s)}

Files
{_readme_files(m)}

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
  GMACs: {m["macs"]["gmacs"]:.4f} for a {"x".join(map(str, size))} input ({m["macs"]["method"]})
  PSNR {val["psnr"]:.3f} dB, SSIM {val["ssim"]:.4f} ({"Y channel" if val["y_channel"] else "RGB"}, \
border {val["crop_border"]} px) on {val["num_images"]} images: {val["data"]}
  onnxruntime CPU latency: {m["latency"]["onnxruntime_cpu_ms_median"]:.1f} ms, median of {m["latency"]["runs"]} \
runs at {"x".join(map(str, m["latency"]["input_shape"]))} (on the machine that exported it)
  ONNX vs PyTorch, max abs error: {errors} (tolerance {par["tolerance"]:g})
{_readme_extra(m)}"""


def write_records(folder: Path, manifest: dict[str, Any]) -> None:
    """Write ``README.txt``, then ``manifest.json`` with ``files`` (sha256 of every other file) added to ``manifest``.

    The README goes first because the manifest lists its hash; the other files must already be in ``folder``.
    """
    (folder / "README.txt").write_text(_readme(manifest), encoding="utf-8")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest["files"] = {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}
    manifest["files_note"] = "sha256 of each file; manifest.json is not listed (it cannot hold its own hash)"
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
