"""train.py end to end on the bundled photos: train, validate, checkpoint, resume, DDP, bad input."""

from __future__ import annotations

import json

import kit  # noqa: F401

# isort: split
import shutil
from pathlib import Path

import pytest
import torch

from kit.cli.train import parse_args
from kit.run import run_training
from tests.helpers import REPO, kill_when, run_torchrun, run_train, tiny_options, write_options


def test_trains_validates_checkpoints(bundled_root: Path, tmp_path: Path) -> None:
    opt_file = write_options(tmp_path / "o.yml", tiny_options(bundled_root, "run"))
    summary = run_training(parse_args(["-opt", str(opt_file)]), root=tmp_path)
    exp = tmp_path / "experiments" / "run"
    assert summary["iters"] == 8
    for f in (
        "models/net_g_4.pth",
        "models/net_g_8.pth",
        "models/net_g_latest.pth",
        "training_states/4.state",
        "training_states/8.state",
        "o.yml",
        "history.jsonl",
        "curves.png",
    ):
        assert (exp / f).is_file(), f
    ckpt = torch.load(exp / "models/net_g_latest.pth", weights_only=True)
    assert set(ckpt) == {"params", "params_ema"}
    assert 5.0 < summary["metrics"]["psnr"] < 40.0
    history = (exp / "history.jsonl").read_text()
    assert '"kind": "val"' in history and '"l_pix"' in history
    # validated at 4 and 8 (val_freq 4); the end does not validate iteration 8 a second time
    val_iters = [json.loads(line)["iter"] for line in history.splitlines() if '"kind": "val"' in line]
    assert val_iters == [4, 8]
    assert summary["metrics"]["psnr"] == json.loads(history.splitlines()[-1])["psnr"]


def test_new_run_archives_never_overwrites(bundled_root: Path, tmp_path: Path) -> None:
    opt_file = write_options(tmp_path / "o.yml", tiny_options(bundled_root, "run", **{"train:total_iter": 2}))
    run_training(parse_args(["-opt", str(opt_file)]), root=tmp_path)
    (tmp_path / "experiments/run/keep.txt").write_text("mine")
    run_training(parse_args(["-opt", str(opt_file)]), root=tmp_path)
    archived = list((tmp_path / "experiments").glob("run_archived_*"))
    assert len(archived) == 1 and (archived[0] / "keep.txt").read_text() == "mine"


def test_killed_run_resumes_from_another_cwd(bundled_root: Path, tmp_path: Path, exp_name: str) -> None:
    opt = tiny_options(bundled_root, exp_name, **{"train:total_iter": 12, "logger:save_checkpoint_freq": 4})
    opt_file = write_options(tmp_path / "o.yml", opt)
    exp = REPO / "experiments" / exp_name
    kill_when(["-opt", str(opt_file)], cwd=REPO, marker=exp / "training_states/4.state")
    assert not (exp / "models/net_g_latest.pth").exists()
    before = (exp / "models/net_g_4.pth").read_bytes()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_train(["-opt", str(opt_file), "--auto_resume"], cwd=elsewhere, env_extra={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr + result.stdout
    assert "Resuming from" in log and "iter 4" in log
    assert (exp / "models/net_g_12.pth").is_file() and (exp / "models/net_g_latest.pth").is_file()
    assert (exp / "models/net_g_4.pth").read_bytes() == before  # the resumed experiment is kept, not archived
    assert not list((REPO / "experiments").glob(f"{exp_name}_archived_*"))
    assert not (elsewhere / "experiments").exists()


def test_resume_continues_mid_epoch_data_order(bundled_root: Path) -> None:
    from kit.data.sampler import ResumableSampler

    dataset = list(range(13))
    full = ResumableSampler(dataset, 1, 0, ratio=2, seed=3)
    full.set_epoch(5)
    order = list(full)
    resumed = ResumableSampler(dataset, 1, 0, ratio=2, seed=3)
    resumed.skip_next(10)
    resumed.set_epoch(5)
    assert len(resumed) == len(order) - 10
    assert list(resumed) == order[10:]
    assert list(resumed) == order  # the skip applies once
    other_seed = ResumableSampler(dataset, 1, 0, ratio=2, seed=4)
    other_seed.set_epoch(5)
    assert list(other_seed) != order


@pytest.mark.slow
def test_torchrun_two_ranks_on_cpu(bundled_root: Path, tmp_path: Path, exp_name: str) -> None:
    opt = tiny_options(bundled_root, exp_name, **{"train:total_iter": 4, "val:val_freq": 100})
    opt_file = write_options(tmp_path / "o.yml", opt)
    log = run_torchrun(opt_file, cwd=tmp_path)
    assert "all 2 ranks hold identical weights: student" in log
    assert (REPO / "experiments" / exp_name / "models/net_g_latest.pth").is_file()


def _fails_before_training(opt_file: Path, root: Path, match: str) -> None:
    with pytest.raises(Exception, match=match):
        run_training(parse_args(["-opt", str(opt_file)]), root=root)
    assert not list((root / "experiments").glob("*/models/*.pth"))


def test_missing_dataset_folder(bundled_root: Path, tmp_path: Path) -> None:
    opt = tiny_options(bundled_root, "bad", **{"datasets:train:dataroot_lq": str(tmp_path / "nope")})
    _fails_before_training(
        write_options(tmp_path / "o.yml", opt), tmp_path, r"datasets:train:dataroot_lq: folder .*nope"
    )


def test_unknown_type(bundled_root: Path, tmp_path: Path) -> None:
    opt = tiny_options(bundled_root, "bad")
    opt["network_g"]["type"] = "SRVGGNetCompactt"
    _fails_before_training(
        write_options(tmp_path / "o.yml", opt), tmp_path, "network_g: unknown type 'SRVGGNetCompactt'"
    )


def test_misspelt_argument(bundled_root: Path, tmp_path: Path) -> None:
    opt = tiny_options(bundled_root, "bad")
    opt["network_g"]["num_feats"] = opt["network_g"].pop("num_feat")
    _fails_before_training(write_options(tmp_path / "o.yml", opt), tmp_path, "no argument 'num_feats'.*'num_feat'")
    opt = tiny_options(bundled_root, "bad")
    opt["train"]["pixel_opt"]["loss_weigth"] = 1.0
    _fails_before_training(write_options(tmp_path / "o.yml", opt), tmp_path, "train:pixel_opt: L1Loss has no argument")


def test_undecodable_image(bundled_root: Path, tmp_path: Path) -> None:
    gt, lq = tmp_path / "gt", tmp_path / "lq"
    shutil.copytree(bundled_root / "val/HR", gt)
    shutil.copytree(bundled_root / "val/LR_bicubic/X4", lq)
    (lq / "coffee.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    opt = tiny_options(
        bundled_root, "bad", **{"datasets:train:dataroot_gt": str(gt), "datasets:train:dataroot_lq": str(lq)}
    )
    _fails_before_training(write_options(tmp_path / "o.yml", opt), tmp_path, "image .*coffee.png' cannot be decoded")


def test_tiled_validation_gives_the_whole_image_numbers(bundled_root: Path, tmp_path: Path) -> None:
    """``val.tile``: validation through overlapping tiles (for images too large for memory), same PSNR."""
    whole = tiny_options(bundled_root, "whole", **{"train:total_iter": 2})
    tiled = tiny_options(bundled_root, "tiled", **{"train:total_iter": 2, "val:tile": 24, "val:tile_overlap": 12})
    a = run_training(parse_args(["-opt", str(write_options(tmp_path / "a.yml", whole))]), root=tmp_path)["metrics"]
    b = run_training(parse_args(["-opt", str(write_options(tmp_path / "b.yml", tiled))]), root=tmp_path)["metrics"]
    assert abs(a["psnr"] - b["psnr"]) < 1e-4, (a, b)
    # without overlap the tiles lack context at their seams: different numbers, so the tiled path did run
    seams = tiny_options(bundled_root, "seams", **{"train:total_iter": 2, "val:tile": 24, "val:tile_overlap": 0})
    c = run_training(parse_args(["-opt", str(write_options(tmp_path / "c.yml", seams))]), root=tmp_path)["metrics"]
    assert abs(a["psnr"] - c["psnr"]) > 1e-4, (a, c)
