"""``python export.py``: student checkpoint → size gate → verified ONNX → ``submissions/<name>/`` and its zip.

Usage::

    python export.py -opt options/distill.yml                       # experiments/<name>/models/net_g_latest.pth
    python export.py -opt options/distill.yml --checkpoint best.pth --name team_x4 --max-gmacs 200 --fp16
    python export.py -opt options/distill.yml --input-size 320x180 --out-dir /tmp/subs --force
    python export.py -opt options/distill.yml --ntire-team 7 --int8  # + NTIRE ESR package and an INT8 model

Steps (any failure exits non-zero and leaves the submissions folder as it was):

1. Build ``network_g`` alone from the options and load ``params_ema`` (else ``params``) safely.
2. Size gate on the deployed network (:mod:`kit.export.budget`): ``--max-params`` (default 5,000,000,
   inclusive) and optionally ``--max-gmacs`` (fvcore's count, :mod:`kit.export.counts`) at the reference input
   ``--input-size`` (default 256x256); NTIRE's counts at 1x3x256x256.
3. ONNX (:mod:`kit.export.onnx_export`, :mod:`kit.export.onnx_rewrite`): export, exact rewrites, ``onnx.checker``
   (full check), onnxruntime vs PyTorch on a real photo at the export size and at a second, odd size (batch 2),
   parameters read back from the file.
4. Latency (onnxruntime CPU; CUDA events with a GPU, :mod:`kit.export.runtime`), PSNR/SSIM of the ONNX model on
   the validation set (:func:`kit.evaluation.evaluate`), with the options' metric and on RGB border 4.
5. ``--ntire-team``: the NTIRE package, run with the kit hidden (:mod:`kit.export.ntire`); ``--int8``:
   ``model_int8.onnx``, verified like fp32 (:mod:`kit.export.int8`, :mod:`kit.export.int8_verify`).
6. ``model.onnx``, ``weights.safetensors``, ``README.txt``, ``manifest.json`` (sha256 of the other files, no
   machine paths; :mod:`kit.export.manifest`) written into a hidden temporary folder under the submissions folder,
   zipped, then renamed into place.
   An existing submission is never overwritten: ``--force`` moves it aside to ``<name>_replaced_<time>``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kit.archs.deploy import deploy_network
from kit.checkpoint import CheckpointError
from kit.export.budget import Budget, BudgetError, budget_violations, measure_budget
from kit.export.counts import ChallengeCounts, challenge_counts
from kit.export.int8 import CALIBRATION_METHODS, FLOAT_PARTS, Int8Settings
from kit.export.leftovers import claim, clean_stale
from kit.export.manifest import OnnxRecord, ValidationRecord, build_manifest, git_state, sha256_file, write_records
from kit.export.ntire import check_request, class_name, verify_package, write_package
from kit.export.onnx_export import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    ExportError,
    check_onnx,
    check_parity,
    export_onnx,
    latency_ms,
    onnx_param_count,
    parity_inputs,
    reference_photo,
)
from kit.export.runtime import runtime_record
from kit.options import REPO_ROOT, OptionsError, check_name, load_options

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

_Say = Callable[[str], None]


class SubmissionError(ValueError):
    """The submission cannot be written as asked (bad name, existing submission without --force)."""


@dataclass
class SubmissionResult:
    """Where the submission went, what it holds, and what was moved aside."""

    folder: Path
    zip: Path
    manifest: dict[str, Any]
    replaced: list[Path]


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
    ntire_team: int | None = None,
    ntire_name: str | None = None,
    int8: Int8Settings | None = None,
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
        ntire_team: Write and verify the NTIRE ESR package ``ntire/`` for this team id (``None``: no package).
        ntire_name: Its class name; ``None``: the submission name in CamelCase (``distill_rlfn_x4`` ->
            ``DistillRlfnX4``).
        int8: Add ``model_int8.onnx``, quantised statically with these settings (``None``: no INT8 model).

    Returns:
        A :class:`SubmissionResult`.

    Raises:
        SubmissionError: bad name, or a submission exists and ``force`` is off (checked before any work).
        CheckpointError: the checkpoint is missing, unreadable or does not fit ``network_g``.
        BudgetError: over a limit; nothing is written.
        ExportError: export, checker or parity failed (ONNX, NTIRE package, INT8); nothing is left in ``out_dir``.
    """
    say = log or (lambda line: None)
    name, out_dir = _check_target(opt, name, out_dir, force)
    if ntire_team is not None:
        ntire_name = ntire_name or class_name(name)
        check_request(opt["network_g"], ntire_team, ntire_name)
    if int8 is not None and fp16:
        raise SubmissionError("--int8 quantises the float32 model; drop --fp16")
    h, w = (int(v) for v in input_size)
    deployed, loaded, budget = _deployed_within_budget(opt, checkpoint, h, w, max_params, max_gmacs, out_dir, say)
    counts = _challenge_counts(deployed, budget, say)

    with _staging(out_dir, name) as tmp:
        staged = tmp / name
        staged.mkdir()
        onnx, runner, inputs = _export_verified_onnx(deployed, staged / "model.onnx", opt, h, w, opset, fp16, say)
        scale = _output_scale(deployed, inputs[0], opt, h, w)
        validation = _validate_onnx(runner, inputs[0], opt, scale, latency_runs, say)
        from kit.evaluation import validation_pairs

        runtime = runtime_record(
            deployed, (p.lq for p in validation_pairs(opt, scale)), validation.latency_ms, list(inputs[0].shape)
        )
        ntire = None
        if ntire_team is not None:
            ntire = _ntire_package(staged / "ntire", deployed, opt, ntire_team, ntire_name, scale, inputs, counts, say)
        int8_record = None
        if int8 is not None:
            from kit.export.int8_verify import int8_model

            int8_record = int8_model(staged, opt, scale, inputs, validation, int8, latency_runs, say)
        _save_weights(deployed, staged / "weights.safetensors")
        manifest = build_manifest(
            name=name,
            architecture=type(deployed).__name__,
            scale=scale,
            budget=budget,
            reference_input=[1, 3, h, w],
            max_params=max_params,
            max_gmacs=max_gmacs,
            onnx=onnx,
            validation=validation,
            checkpoint=loaded,
            options_file=options_file,
            opt=opt,
            counts=counts,
            runtime=runtime,
            ntire=ntire,
            int8=int8_record,
        )
        write_records(staged, manifest)
        _zip_readable(staged, tmp / f"{name}.zip")
        replaced = _put_in_place(tmp, out_dir, name, force)
    return SubmissionResult(out_dir / name, out_dir / f"{name}.zip", manifest, replaced)


def _check_target(
    opt: Mapping[str, Any], name: str | None, out_dir: str | os.PathLike, force: bool
) -> tuple[str, Path]:
    """The submission name and folder, refused before any work when the name is bad or taken (without ``force``)."""
    try:
        check_name(opt.get("name"), "the options' name")
        name = check_name(str(name) if name is not None else opt["name"], "submission name")
    except OptionsError as err:
        raise SubmissionError(f"{err}; use --name for the submission") from err
    out_dir = Path(out_dir)
    if not force:
        _refuse_existing(out_dir, name)
    return name, out_dir


def _deployed_within_budget(
    opt: Mapping[str, Any],
    checkpoint: str | os.PathLike | None,
    h: int,
    w: int,
    max_params: int | None,
    max_gmacs: float | None,
    out_dir: Path,
    say: _Say,
) -> tuple[nn.Module, dict[str, str], Budget]:
    """Load the student, fuse it to its deployed form and measure it at ``1x3xHxW`` against the limits.

    The deployed network is what ships, so it is the one counted; over a limit raises before anything is written.

    Returns:
        The deployed network (float32, CPU), ``{"path", "param_key"}`` of the loaded weights, and its budget.
    """
    from kit.runners import load_student

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
    return deployed, loaded, budget


def _challenge_counts(deployed: nn.Module, budget: Budget, say: _Say) -> ChallengeCounts:
    """NTIRE's counts at their 1x3x256x256 (the size gate's fvcore count is reused when it was taken there)."""
    if budget.input_shape == (1, 3, 256, 256):
        from kit.export.counts import ntire_activations

        activations, num_conv = ntire_activations(deployed)
        counts = ChallengeCounts(budget.params, budget.macs, activations, num_conv, (1, 3, 256, 256))
    else:
        counts = challenge_counts(deployed)
    say(
        f"NTIRE counts at 1x3x256x256: {counts.params:,d} params, {counts.flops / 1e9:.4f} G fvcore FLOPs, "
        f"{counts.activations / 1e6:.2f} M activations, {counts.num_conv} Conv2d calls"
    )
    return counts


def _ntire_package(
    folder: Path,
    deployed: nn.Module,
    opt: Mapping[str, Any],
    team: int,
    cls: str,
    scale: int,
    inputs: list[Tensor],
    counts: ChallengeCounts,
    say: _Say,
) -> dict[str, Any]:
    """Write the NTIRE package, run it with the kit hidden against ``deployed``, and check fvcore counts it alike."""
    package = verify_package(write_package(folder, deployed, opt["network_g"], team, cls, scale), deployed, inputs)
    if package.fvcore_flops is not None and package.fvcore_flops != counts.flops:
        raise ExportError(
            f"fvcore counts {package.fvcore_flops:,d} FLOPs on the NTIRE file but {counts.flops:,d} on the kit's "
            "deployed network; the torch-only source differs from the kit's class"
        )
    summary = ", ".join(f"{c['max_abs_error']:.1e} at {'x'.join(map(str, c['input_shape']))}" for c in package.checks)
    say(f"NTIRE package ntire/{package.model_file}: runs with the kit hidden, max abs error vs the kit {summary}")
    return package.record()


@contextlib.contextmanager
def _staging(out_dir: Path, name: str) -> Iterator[Path]:
    """A hidden temporary folder inside ``out_dir``, removed on exit, for building the submission before it is moved in.

    Staging inside ``out_dir`` keeps the final moves on one file system (atomic renames). On any failure, ``out_dir``
    is left as it was: the temporary folder goes, and so does ``out_dir`` itself if this run created it.
    """
    created_out_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_stale(out_dir)  # what killed exports left
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out_dir))
    try:
        claim(tmp)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_out_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def _export_verified_onnx(
    deployed: nn.Module, path: Path, opt: Mapping[str, Any], h: int, w: int, opset: int, fp16: bool, say: _Say
) -> tuple[OnnxRecord, Callable[[Tensor], Tensor], list[Tensor]]:
    """Export ``deployed`` to ``path``, run the full checker, and compare onnxruntime with PyTorch on a real photo.

    A file that fails any check raises :class:`ExportError`: nothing unverified is submitted.

    Returns:
        The record for the manifest, the onnxruntime runner, and the parity inputs (the first is ``1x3xHxW``).
    """
    from kit.runners import OnnxRunner

    onnx_path = export_onnx(deployed, path, (1, 3, h, w), opset, fp16)
    rewrites = [] if fp16 else _rewrite(onnx_path)
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
    return OnnxRecord(opset, fp16, counted, tolerance, photo_path, checks, tuple(rewrites)), runner, inputs


def _rewrite(path: Path) -> list[str]:
    """Apply :mod:`kit.export.onnx_rewrite`'s exact rewrites to the file; the parity check that follows covers them."""
    import onnx

    from kit.export.onnx_rewrite import rewrite_cubic_upsampling

    model = onnx.load(str(path))
    done = rewrite_cubic_upsampling(model)
    if done:
        onnx.save(model, str(path))
    return done


def _output_scale(deployed: nn.Module, x: Tensor, opt: Mapping[str, Any], h: int, w: int) -> int:
    """The student's scale, measured on ``x`` (``1x3xHxW``); raises when it is not the options' ``scale``."""
    with torch.inference_mode():
        out_shape = tuple(deployed(x).shape)
    scale = out_shape[-1] // w
    if out_shape[-2:] != (h * scale, w * scale) or scale != int(opt.get("scale", scale)):
        raise ExportError(f"the student maps 1x3x{h}x{w} to {out_shape}; that is not the options' scale")
    return scale


def _validate_onnx(
    runner: Callable[[Tensor], Tensor], x: Tensor, opt: Mapping[str, Any], scale: int, runs: int, say: _Say
) -> ValidationRecord:
    """Time the ONNX model on ``x`` and measure its PSNR/SSIM on the validation set, as the options' metric does.

    The ONNX file, not the PyTorch network, is evaluated: the numbers describe what is submitted.
    """
    from kit.evaluation import evaluate, validation_pairs

    ms = latency_ms(runner, x, runs=runs)
    y_channel, border = _validation_settings(opt, scale)
    result = evaluate({"onnx": runner}, validation_pairs(opt, scale), scale, y_channel, border)
    means = result.means()["onnx"]
    rgb = evaluate({"onnx": runner}, validation_pairs(opt, scale), scale, False, 4)
    rgb_means = {**rgb.means()["onnx"], "metric": rgb.metric_label}
    say(
        f"validation: PSNR {means['psnr']:.3f} dB, SSIM {means['ssim']:.4f} ({result.metric_label}); "
        f"{rgb_means['psnr']:.3f} dB / {rgb_means['ssim']:.4f} ({rgb.metric_label})"
    )
    return ValidationRecord(ms, runs, list(x.shape), y_channel, border, result, means, rgb_means)


def _validation_settings(opt: Mapping[str, Any], scale: int) -> tuple[bool, int]:
    """Y/RGB and border of the options' PSNR metric (``val.metrics``), else Y with a border of ``scale``."""
    for spec in ((opt.get("val") or {}).get("metrics") or {}).values():
        if isinstance(spec, Mapping) and "psnr" in str(spec.get("type", "")):
            return bool(spec.get("test_y_channel", False)), int(spec.get("crop_border", 0))
    return True, scale


def _save_weights(deployed: nn.Module, path: Path) -> None:
    """The deployed weights as safetensors (no pickle), with the architecture name in the metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in deployed.state_dict().items()}
    save_file(state, str(path), metadata={"architecture": type(deployed).__name__})


def _zip_readable(folder: Path, zip_path: Path) -> None:
    """Make every file under ``folder`` world-readable, then zip them under ``<folder name>/``."""
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    for f in files:
        f.chmod(0o644)  # safetensors writes 0600; the organisers need to read the files
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, arcname=f"{folder.name}/{f.relative_to(folder).as_posix()}")


def _put_in_place(tmp: Path, out_dir: Path, name: str, force: bool) -> list[Path]:
    """Rename the verified ``tmp/<name>/`` and ``tmp/<name>.zip`` into ``out_dir``; returns what was moved aside.

    This is the first change to ``out_dir`` itself. With ``force`` the old submission is moved aside first; the
    existence check is repeated because another run may have written the same name since the start.
    """
    replaced = _move_aside(out_dir, name) if force else []
    _refuse_existing(out_dir, name)  # another run may have written it meanwhile
    os.replace(tmp / name, out_dir / name)
    os.replace(tmp / f"{name}.zip", out_dir / f"{name}.zip")
    return replaced


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
    g = p.add_argument_group("NTIRE Efficient SR package (ntire/ beside model.onnx)")
    g.add_argument("--ntire-team", type=int, metavar="ID", help="team id: write ntire/models/team<ID>_<Name>.py etc.")
    g.add_argument("--ntire-name", help="class name <Name> (default: the submission name in CamelCase)")
    g = p.add_argument_group("INT8 (model_int8.onnx beside model.onnx)")
    g.add_argument("--int8", action="store_true", help="add a statically quantised INT8 ONNX model (QDQ)")
    g.add_argument("--int8-crops", type=int, default=64, help="calibration crops of the training LR (default 64)")
    g.add_argument("--int8-crop-size", type=int, default=64, help="side of each calibration crop (default 64)")
    g.add_argument("--int8-method", choices=CALIBRATION_METHODS, default="minmax", help="calibration (default minmax)")
    g.add_argument(
        "--int8-keep-float",
        default="image",
        help=f"comma-separated parts left in float, of {', '.join(FLOAT_PARTS)}; 'none' for none (default image)",
    )
    return p


def _int8_settings(args: argparse.Namespace) -> Int8Settings | None:
    if not args.int8:
        return None
    keep = tuple(p.strip() for p in args.int8_keep_float.split(",") if p.strip() and p.strip() != "none")
    return Int8Settings(args.int8_crops, args.int8_crop_size, args.int8_method, keep)


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
            ntire_team=args.ntire_team,
            ntire_name=args.ntire_name,
            int8=_int8_settings(args),
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
    if m["ntire"]:
        print(f"NTIRE package: {result.folder / 'ntire'} (paste {m['ntire']['select_model']} into test_demo.py)")
    if m["int8"]:
        q = m["int8"]
        print(
            f"INT8: {q['file']}, PSNR drop {q['validation']['psnr_drop_vs_fp32']:+.3f} dB, "
            f"{q['latency']['speedup']:.2f}x the fp32 speed in onnxruntime CPU"
        )
    return 0
