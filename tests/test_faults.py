"""The fault matrix: every bad input to train.py/export.py ends with one clear line and touches nothing.

Each case is a run of the real entry point in its own process (forked from a warm process, see
tests/warm_runner.py; three cases also through ``python train.py`` itself). Each asserts the exit code, the
key words of the one-line message on stderr, no traceback on the screen, and that a pre-existing experiment of
the same name and a pre-existing submission are byte-identical afterwards (hashes of the folder trees).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import REPO, distill_options, tiny_teacher_checkpoint, write_options
from tests.warm_runner import WarmRunner


def tree_hash(folder: Path) -> str:
    """SHA-256 over every file's relative path, mode and bytes under ``folder``."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        h.update(rel.encode() + oct(path.stat().st_mode).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


@dataclass
class World:
    name: str
    tmp: Path
    base: Path  # the options file every case starts from
    opt: dict
    exp: Path  # the pre-existing experiment of the same name
    subs: Path  # a submissions folder with a pre-existing submission of the same name
    runner: WarmRunner
    bundled: Path


@pytest.fixture(scope="module")
def world(bundled_root: Path, tmp_path_factory: pytest.TempPathFactory, warm: WarmRunner):
    tmp = tmp_path_factory.mktemp("faults")
    name = f"test_faults_{uuid.uuid4().hex[:8]}"
    teacher_opt, teacher = tiny_teacher_checkpoint(tmp / "teacher.pth")
    opt = distill_options(
        bundled_root,
        name,
        teacher_opt,
        teacher,
        **{"train:total_iter": 2, "val:val_freq": 100, "logger:save_checkpoint_freq": 2, "logger:print_freq": 1},
    )
    base = write_options(tmp / "base.yml", opt)
    runner = warm
    made = runner.run("train.py", ["-opt", str(base)])
    assert made.returncode == 0, made.stderr[-3000:]
    subs = tmp / "subs"
    (subs / name).mkdir(parents=True)
    (subs / name / "model.onnx").write_bytes(b"an earlier submission")
    (subs / name / "manifest.json").write_text("{}")
    (subs / f"{name}.zip").write_bytes(b"PK earlier")
    try:
        yield World(name, tmp, base, opt, REPO / "experiments" / name, subs, runner, bundled_root)
    finally:
        for folder in (REPO / "experiments").glob(f"{name}*"):
            shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- the inputs of the cases
def _file(w: World, label: str, text: str) -> Path:
    path = w.tmp / f"{label}.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _edited(w: World, label: str, edit) -> Path:
    opt = yaml.safe_load(w.base.read_text())
    edit(opt)
    return write_options(w.tmp / f"{label}.yml", opt)


def _random_bytes(w: World) -> Path:
    path = w.tmp / "random.pth"
    path.write_bytes(os.urandom(1000))
    return path


def _code_pickle(w: World) -> Path:
    path = w.tmp / "code.pth"
    with path.open("wb") as f:
        pickle.dump({"params": argparse.Namespace(x=1)}, f)
    return path


def _nan_student(w: World) -> Path:
    ckpt = torch.load(w.exp / "models/net_g_latest.pth", weights_only=True)
    for state in ckpt.values():
        first = next(iter(state))
        state[first] = torch.full_like(state[first], float("nan"))
    path = w.tmp / "nan.pth"
    torch.save(ckpt, path)
    return path


def _pair_folders(w: World, label: str, drop_lq: bool = False, corrupt: bool = False) -> tuple[Path, Path]:
    gt, lq = w.tmp / label / "gt", w.tmp / label / "lq"
    if not gt.exists():
        shutil.copytree(w.bundled / "val/HR", gt)
        shutil.copytree(w.bundled / "val/LR_bicubic/X4", lq)
        victim = sorted(lq.iterdir())[0]
        if drop_lq:
            victim.unlink()
        if corrupt:
            victim.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return gt, lq


def _train_folders(label: str, **kw):
    def make(w: World) -> list[str]:
        gt, lq = _pair_folders(w, label, **kw)
        return ["--force_yml", f"datasets:train:dataroot_gt={gt}", f"datasets:train:dataroot_lq={lq}"]

    return make


def _ov(*entries: str):
    return lambda w: ["--force_yml", *entries]


def _opt(path_of):
    return lambda w: ["-opt", str(path_of(w))]


ITERS = "  total_iter: 2\n"
TAG = "name: x\n!!python/object/apply:os.system ['touch {marker}']: 1\n"

TRAIN_CASES = {
    # typos caught at start-up: the class check of a type: spec, the options schema, the model's constructor
    "nested_loss_argument": (_ov("train:distill:mid:loss:lossweight=4"), ["L2Loss has no argument 'lossweight'"]),
    "network_type": (_ov("network_g:type=SRVGGNetCompactt"), ["network_g", "unknown type", "SRVGGNetCompact"]),
    "network_argument": (_ov("network_g:num_feats=8"), ["no argument 'num_feats'", "num_feat"]),
    "model_type": (_ov("model_type=DistilModel"), ["model_type", "DistilModel", "DistillModel"]),
    "unknown_key_override": (_ov("train:total_itr=4"), ["train:total_itr", "total_iter"]),
    "unknown_top_level_override": (_ov("num_gpus=0"), ["num_gpus", "num_gpu"]),
    "number_suffix": (_ov("train:total_iter=20k"), ["train:total_iter", "20k", "20000"]),
    "bool_value": (_ov("datasets:train:use_hflip=maybe"), ["datasets:train:use_hflip", "true or false"]),
    "malformed_override": (_ov("train:total_iter"), ["--force_yml", "key:sub:key=value"]),
    "override_missing_section": (_ov("trian:total_iter=4"), ["no mapping 'trian'", "train"]),
    "optimizer_argument": (_ov("train:optim_g:betass=[0.9,0.99]"), ["train:optim_g", "no argument 'betass'", "betas"]),
    "metric_type": (_ov("val:metrics:psnr:type=calculate_psnrr"), ["calculate_psnrr", "calculate_psnr"]),
    # teachers and feature pairs
    "missing_teacher": (_ov("path:pretrain_network_t=/nonexistent/t.pth"), ["/nonexistent/t.pth", "does not exist"]),
    "random_bytes_teacher": (
        lambda w: ["--force_yml", f"path:pretrain_network_t={_random_bytes(w)}"],
        ["random.pth", "not a checkpoint"],
    ),
    "code_pickle_teacher": (
        lambda w: ["--force_yml", f"path:pretrain_network_t={_code_pickle(w)}"],
        ["code.pth", "arbitrary Python objects"],
    ),
    "param_key_absent": (_ov("path:param_key_t=params_foo"), ["params_foo", "params_ema", "params"]),
    "teacher_does_not_fit": (_ov("network_t:num_feat=32"), ["does not fit", "EDSR"]),
    "pair_student_path": (_ov("train:distill:mid:student=body.77"), ["body.77"]),
    "pair_shapes": (_ov("train:distill:mid:connector:out_channels=12"), ["mid", "12", "16"]),
    # datasets
    "missing_dataset": (_ov("datasets:train:dataroot_gt=/nonexistent/gt"), ["datasets:train:dataroot_gt", "not exist"]),
    "val_pairs_vs_scale": (
        lambda w: ["--force_yml", f"datasets:val:dataroot_lq={w.bundled / 'val/HR'}"],
        ["datasets:val", "at scale 4 should be"],
    ),
    "train_pairs_vs_scale": (
        lambda w: ["--force_yml", f"datasets:train:dataroot_lq={w.bundled / 'train/HR'}"],
        ["datasets:train", "at scale 4 should be"],
    ),
    "gt_size_too_large": (_ov("datasets:train:gt_size=2048"), ["smaller than gt_size 2048"]),
    "gt_size_not_multiple": (_ov("datasets:train:gt_size=30"), ["gt_size 30", "multiple of the scale 4"]),
    "unpaired": (_train_folders("unpaired", drop_lq=True), ["has no partner"]),
    "undecodable_image": (_train_folders("corrupt", corrupt=True), ["cannot be decoded"]),
    # the machine
    "num_gpu_without_gpu": (_ov("num_gpu=1"), ["num_gpu: 1", "0 CUDA GPU", "num_gpu: 0"]),
}

FILE_CASES = {
    "unknown_key_in_file": (
        lambda w: _edited(w, "vf", lambda o: o["val"].update(val_frequency=2)),
        ["val:val_frequency", "val_freq"],
    ),
    "duplicate_key": (
        lambda w: _file(w, "dup", w.base.read_text().replace(ITERS, ITERS + "  total_iter: 3\n")),
        ["total_iter", "twice"],
    ),
    "options_missing": (lambda w: w.tmp / "nonexistent.yml", ["nonexistent.yml", "does not exist"]),
    "yaml_python_tag": (lambda w: _file(w, "tag", TAG.format(marker=w.tmp / "pwned")), ["refused a YAML tag"]),
}

EXPORT_CASES = {
    "export_nan_weights": (lambda w: ["--checkpoint", str(_nan_student(w)), "--name", "other"], ["NaN", "diverged"]),
    "export_random_bytes": (lambda w: ["--checkpoint", str(_random_bytes(w)), "--name", "other"], ["not a checkpoint"]),
    "export_missing_checkpoint": (
        lambda w: ["--checkpoint", "/nonexistent/s.pth", "--name", "other"],
        ["does not exist"],
    ),
    "export_existing_submission": (lambda w: [], ["already exists", "not overwritten"]),
}

ALL = {**{k: ("train", v) for k, v in TRAIN_CASES.items()}, **{k: ("file", v) for k, v in FILE_CASES.items()}}
ALL |= {k: ("export", v) for k, v in EXPORT_CASES.items()}


def _check_untouched(w: World, before: tuple[str, str]) -> None:
    assert (tree_hash(w.exp), tree_hash(w.subs)) == before, "a failed run changed the experiment or the submission"
    assert not list((REPO / "experiments").glob(f"{w.name}_archived_*")), "a failed start moved the experiment aside"
    assert not list(w.subs.glob(".*.partial-*"))


def _one_line(result, keywords: list[str], prefix: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines, "no message on stderr"
    last = lines[-1]
    assert last.startswith(prefix), last
    for word in keywords:
        assert word in last, f"'{word}' not in: {last}"
    assert "Traceback" not in result.stderr
    return last


@pytest.mark.parametrize("case", list(ALL))
def test_fault(world: World, case: str) -> None:
    kind, (make, keywords) = ALL[case]
    before = (tree_hash(world.exp), tree_hash(world.subs))
    if kind == "export":
        argv = ["-opt", str(world.base), "--out-dir", str(world.subs), "--latency-runs", "1", *make(world)]
        result = world.runner.run("export.py", argv)
        assert result.returncode == 2, result.stderr[-2000:]
        _one_line(result, keywords, "export: error:")
    else:
        argv = ["-opt", str(make(world))] if kind == "file" else ["-opt", str(world.base), *make(world)]
        result = world.runner.run("train.py", argv)
        assert result.returncode == 1, result.stderr[-2000:]
        last = _one_line(result, keywords, "train.py: error:")
        trace = Path(last.rsplit("(traceback: ", 1)[1].rstrip(")"))
        assert "Traceback" in trace.read_text(), trace  # kept where a person can read it
        trace.unlink()
    _check_untouched(world, before)
    assert not (world.tmp / "pwned").exists()


@pytest.mark.parametrize("case", ["unknown_key_override", "random_bytes_teacher", "val_pairs_vs_scale"])
def test_fault_through_train_py(world: World, case: str) -> None:
    """The same cases through ``python train.py``: the warm runner shows what the real entry point shows."""
    make, keywords = TRAIN_CASES[case]
    before = (tree_hash(world.exp), tree_hash(world.subs))
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, str(REPO / "train.py"), "-opt", str(world.base), *make(world)]
    result = subprocess.run(cmd, cwd=world.tmp, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    _one_line(result, keywords, "train.py: error:")
    _check_untouched(world, before)


def test_debug_shows_the_traceback(world: World) -> None:
    result = world.runner.run("train.py", ["-opt", str(world.base), "--debug", "--force_yml", "train:total_itr=4"])
    assert result.returncode == 1
    assert "Traceback" in result.stderr and result.stderr.strip().splitlines()[-1].startswith("train.py: error:")


def test_full_disk_is_one_line_and_leaves_no_partial_file(world: World, exp_name: str) -> None:
    """Writes beyond a file-size limit fail like a full disk: named as such, traceback in the experiment's log."""
    opt = distill_options(
        world.bundled,
        exp_name,
        world.opt["network_t"],
        Path(world.opt["path"]["pretrain_network_t"]),
        **{"train:total_iter": 2, "val:val_freq": 100, "logger:save_checkpoint_freq": 2},
    )
    result = world.runner.run("train.py", ["-opt", str(write_options(world.tmp / "disk.yml", opt))], fsize=40_000)
    assert result.returncode == 1, result.stderr[-2000:]
    last = _one_line(result, ["disk is full", "net_g_2.pth", "--auto_resume"], "train.py: error:")
    exp = REPO / "experiments" / exp_name
    assert str(exp) in last  # the traceback is in the experiment's log
    log = next(exp.glob("train_*.log")).read_text()
    assert "Traceback" in log and "inline_container" in log, log[-3000:]  # torch's own words, kept in the log
    assert not list(exp.rglob("*.tmp")) and not (exp / "models/net_g_2.pth").exists()
