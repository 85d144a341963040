"""The fault matrix: every bad input to train.py/export.py ends with one clear line and touches nothing.

Each case is a run of the real entry point in its own process (forked from a warm process, see
tests/warm_runner.py; three cases also through ``python train.py`` itself). Each asserts the exit code, the
key words of the one-line message on stderr, no traceback on the screen, and that a pre-existing experiment of
the same name and a pre-existing submission are byte-identical afterwards (hashes of the folder trees).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from tests.helpers import REPO, distill_options, start_train, tiny_teacher_checkpoint, wait_for, write_options
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


def _bytes_file(w: World, label: str, data: bytes) -> Path:
    path = w.tmp / f"{label}.yml"
    path.write_bytes(data)
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


def bomb_png(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header declares ``width x height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b"")
    )


def inflating_zip(path: Path) -> Path:
    """A 'checkpoint' zip of ~70 KB that would expand to 64 MiB (torch never compresses its archives)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", bytes(64 << 20))
    return path


def _pair_folders(w: World, label: str, drop_lq: bool = False, corrupt: bool = False, **kw) -> tuple[Path, Path]:
    gt, lq = w.tmp / label / "gt", w.tmp / label / "lq"
    if not gt.exists():
        shutil.copytree(w.bundled / "val/HR", gt)
        shutil.copytree(w.bundled / "val/LR_bicubic/X4", lq)
        victim = sorted(lq.iterdir())[0]
        if drop_lq:
            victim.unlink()
        if corrupt:
            victim.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        if kw.get("stray"):
            (lq / "notes.txt").write_text("where these came from")
        if kw.get("other_extension"):
            victim.rename(victim.with_suffix(".bmp"))
        if kw.get("bomb"):
            sorted(gt.iterdir())[0].write_bytes(bomb_png(20000, 20000))
    return gt, lq


def _teacher(w: World, label: str, change) -> Path:
    """The world's teacher checkpoint with every tensor of its weights changed by ``change``."""
    ckpt = torch.load(w.opt["path"]["pretrain_network_t"], weights_only=True)
    path = w.tmp / f"{label}.pth"
    torch.save({key: {k: change(v) for k, v in state.items()} for key, state in ckpt.items()}, path)
    return path


def _teacher_case(label: str, change):
    return lambda w: ["--force_yml", f"path:pretrain_network_t={_teacher(w, label, change)}"]


def _lmdb(w: World) -> Path:
    """An LMDB dataroot whose meta_info.txt lists a record it does not hold."""
    import lmdb

    path = w.tmp / "gt.lmdb"
    if not path.exists():
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64)).save(buffer, "PNG")
        with lmdb.open(str(path), map_size=1 << 24) as env, env.begin(write=True) as txn:
            txn.put(b"a", buffer.getvalue())
        (path / "meta_info.txt").write_text("a.png (64,64,3) 1\nb.png (64,64,3) 1\n")
    return path


def _student(w: World, change) -> Path:
    ckpt = torch.load(w.exp / "models/net_g_latest.pth", weights_only=True)
    path = w.tmp / "int8_student.pth"
    torch.save({key: {k: change(v) for k, v in state.items()} for key, state in ckpt.items()}, path)
    return path


def _dangling(w: World) -> list[str]:
    out = w.tmp / "dangling"
    out.mkdir(exist_ok=True)
    link = out / "linked"
    if not link.is_symlink():
        link.symlink_to(w.tmp / "nowhere")
    return ["--out-dir", str(out), "--name", "linked"]


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
# 10 values, each alias level x10: 1e10 values from ~1 KB of text
BOMB = "bomb0: &b0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"bomb{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]\n" for i in range(1, 10)
)


def _int8(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.int8) if t.is_floating_point() else t


def _bool(t: torch.Tensor) -> torch.Tensor:
    return (t > 0) if t.is_floating_point() else t


def _nan(t: torch.Tensor) -> torch.Tensor:
    return torch.full_like(t, float("nan")) if t.is_floating_point() else t


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
    # issue 26: numbers against their domains (positive, finite, whole), named with the key
    "gt_size_zero": (_ov("datasets:train:gt_size=0"), ["datasets:train:gt_size", "1 or more"]),
    "save_checkpoint_freq_zero": (_ov("logger:save_checkpoint_freq=0"), ["logger:save_checkpoint_freq", "1 or more"]),
    "print_freq_zero": (_ov("logger:print_freq=0"), ["logger:print_freq", "1 or more"]),
    "total_iter_inf": (_ov("train:total_iter=.inf"), ["train:total_iter", "finite"]),
    "total_iter_nan": (_ov("train:total_iter=.nan"), ["train:total_iter", "finite"]),
    "total_iter_negative": (_ov("train:total_iter=-5"), ["train:total_iter", "1 or more", "-5"]),
    "ema_decay_nan": (_ov("train:ema_decay=.nan"), ["train:ema_decay", "finite"]),
    "scale_zero": (_ov("scale=0"), ["scale", "1 or more"]),
    "enlarge_ratio_negative": (_ov("datasets:train:dataset_enlarge_ratio=-1"), ["dataset_enlarge_ratio", "1 or more"]),
    "lr_text": (_ov("train:optim_g:lr=abc"), ["train:optim_g:lr", "'abc'"]),
    "milestones_not_a_list": (_ov("train:scheduler:milestones=5"), ["train:scheduler:milestones", "list"]),
    "width_negative": (_ov("network_g:num_feat=-8"), ["network_g:num_feat", "1 or more"]),
    "width_fractional": (_ov("network_g:num_feat=12.5"), ["network_g:num_feat", "whole number"]),
    # issue 26: datasets as the loaders read them, validation images against the metrics
    "crop_border_negative": (_ov("val:metrics:psnr:crop_border=-1"), ["val:metrics:psnr:crop_border", "0 or more"]),
    "crop_border_too_large": (_ov("val:metrics:psnr:crop_border=5000"), ["val:metrics:psnr:crop_border", "no pixels"]),
    "non_image_in_dataset": (_train_folders("stray", stray=True), ["notes.txt", "not an image", "move it out"]),
    "same_stem_other_extension": (_train_folders("ext", other_extension=True), [".bmp", "GT's extension"]),
    "pixel_bomb_in_dataset": (_train_folders("bomb", bomb=True), ["400,000,000 pixels", "decompression bomb"]),
    "lmdb_missing_record": (
        lambda w: ["--force_yml", f"datasets:train:dataroot_gt={_lmdb(w)}"],
        ["datasets:train:dataroot_gt", "meta_info.txt line 2", "'b'"],
    ),
    # issue 26: teachers that load without a word into a float network, or name themselves
    "int8_teacher": (_teacher_case("int8", _int8), ["int8", "float32", "float checkpoint"]),
    "bool_teacher": (_teacher_case("bool", _bool), ["bool", "float32"]),
    "nan_teacher": (_teacher_case("nan", _nan), ["nan.pth", "NaN or Inf"]),
    "inflating_teacher": (
        lambda w: ["--force_yml", f"path:pretrain_network_t={inflating_zip(w.tmp / 'inflating.pth')}"],
        ["inflating.pth", "would expand to 64.0 MiB"],
    ),
    "teacher_recipe_names_itself": (
        lambda w: ["--force_yml", f"path:pretrain_network_t={w.tmp / 'absent.pth'}", f"path:teacher_recipe={w.base}"],
        ["already being run by this process", "teacher_recipe"],
    ),
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
    # issue 26: bounded, well-formed options files and names
    "alias_bomb": (lambda w: _file(w, "bomb", w.base.read_text() + BOMB), ["bomb.yml", "aliases", "100,000 values"]),
    "deep_nesting": (
        lambda w: _file(w, "deep", w.base.read_text() + "deep: " + "[" * 20000 + "]" * 20000 + "\n"),
        ["deep.yml", "nested deeper"],
    ),
    "list_as_key": (lambda w: _file(w, "listkey", w.base.read_text() + "? [a, b]\n: 1\n"), ["list", "mapping key"]),
    "not_utf8": (
        lambda w: _bytes_file(w, "latin1", w.base.read_bytes() + b"# caf\xe9\n"),
        ["latin1.yml", "not UTF-8", "save it as UTF-8"],
    ),
    "name_with_newline": (
        lambda w: _edited(w, "newline", lambda o: o.update(name=o["name"] + "\n")),
        ["is not a plain name", "'\\n' at its end"],
    ),
    "name_a_number": (lambda w: _edited(w, "number", lambda o: o.update(name=123)), ["name 123", "a number"]),
}

EXPORT_CASES = {
    "export_nan_weights": (lambda w: ["--checkpoint", str(_nan_student(w)), "--name", "other"], ["NaN", "diverged"]),
    "export_random_bytes": (lambda w: ["--checkpoint", str(_random_bytes(w)), "--name", "other"], ["not a checkpoint"]),
    "export_missing_checkpoint": (
        lambda w: ["--checkpoint", "/nonexistent/s.pth", "--name", "other"],
        ["does not exist"],
    ),
    "export_existing_submission": (lambda w: [], ["already exists", "not overwritten"]),
    # issue 26
    "export_name_with_newline": (lambda w: ["--name", "sub\n"], ["submission name", "at its end"]),
    "export_input_size_huge": (lambda w: ["--input-size", "99999x99999"], ["--input-size", "4 to 2048"]),
    "export_out_dir_is_a_file": (lambda w: ["--out-dir", str(w.base)], ["is a file", "--out-dir"]),
    "export_dangling_symlink": (_dangling, ["linked", "already exists"]),
    "export_inflating_checkpoint": (
        lambda w: ["--checkpoint", str(inflating_zip(w.tmp / "big.pth")), "--name", "other"],
        ["big.pth", "would expand"],
    ),
    "export_int8_checkpoint": (
        lambda w: ["--checkpoint", str(_student(w, _int8)), "--name", "other"],
        ["int8_student.pth", "int8"],
    ),
}

ALL = {**{k: ("train", v) for k, v in TRAIN_CASES.items()}, **{k: ("file", v) for k, v in FILE_CASES.items()}}
ALL |= {k: ("export", v) for k, v in EXPORT_CASES.items()}


def _check_untouched(w: World, before: tuple[str, str]) -> None:
    assert (tree_hash(w.exp), tree_hash(w.subs)) == before, "a failed run changed the experiment or the submission"
    assert not list((REPO / "experiments").glob(f"{w.name}_archived_*")), "a failed start moved the experiment aside"
    assert not list(w.subs.glob(".*.partial-*"))
    assert not list((REPO / "experiments").glob(f".{w.name}*.lock")), "a failed start left its lock"


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
    home = world.tmp / f"home_{case}"  # the user's home: nothing may be written there (dependencies' caches)
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home / ".config")}
    if kind == "export":
        argv = ["-opt", str(world.base), "--out-dir", str(world.subs), "--latency-runs", "1", *make(world)]
        result = world.runner.run("export.py", argv, env=env)
        assert result.returncode == 2, result.stderr[-2000:]
        _one_line(result, keywords, "export.py: error:" if case == "export_input_size_huge" else "export: error:")
    else:
        argv = ["-opt", str(make(world))] if kind == "file" else ["-opt", str(world.base), *make(world)]
        result = world.runner.run("train.py", argv, env=env)
        assert result.returncode == 1, result.stderr[-2000:]
        last = _one_line(result, keywords, "train.py: error:")
        trace = Path(last.rsplit("(traceback: ", 1)[1].rstrip(")"))
        assert "Traceback" in trace.read_text(), trace  # kept where a person can read it
        trace.unlink()
    _check_untouched(world, before)
    assert not (world.tmp / "pwned").exists()
    assert list(home.rglob("*")) == [], "a failed run wrote into the user's home"


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


def test_two_runs_of_one_name_the_second_is_refused_and_the_first_intact(world: World, exp_name: str) -> None:
    """A second run of a live run's name, started while the first trains: refused naming the first's pid."""
    opt = distill_options(
        world.bundled,
        exp_name,
        world.opt["network_t"],
        Path(world.opt["path"]["pretrain_network_t"]),
        **{"train:total_iter": 60, "val:val_freq": 1000, "logger:save_checkpoint_freq": 30, "logger:print_freq": 1},
    )
    opt_file = write_options(world.tmp / "long.yml", opt)
    first = start_train(["-opt", str(opt_file)], world.tmp)
    exp, lock = REPO / "experiments" / exp_name, REPO / "experiments" / f".{exp_name}.lock"
    try:
        wait_for(exp / "history.jsonl", first)  # until the first trains: its folder and history exist
        assert lock.read_text().strip() == str(first.pid)
        second = world.runner.run("train.py", ["-opt", str(opt_file)])
        running = first.poll() is None
    finally:
        _, err = first.communicate(timeout=300)
    assert running, "the first run ended before the second was refused: the test proved nothing"
    assert second.returncode == 1, second.stderr[-2000:]
    _one_line(second, [f"experiment '{exp_name}' is in use", f"pid {first.pid}", "another name"], "train.py: error:")
    assert first.returncode == 0, err[-2000:]
    history = [json.loads(line) for line in (exp / "history.jsonl").read_text().splitlines()]
    iters = [record["iter"] for record in history if record.get("kind") == "train"]
    assert iters == list(range(1, 61))  # one run's history, every iteration once
    assert torch.load(exp / "models/net_g_latest.pth", weights_only=True)["params"]
    assert not list((REPO / "experiments").glob(f"{exp_name}_archived_*")) and not lock.exists()


def test_a_stale_lock_is_taken_over_with_a_warning(world: World, exp_name: str) -> None:
    """A lock file left by a killed run (a pid, no flock held) does not block the name: taken over, said so."""
    lock = REPO / "experiments" / f".{exp_name}.lock"
    lock.parent.mkdir(exist_ok=True)
    lock.write_text("999999999\n")  # no such process
    opt = yaml.safe_load(world.base.read_text())
    opt["name"] = exp_name
    result = world.runner.run("train.py", ["-opt", str(write_options(world.tmp / "stale.yml", opt))])
    assert result.returncode == 0, result.stderr[-2000:]
    log = next((REPO / "experiments" / exp_name).glob("train_*.log")).read_text()
    assert "took over the lock" in log and "pid 999999999" in log
    assert not lock.exists()


def test_sigterm_during_startup_is_one_line_and_releases_the_lock(world: World, exp_name: str) -> None:
    """SIGTERM while the run starts (its lock taken, no step yet): exit 143, one line, no lock, no folder."""
    opt = yaml.safe_load(world.base.read_text())
    opt["name"] = exp_name
    opt_file = write_options(world.tmp / "term.yml", opt)
    lock = REPO / "experiments" / f".{exp_name}.lock"
    proc = start_train(["-opt", str(opt_file)], world.tmp)
    try:
        wait_for(lock, proc)
        proc.send_signal(signal.SIGTERM)
    finally:
        _, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    _one_line(result, ["SIGTERM", "start-up"], "train.py: stopped")
    assert not lock.exists(), "the lock outlived the run"
    assert not (REPO / "experiments" / exp_name).exists(), "a run stopped in start-up opened its folder"
