"""The paths a user walks (issue 28): checks before the slow work, HR-only SR, export of the run you trained."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from kit.cli.train import parse_args
from kit.options import load_options
from kit.run import run_training
from tests.helpers import REPO, distill_options, tiny_options, tiny_teacher_checkpoint, write_options


@pytest.fixture
def teacher(tmp_path):
    return tiny_teacher_checkpoint(tmp_path / "teacher.pth")


def test_a_missing_dataset_key_names_the_key_and_type_before_the_cache(bundled_root, tmp_path, teacher) -> None:
    opt = distill_options(bundled_root, "nolq", *teacher, **{"train:total_iter": 2})
    del opt["train"]["distill"]["mid"]
    opt["train"]["teacher_cache"] = {"root": str(tmp_path / "cache")}
    del opt["datasets"]["train"]["dataroot_lq"]
    opt_file = write_options(tmp_path / "o.yml", opt)
    with pytest.raises(
        ValueError, match=r"datasets:train: type CachedPairedImageDataset needs 'dataroot_lq'.*Degraded"
    ):
        run_training(parse_args(["-opt", str(opt_file)]), root=tmp_path)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "experiments").exists()


def test_a_pair_path_error_comes_before_the_pool_labels_anything(bundled_root, tmp_path, teacher) -> None:
    opt = distill_options(bundled_root, "badpair", *teacher, **{"train:total_iter": 2})
    opt["train"]["distill"]["mid"]["student"] = "body.77"
    folder = tmp_path / "pool"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
    opt["train"]["recipes"] = {"pool": {"sources": [], "folders": [str(folder)], "cache_root": str(tmp_path / "pc")}}
    opt_file = write_options(tmp_path / "o.yml", opt)
    with pytest.raises(ValueError, match=r"student path 'body.77' not found; closest"):
        run_training(parse_args(["-opt", str(opt_file)]), root=tmp_path)
    assert not (tmp_path / "pc").exists(), "the pool labelled (and wrote) its inputs before the pairs were checked"
    assert not (tmp_path / "experiments").exists()


def test_a_pair_path_error_comes_before_the_teacher_is_trained(bundled_root, tmp_path, teacher) -> None:
    """Stage 1 (the teacher trained from path.teacher_recipe) is slow: a pair's path is checked before it."""
    teacher_opt = tiny_options(bundled_root, "never_trained", **{"train:total_iter": 2})
    teacher_opt["network_g"] = dict(teacher[0])
    recipe = write_options(tmp_path / "teacher.yml", teacher_opt)
    missing = tmp_path / "experiments/never_trained/models/net_g_latest.pth"
    opt = distill_options(bundled_root, "badpair1", teacher[0], missing, **{"train:total_iter": 2})
    opt["path"]["teacher_recipe"] = str(recipe)
    opt["train"]["distill"]["mid"]["teacher"] = "body.9"
    opt_file = write_options(tmp_path / "o.yml", opt)
    with pytest.raises(ValueError, match=r"teacher path 'body.9' not found; closest"):
        run_training(parse_args(["-opt", str(opt_file)]), root=tmp_path)
    assert not (tmp_path / "experiments/never_trained").exists()


def test_the_hr_only_example_trains_ten_steps(bundled_root, tmp_path, teacher) -> None:
    """options/distill_hr_only.yml as shipped, on the bundled HR photos, with a tiny teacher and small batches."""
    opt = load_options(REPO / "options/distill_hr_only.yml")
    assert opt["datasets"]["train"]["type"] == "DegradedImageDataset" and "dataroot_lq" not in opt["datasets"]["train"]
    assert opt["datasets"]["train"]["degradations"] == [{"type": "BicubicDown", "scale": 4}]
    teacher_opt, ckpt = teacher
    opt["network_t"] = teacher_opt
    opt["path"] = {"pretrain_network_t": str(ckpt)}
    for phase in ("train", "val"):
        opt["datasets"][phase]["dataroot_gt"] = str(bundled_root / phase / "HR")
    opt["datasets"]["train"].update(gt_size=32, batch_size_per_gpu=2, dataset_enlarge_ratio=1, num_worker_per_gpu=0)
    opt.update(num_gpu=0)
    opt["network_g"].update(num_feat=8, num_block=1)
    opt["val"]["val_freq"] = 10
    opt_file = write_options(tmp_path / "hr.yml", opt)
    summary = run_training(parse_args(["-opt", str(opt_file), "--force_yml", "train:total_iter=10"]), root=tmp_path)
    assert summary["iters"] == 10 and summary["metrics"]["psnr"] > 15
    exp = Path(summary["experiments_root"])
    assert list((exp / "visualization").glob("compare_*_10.png")), "no comparison picture at the validation"
    references = [json.loads(line) for line in (exp / "history.jsonl").read_text().splitlines() if "reference" in line]
    assert {r["what"] for r in references} == {"bicubic (MATLAB imresize)", "teacher"}  # curves.png's dashed lines
    assert all(10 < r["psnr"] < 60 and 0 < r["ssim"] <= 1 for r in references if r["what"] == "teacher")


def _trained(bundled_root: Path, tmp_path: Path, name: str, num_feat: int) -> Path:
    opt = tiny_options(bundled_root, "base", **{"train:total_iter": 2})
    opt["network_g"]["num_feat"] = num_feat
    opt_file = write_options(tmp_path / "o.yml", opt)
    run_training(parse_args(["-opt", str(opt_file), "--force_yml", f"name={name}"]), root=REPO)
    return opt_file


def test_export_takes_the_run_force_yml_names(bundled_root, tmp_path, exp_name, capsys) -> None:
    """``export.py -opt F --force_yml name=X`` exports X's weights (not F's name), says which, and refuses a
    checkpoint trained with another network_g."""
    from kit.cli.export import main as export_main

    opt_file = _trained(bundled_root, tmp_path, exp_name, 8)
    exp = REPO / "experiments" / exp_name
    saved = yaml.safe_load(next(exp.glob("*.yml")).read_text())
    assert saved["name"] == exp_name  # the effective options, overrides applied
    out = tmp_path / "subs"
    common = ["--out-dir", str(out), "--latency-runs", "1"]
    assert export_main(["-opt", str(opt_file), "--force_yml", f"name={exp_name}", *common]) == 0
    printed = capsys.readouterr()
    assert f"(run {exp_name})" in printed.out
    assert "is below bicubic's" in printed.err  # two steps of a tiny student: the export says it has not learnt
    from safetensors.torch import load_file

    weights = torch.load(exp / "models/net_g_latest.pth", weights_only=True)["params_ema"]
    exported = load_file(str(out / exp_name / "weights.safetensors"))
    assert set(exported) == set(weights) and all(torch.equal(weights[k], exported[k]) for k in weights)
    assert export_main(["--experiment", exp_name, *common, "--force"]) == 0
    from kit.cli.eval import main as eval_main

    capsys.readouterr()
    assert eval_main(["-opt", str(opt_file), "--force-yml", f"name={exp_name}"]) == 0
    assert f"student: checkpoint {exp / 'models/net_g_latest.pth'} (run {exp_name})" in capsys.readouterr().out
    other = write_options(
        tmp_path / "wide.yml", copy.deepcopy(saved) | {"network_g": {**saved["network_g"], "num_feat": 16}}
    )
    ckpt = str(exp / "models/net_g_latest.pth")
    assert export_main(["-opt", str(other), "--checkpoint", ckpt, *common, "--name", "w"]) == 2
    assert f"belongs to run '{exp_name}', whose network_g" in capsys.readouterr().err


def test_the_pool_says_which_source_it_skips() -> None:
    """HR-only data: the pool's zoom_out source has no LR folder to read; a log line says it is skipped."""
    import logging

    from kit.distill.recipes import pool

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger("basicsr")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        assert pool._dataset_files(None, "zoom_out", "dataroot_lq") == []
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert any("source 'zoom_out' skipped: datasets:train has no dataroot_lq" in r.getMessage() for r in records)
