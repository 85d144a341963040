"""``python export.py``: student checkpoint → size gate → verified ONNX → ``submissions/<name>/`` and its zip.

Usage::

    python export.py -opt options/distill.yml                       # experiments/<name>/models/net_g_latest.pth
    python export.py -opt options/distill.yml --checkpoint best.pth --name team_x4 --max-gmacs 200 --fp16
    python export.py -opt options/distill.yml --input-size 320x180 --out-dir /tmp/subs --force

Steps (any failure exits non-zero and leaves the submissions folder as it was):

1. Build ``network_g`` alone from the options and load ``params_ema`` (else ``params``) safely.
2. Size gate on the deployed network (:mod:`kit.export.budget`): ``--max-params`` (default 5,000,000,
   inclusive) and optionally ``--max-gmacs`` at the reference input ``--input-size`` (default 256x256).
3. ONNX (:mod:`kit.export.onnx_export`): export, ``onnx.checker`` (full check), onnxruntime vs PyTorch on a
   real photo at the export size and at a second, odd size (batch 2), parameters read back from the file.
4. Latency (onnxruntime CPU), PSNR/SSIM of the ONNX model on the validation set (:func:`kit.evaluation.evaluate`).
5. ``model.onnx``, ``weights.safetensors``, ``README.txt``, ``manifest.json`` (sha256 of the other files)
   written into a hidden temporary folder under the submissions folder, zipped, then renamed into place.
   An existing submission is never overwritten: ``--force`` moves it aside to ``<name>_replaced_<time>``.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from kit.archs.deploy import deploy_network
from kit.checkpoint import CheckpointError
from kit.export.budget import MACS_METHOD, BudgetError, budget_violations, measure_budget
from kit.export.onnx_export import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    INPUT_NAME,
    OUTPUT_NAME,
    ExportError,
    check_onnx,
    check_parity,
    export_onnx,
    latency_ms,
    onnx_param_count,
    parity_inputs,
    reference_photo,
)
from kit.options import REPO_ROOT, load_options

__all__ = [
    "DEFAULT_MAX_PARAMS",
    "DEFAULT_OUT_DIR",
    "SubmissionError",
    "SubmissionResult",
    "export_submission",
    "git_state",
    "main",
    "sha256_file",
]

DEFAULT_OUT_DIR = REPO_ROOT / "submissions"
DEFAULT_MAX_PARAMS = 5_000_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILES = ("model.onnx", "weights.safetensors", "README.txt")  # manifest.json lists their sha256


class SubmissionError(ValueError):
    """The submission cannot be written as asked (bad name, existing submission without --force)."""


@dataclass
class SubmissionResult:
    """Where the submission went, what it holds, and what was moved aside."""

    folder: Path
    zip: Path
    manifest: dict[str, Any]
    replaced: list[Path]


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def _existing(out_dir: Path, name: str) -> list[Path]:
    return [p for p in (out_dir / name, out_dir / f"{name}.zip") if p.exists()]


def _refuse_existing(out_dir: Path, name: str) -> None:
    found = _existing(out_dir, name)
    if found:
        raise SubmissionError(
            f"a submission named '{name}' already exists ({', '.join(str(p) for p in found)}); it is not overwritten. "
            f"Pass --force to move it aside to {name}_replaced_<time>, or choose another --name"
        )


def _move_aside(out_dir: Path, name: str) -> list[Path]:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base, i = f"{name}_replaced_{stamp}", 1
    while _existing(out_dir, base):
        base, i = f"{name}_replaced_{stamp}_{i}", i + 1
    moved = []
    for old in _existing(out_dir, name):
        new = out_dir / (base + (".zip" if old.suffix == ".zip" and old.is_file() else ""))
        os.replace(old, new)
        moved.append(new)
    return moved


def _validation_settings(opt: Mapping[str, Any], scale: int) -> tuple[bool, int]:
    """Y/RGB and border of the options' PSNR metric (``val.metrics``), else Y with a border of ``scale``."""
    for spec in ((opt.get("val") or {}).get("metrics") or {}).values():
        if isinstance(spec, Mapping) and "psnr" in str(spec.get("type", "")):
            return bool(spec.get("test_y_channel", False)), int(spec.get("crop_border", 0))
    return True, scale


def _task(scale: int) -> str:
    return f"x{scale} super-resolution" if scale > 1 else "same-size restoration (scale 1)"


def _readme(m: dict[str, Any]) -> str:
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


def _write_zip(folder: Path, zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, arcname=f"{folder.name}/{f.name}")


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def export_submission(
    opt: Mapping[str, Any],
    checkpoint: str | os.PathLike | None = None,
    name: str | None = None,
    max_params: int | None = DEFAULT_MAX_PARAMS,
    max_gmacs: float | None = None,
    opset: int = 17,
    fp16: bool = False,
    input_size: tuple[int, int] = (256, 256),
    out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
    force: bool = False,
    options_file: str | None = None,
    latency_runs: int = 5,
    log: Callable[[str], None] | None = None,
) -> SubmissionResult:
    """Check, export and verify the options' student and write ``out_dir/<name>/`` and ``out_dir/<name>.zip``.

    Args:
        opt: Options dict (as loaded from YAML: ``name``, ``scale``, ``network_g``, ``datasets``, ``val``).
        checkpoint: Student weights; ``None``: ``experiments/<name>/models/net_g_latest.pth``.
        name: Submission name; ``None``: the options' ``name``.
        max_params: Inclusive parameter limit (``None``: no limit).
        max_gmacs: Inclusive GMACs limit at ``input_size`` (``None``: no limit).
        opset: ONNX opset.
        fp16: Export float16 weights (looser parity tolerance, stated in the manifest).
        input_size: ``(H, W)`` of the reference LR input: MACs, export, first parity check, latency.
        out_dir: The submissions folder.
        force: Move an existing submission of the same name aside instead of refusing.
        options_file: Path of the options file, recorded in the manifest.
        latency_runs: Timed onnxruntime runs (median reported).
        log: Receives one line per step (the CLI prints them).

    Returns:
        A :class:`SubmissionResult`.

    Raises:
        SubmissionError: bad name, or a submission exists and ``force`` is off (checked before any work).
        CheckpointError: the checkpoint is missing, unreadable or does not fit ``network_g``.
        BudgetError: over a limit; nothing is written.
        ExportError: export, checker or parity failed; nothing is left in ``out_dir``.
    """
    from kit.evaluation import evaluate, validation_pairs
    from kit.runners import OnnxRunner, load_student

    say = log or (lambda line: None)
    name = str(name or opt["name"])
    if not _NAME.match(name):
        raise SubmissionError(f"submission name '{name}' may only hold letters, digits, '.', '_' and '-'; use --name")
    out_dir = Path(out_dir)
    if not force:
        _refuse_existing(out_dir, name)
    h, w = (int(v) for v in input_size)

    net, loaded = load_student(opt, checkpoint)
    say(f"student: {type(net).__name__} from {loaded['path']} [{loaded['param_key']}]")
    deployed = deploy_network(net).float().cpu()
    in_ch = int(opt["network_g"].get("num_in_ch", 3))
    if in_ch != 3:
        raise ExportError(f"network_g takes {in_ch} channels; the export checks and conventions are for RGB (3)")
    budget = measure_budget(deployed, (1, 3, h, w))
    gmacs_text = f"{budget.gmacs:.4f} GMACs at 1x3x{h}x{w}" + (f" (limit {max_gmacs:g})" if max_gmacs else "")
    params_text = f"{budget.params:,d} params" + (f" (limit {max_params:,d})" if max_params else "")
    problems = budget_violations(budget, max_params, max_gmacs)
    if problems:
        raise BudgetError(
            f"over budget, nothing written to '{out_dir}': {params_text}, {gmacs_text}\n  " + "\n  ".join(problems)
        )
    say(f"size gate passed: {params_text}, {gmacs_text}")

    created_out_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out_dir))
    try:
        staged = tmp / name
        staged.mkdir()
        onnx_path = export_onnx(deployed, staged / "model.onnx", (1, 3, h, w), opset, fp16)
        onnx_model = check_onnx(onnx_path)
        counted = onnx_param_count(onnx_model)
        say(f"ONNX written and checked (opset {opset}, {counted.params:,d} weights in initializers)")

        runner = OnnxRunner(onnx_path)
        photo, photo_path = reference_photo(int(opt.get("scale", 1)))
        inputs = parity_inputs(photo, h, w)
        tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
        checks = check_parity(deployed, runner, inputs, tolerance)
        summary = ", ".join(f"{c.max_abs_error:.2e} at {'x'.join(map(str, c.input_shape))}" for c in checks)
        if not all(c.ok for c in checks):
            raise ExportError(f"onnxruntime differs from PyTorch by more than {tolerance:g}: {summary}")
        say(f"parity: onnxruntime vs PyTorch max abs error {summary} (tolerance {tolerance:g})")
        with torch.inference_mode():
            out_shape = tuple(deployed(inputs[0]).shape)
        scale = out_shape[-1] // w
        if out_shape[-2:] != (h * scale, w * scale) or scale != int(opt.get("scale", scale)):
            raise ExportError(f"the student maps 1x3x{h}x{w} to {out_shape}; that is not the options' scale")

        ms = latency_ms(runner, inputs[0], runs=latency_runs)
        y_channel, border = _validation_settings(opt, scale)
        result = evaluate({"onnx": runner}, validation_pairs(opt, scale), scale, y_channel, border)
        means = result.means()["onnx"]
        say(f"validation: PSNR {means['psnr']:.3f} dB, SSIM {means['ssim']:.4f} ({result.metric_label})")

        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous().clone() for k, v in deployed.state_dict().items()}
        save_file(state, str(staged / "weights.safetensors"), metadata={"architecture": type(deployed).__name__})

        diff = budget.params - counted.params
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
        manifest: dict[str, Any] = {
            "name": name,
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "architecture": type(deployed).__name__,
            "scale": scale,
            "task": _task(scale),
            "params": {
                "torch": budget.params,
                "onnx": counted.params,
                "onnx_constants": counted.constants,
                "note": note,
            },
            "macs": {
                "gmacs": budget.gmacs,
                "macs": budget.macs,
                "reference_input": [1, 3, h, w],
                "method": MACS_METHOD,
            },
            "limits": {"max_params": max_params, "max_gmacs": max_gmacs, "inclusive": True},
            "onnx": {
                "file": "model.onnx",
                "opset": int(opset),
                "exporter": f"torch.onnx.export (TorchScript, dynamo=False), torch {torch.__version__}",
                "weights_dtype": "float16" if fp16 else "float32",
                "input_name": INPUT_NAME,
                "output_name": OUTPUT_NAME,
                "io": {"layout": "NCHW", "dtype": "float32", "color": "RGB", "range": [0.0, 1.0]},
                "dynamic_axes": ["batch", "height", "width"],
            },
            "parity": {
                "tolerance": tolerance,
                "reference": "the deployed PyTorch network in float32",
                "photo": photo_path,
                "checks": [asdict(c) for c in checks],
            },
            "latency": {
                "onnxruntime_cpu_ms_median": ms,
                "runs": latency_runs,
                "input_shape": list(inputs[0].shape),
                "cpu_threads": os.cpu_count(),
                "provider": "CPUExecutionProvider",
            },
            "validation": {
                "psnr": means["psnr"],
                "ssim": means["ssim"],
                "y_channel": y_channel,
                "crop_border": border,
                "metric": result.metric_label,
                "data": result.data,
                "num_images": len(result.images()),
                "per_image": [{"image": r.image, "psnr": r.psnr, "ssim": r.ssim} for r in result.rows],
                "notes": result.notes,
            },
            "checkpoint": {
                "path": loaded["path"],
                "param_key": loaded["param_key"],
                "sha256": sha256_file(loaded["path"]),
            },
            "options_file": options_file,
            "options": _json_safe(opt),
            "kit_version": _kit_version(),
            "git": git_state(),
        }
        (staged / "README.txt").write_text(_readme(manifest), encoding="utf-8")
        manifest["files"] = {f: sha256_file(staged / f) for f in _FILES}
        manifest["files_note"] = "sha256 of each file; manifest.json is not listed (it cannot hold its own hash)"
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for f in staged.iterdir():
            f.chmod(0o644)  # safetensors writes 0600; the organisers need to read the files
        _write_zip(staged, tmp / f"{name}.zip")

        replaced = _move_aside(out_dir, name) if force else []
        _refuse_existing(out_dir, name)  # another run may have written it meanwhile
        os.replace(staged, out_dir / name)
        os.replace(tmp / f"{name}.zip", out_dir / f"{name}.zip")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_out_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return SubmissionResult(out_dir / name, out_dir / f"{name}.zip", manifest, replaced)


def _kit_version() -> str:
    import kit

    return getattr(kit, "__version__", "unknown")


def _count(text: str) -> int:
    """``5000000``, ``5_000_000``, ``5e6`` or ``5M`` → 5000000."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    value = float(t[:-1] if mult > 1 else t) * mult
    if value < 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole, non-negative number of parameters")
    return int(value)


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m or min(int(m.group(1)), int(m.group(2))) < 4:
        raise argparse.ArgumentTypeError(f"--input-size '{text}' must look like HxW with sides >= 4, e.g. 256x256")
    return int(m.group(1)), int(m.group(2))


def build_parser() -> argparse.ArgumentParser:
    """``export.py``'s flags."""
    p = argparse.ArgumentParser(
        prog="export.py",
        description="Check the student's size, export it to ONNX, verify it and write submissions/<name>/.",
    )
    p.add_argument("-opt", required=True, help="options YAML (the student is its network_g)")
    p.add_argument("--checkpoint", help="student weights (default experiments/<name>/models/net_g_latest.pth)")
    p.add_argument("--name", help="submission name (default: the options' name)")
    p.add_argument("--max-params", type=_count, default=DEFAULT_MAX_PARAMS, help="inclusive limit (default 5M)")
    p.add_argument("--max-gmacs", type=float, help="inclusive GMACs limit at --input-size (default: none)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--fp16", action="store_true", help=f"float16 weights (parity tolerance {FP16_TOLERANCE:g})")
    p.add_argument("--input-size", type=_size, default=(256, 256), help="reference LR input HxW (default 256x256)")
    p.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR), help="submissions folder (default <repo>/submissions)")
    p.add_argument("--force", action="store_true", help="move an existing submission aside instead of refusing")
    p.add_argument("--latency-runs", type=int, default=5, help="timed onnxruntime runs (median; default 5)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the export; print each step and a summary. Exit 1 when a check fails, 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        opt = load_options(args.opt)
        result = export_submission(
            copy.deepcopy(opt),
            checkpoint=args.checkpoint,
            name=args.name,
            max_params=args.max_params,
            max_gmacs=args.max_gmacs,
            opset=args.opset,
            fp16=args.fp16,
            input_size=args.input_size,
            out_dir=args.out_dir,
            force=args.force,
            options_file=str(Path(args.opt).resolve()),
            latency_runs=args.latency_runs,
            log=print,
        )
    except (BudgetError, ExportError) as err:
        print(f"export: FAILED: {err}", file=sys.stderr)
        return 1
    except (ValueError, OSError, CheckpointError) as err:
        print(f"export: error: {err}", file=sys.stderr)
        return 2
    m = result.manifest
    for old in result.replaced:
        print(f"previous submission moved aside to {old}")
    print(f"submission: {result.folder}")
    print(f"zip: {result.zip} (sha256 {sha256_file(result.zip)})")
    ref = "x".join(map(str, m["macs"]["reference_input"]))
    print(
        f"{m['params']['torch']:,d} params, {m['macs']['gmacs']:.4f} GMACs at {ref}, "
        f"PSNR {m['validation']['psnr']:.3f} dB / SSIM {m['validation']['ssim']:.4f} "
        f"({'Y' if m['validation']['y_channel'] else 'RGB'}, border {m['validation']['crop_border']}), "
        f"onnxruntime CPU {m['latency']['onnxruntime_cpu_ms_median']:.1f} ms"
    )
    return 0
