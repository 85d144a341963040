"""The export: student checkpoint → size gate → verified ONNX → ``submissions/<name>/`` and its zip.

The command line (``python export.py``, its flags) is :mod:`kit.cli.export`; here is :func:`export_submission`.

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

import contextlib
import datetime as dt
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kit.archs.deploy import deploy_network
from kit.export.budget import Budget, BudgetError, budget_violations, measure_budget
from kit.export.counts import ChallengeCounts, challenge_counts
from kit.export.int8 import Int8Settings
from kit.export.leftovers import claim, clean_stale
from kit.export.manifest import (
    ManifestInputs,
    OnnxRecord,
    ValidationRecord,
    build_manifest,
    git_state,
    sha256_file,
    write_records,
)
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
from kit.options import REPO_ROOT, OptionsError, check_name

__all__ = [
    "DEFAULT_MAX_PARAMS",
    "DEFAULT_OUT_DIR",
    "SubmissionError",
    "SubmissionResult",
    "SubmissionSettings",
    "export_submission",
    "git_state",
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


@dataclass(frozen=True)
class SubmissionSettings:
    """What :func:`export_submission` writes and checks (``export.py``'s flags).

    Attributes:
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
        ntire_team: Write and verify the NTIRE ESR package ``ntire/`` for this team id (``None``: no package).
        ntire_name: Its class name; ``None``: the submission name in CamelCase (``distill_rlfn_x4`` ->
            ``DistillRlfnX4``).
        int8: Add ``model_int8.onnx``, quantised statically with these settings (``None``: no INT8 model).
    """

    checkpoint: str | os.PathLike | None = None
    name: str | None = None
    max_params: int | None = DEFAULT_MAX_PARAMS
    max_gmacs: float | None = None
    opset: int = 17
    fp16: bool = False
    input_size: tuple[int, int] = (256, 256)
    out_dir: str | os.PathLike = DEFAULT_OUT_DIR
    force: bool = False
    options_file: str | None = None
    latency_runs: int = 5
    ntire_team: int | None = None
    ntire_name: str | None = None
    int8: Int8Settings | None = None


@dataclass(frozen=True)
class _Student:
    """The deployed student and what was measured on it before anything is written."""

    deployed: nn.Module
    loaded: dict[str, str]
    budget: Budget
    counts: ChallengeCounts


def export_submission(
    opt: Mapping[str, Any], settings: SubmissionSettings | None = None, log: Callable[[str], None] | None = None
) -> SubmissionResult:
    """Check, export and verify the options' student and write ``out_dir/<name>/`` and ``out_dir/<name>.zip``.

    Args:
        opt: Options dict (as loaded from YAML: ``name``, ``scale``, ``network_g``, ``datasets``, ``val``).
        settings: What to write and check (:class:`SubmissionSettings`; ``None``: the defaults).
        log: Receives one line per step (the CLI prints them).

    Returns:
        A :class:`SubmissionResult`.

    Raises:
        SubmissionError: bad name, or a submission exists and ``force`` is off (checked before any work).
        CheckpointError: the checkpoint is missing, unreadable or does not fit ``network_g``.
        BudgetError: over a limit; nothing is written.
        ExportError: export, checker or parity failed (ONNX, NTIRE package, INT8); nothing is left in ``out_dir``.
    """
    s = settings or SubmissionSettings()
    say = log or (lambda line: None)
    name, out_dir = _check_target(opt, s.name, s.out_dir, s.force)
    ntire_name = None
    if s.ntire_team is not None:
        ntire_name = s.ntire_name or class_name(name)
        check_request(opt["network_g"], s.ntire_team, ntire_name)
    if s.int8 is not None and s.fp16:
        raise SubmissionError("--int8 quantises the float32 model; drop --fp16")
    h, w = (int(v) for v in s.input_size)
    deployed, loaded, budget = _deployed_within_budget(opt, s.checkpoint, h, w, s.max_params, s.max_gmacs, out_dir, say)
    student = _Student(deployed, loaded, budget, _challenge_counts(deployed, budget, say))

    with _staging(out_dir, name) as tmp:
        staged = tmp / name
        staged.mkdir()
        manifest = _write_verified(staged, opt, student, s, ntire_name, say)
        _zip_readable(staged, tmp / f"{name}.zip")
        replaced = _put_in_place(tmp, out_dir, name, s.force)
    return SubmissionResult(out_dir / name, out_dir / f"{name}.zip", manifest, replaced)


def _write_verified(
    staged: Path,
    opt: Mapping[str, Any],
    student: _Student,
    s: SubmissionSettings,
    ntire_name: str | None,
    say: _Say,
) -> dict[str, Any]:
    """Write and verify every file of the submission into ``staged`` (named after it); returns the manifest."""
    from kit.evaluation import validation_pairs

    h, w = (int(v) for v in s.input_size)
    deployed = student.deployed
    onnx, runner, inputs = _export_verified_onnx(deployed, staged / "model.onnx", opt, h, w, s.opset, s.fp16, say)
    scale = _output_scale(deployed, inputs[0], opt, h, w)
    validation = _validate_onnx(runner, inputs[0], opt, scale, s.latency_runs, say)
    runtime = runtime_record(
        deployed, (p.lq for p in validation_pairs(opt, scale)), validation.latency_ms, list(inputs[0].shape)
    )
    ntire = None
    if s.ntire_team is not None:
        ntire = _ntire_package(staged / "ntire", student, opt, (s.ntire_team, ntire_name), scale, inputs, say)
    int8_record = None
    if s.int8 is not None:
        from kit.export.int8_verify import int8_model

        int8 = s.int8.for_network(deployed)  # a QAT network (kit.quant) exports its own QDQ model
        int8_record = int8_model(staged, opt, scale, inputs, validation, int8, s.latency_runs, say)
    _save_weights(deployed, staged / "weights.safetensors")
    manifest = build_manifest(
        ManifestInputs(
            name=staged.name,
            architecture=type(deployed).__name__,
            scale=scale,
            budget=student.budget,
            reference_input=[1, 3, h, w],
            max_params=s.max_params,
            max_gmacs=s.max_gmacs,
            onnx=onnx,
            validation=validation,
            checkpoint=student.loaded,
            options_file=s.options_file,
            opt=opt,
            counts=student.counts,
            runtime=runtime,
            ntire=ntire,
            int8=int8_record,
        )
    )
    write_records(staged, manifest)
    return manifest


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
    if out_dir.exists() and not out_dir.is_dir():
        raise SubmissionError(f"--out-dir '{out_dir}' is a file, not a folder; name a folder for the submissions")
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
    student: _Student,
    opt: Mapping[str, Any],
    team_and_class: tuple[int, str],
    scale: int,
    inputs: list[Tensor],
    say: _Say,
) -> dict[str, Any]:
    """Write the NTIRE package, run it with the kit hidden against the deployed network, check fvcore counts alike."""
    team, cls = team_and_class
    deployed, counts = student.deployed, student.counts
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
    return [p for p in (out_dir / name, out_dir / f"{name}.zip") if p.exists() or p.is_symlink()]  # dangling too


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
