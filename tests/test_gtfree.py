"""Distillation without ground truth: LQ-only folders, the teacher's image as the only target, evaluation to the
teacher (training validation and kit-eval --against-teacher), the teacher cache serving an LQ-only folder."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from basicsr.utils import set_random_seed

from kit.cli.eval import main as kit_eval
from kit.cli.train import parse_args
from kit.data.fixed_degraded import REALISTIC_X4, write_degraded_folder
from kit.data.lq_folder import LQFolderDataset
from kit.images import list_images, read_image, write_image
from kit.metrics import psnr, quantize, ssim
from kit.registry import OptionsKeyError
from kit.run import run_training
from kit.runners import load_student
from kit.teachers import teachers_from_options
from tests.helpers import REPO, build, distill_options, tiny_teacher_checkpoint, write_options

SHARED_TEACHERS = REPO.parent / "shared" / "teachers"


@pytest.fixture(scope="module")
def lq_dirs(bundled_root, tmp_path_factory) -> dict[str, Path]:
    """LQ-only folders made once from the bundled photos (train: 13 images, val: 3), 32x32 LQ each at most."""
    root = tmp_path_factory.mktemp("gtfree_data")
    return {
        split: write_degraded_folder(bundled_root / split / "HR", root / split, REALISTIC_X4, 4, seed, 128)
        for split, seed in (("train", 0), ("val", 1))
    }


@pytest.fixture
def teacher(tmp_path):
    return tiny_teacher_checkpoint(tmp_path / "teacher.pth")


def _gtfree_options(bundled_root, lq_dirs, teacher, name="gtfree", **overrides) -> dict:
    """Tiny output-only DistillModel options on the LQ-only folders (no pixel_opt, no GT anywhere)."""
    opt = distill_options(bundled_root, name, *teacher, **overrides)
    opt["train"]["distill"] = {"output": {"loss": {"type": "L1Loss", "loss_weight": 1.0}}}
    del opt["train"]["pixel_opt"]
    opt["datasets"]["train"] = {
        "name": "lq_train",
        "type": "LQFolderDataset",
        "dataroot_lq": str(lq_dirs["train"]),
        "lq_size": 8,
        "use_hflip": True,
        "use_rot": True,
        "num_worker_per_gpu": 0,
        "batch_size_per_gpu": 2,
    }
    opt["datasets"]["val"] = {"name": "lq_val", "type": "LQFolderDataset", "dataroot_lq": str(lq_dirs["val"])}
    opt["val"]["metrics"]["ssim"] = {"type": "calculate_ssim", "crop_border": 4, "test_y_channel": True}
    return opt


# -------------------------------------------------------------------------------------------------- data
def test_fixed_degraded_folder_is_deterministic_and_never_overwritten(bundled_root, lq_dirs, tmp_path) -> None:
    files = list_images(lq_dirs["train"])
    assert [p.stem for p in files] == [p.stem for p in list_images(bundled_root / "train/HR")]
    assert all(read_image(p).shape[:2] <= (32, 32) for p in files)  # 128-px centre crops, x4 down
    again = write_degraded_folder(bundled_root / "train/HR", tmp_path / "again", REALISTIC_X4, 4, 0, 128)
    for a, b in zip(files, list_images(again), strict=True):
        assert np.array_equal(read_image(a), read_image(b))
    hr = read_image(bundled_root / "train/HR/astronaut.png")[188:316, 188:316]  # the centre 128 px (504 px photo)
    small = torch.nn.functional.interpolate(
        torch.from_numpy(hr.transpose(2, 0, 1).copy())[None], size=(32, 32), mode="area"
    )
    lq = torch.from_numpy(read_image(lq_dirs["train"] / "astronaut.png").transpose(2, 0, 1).copy())[None]
    assert 15 < float(psnr(quantize(lq), quantize(small), 0, False)[0]) < 40  # this crop of the photo, degraded
    with pytest.raises(ValueError, match="was made with other settings"):
        write_degraded_folder(bundled_root / "train/HR", tmp_path / "again", REALISTIC_X4, 4, 1, 128)
    assert not list(tmp_path.glob(".again.partial-*"))


def test_lq_folder_dataset_crops_the_teacher_image_where_it_crops_the_lq(lq_dirs, tmp_path) -> None:
    # A fake "teacher" image: the LQ upscaled x4 by pixel repetition, so a correctly placed and augmented
    # teacher crop is exactly the repeated LQ crop.
    folder = tmp_path / "teacher"
    folder.mkdir()
    for p in list_images(lq_dirs["train"]):
        lq = read_image(p)
        np.save(folder / f"{p.stem}.npy", np.repeat(np.repeat(lq, 4, 0), 4, 1).astype(np.float16))
    opt = {
        "name": "t",
        "type": "LQFolderDataset",
        "dataroot_lq": str(lq_dirs["train"]),
        "lq_size": 8,
        "phase": "train",
        "scale": 4,
        "teacher_outputs": {"t": str(folder)},
    }
    ds = LQFolderDataset(opt)
    assert len(ds) == 13
    for index in range(len(ds)):
        set_random_seed(index)
        sample = ds[index]
        assert "gt" not in sample and sample["lq"].shape == (3, 8, 8)
        expected = sample["lq"].repeat_interleave(4, 1).repeat_interleave(4, 2)
        torch.testing.assert_close(sample["teacher"]["t"], expected, atol=1e-3, rtol=0)  # float16 storage
    val = LQFolderDataset(
        {"name": "v", "type": "LQFolderDataset", "dataroot_lq": str(lq_dirs["val"]), "phase": "val", "scale": 4}
    )
    assert val[0]["lq"].shape[1:] == read_image(list_images(lq_dirs["val"])[0]).shape[:2]


def test_lq_folder_dataset_options_are_strict(lq_dirs) -> None:
    base = {"name": "t", "type": "LQFolderDataset", "dataroot_lq": str(lq_dirs["train"]), "phase": "train"}
    with pytest.raises(ValueError, match=r"no option 'lq_sise' \(did you mean 'lq_size'\?\)"):
        LQFolderDataset({**base, "lq_sise": 8})
    with pytest.raises(ValueError, match="no option 'dataroot_gt'.*drop dataroot_gt"):
        LQFolderDataset({**base, "lq_size": 8, "dataroot_gt": "x"})
    with pytest.raises(ValueError, match="needs lq_size"):
        LQFolderDataset(base)


# ------------------------------------------------------------------------------------------------- model
def test_options_that_need_a_gt_are_refused(bundled_root, lq_dirs, teacher, tmp_path) -> None:
    opt = _gtfree_options(bundled_root, lq_dirs, teacher)
    with pytest.raises(OptionsKeyError, match="no ground truth.*remove pixel_opt"):
        build({**opt, "train": {**opt["train"], "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0}}}, tmp_path)
    with pytest.raises(OptionsKeyError, match="recipes:mix blends the GT"):
        build({**opt, "train": {**opt["train"], "recipes": {"mix": {"start": 0.0, "end": 1.0}}}}, tmp_path)
    with pytest.raises(OptionsKeyError, match="hr_crop crops the GT; use variants: \\[zoom_out\\]"):
        build({**opt, "train": {**opt["train"], "recipes": {"upcycle": {"variants": ["hr_crop"]}}}}, tmp_path)
    scratch = copy.deepcopy(opt)
    scratch.update(model_type="KitSRModel")
    scratch["train"]["pixel_opt"] = {"type": "L1Loss", "loss_weight": 1.0}
    with pytest.raises(ValueError, match="KitSRModel trains against the GT, but datasets:train has none"):
        build(scratch, tmp_path)


def test_a_step_without_gt_learns_the_teacher_image(bundled_root, lq_dirs, teacher, tmp_path) -> None:
    model = build(_gtfree_options(bundled_root, lq_dirs, teacher), tmp_path)
    lq = torch.rand(2, 3, 8, 8)
    model.feed_data({"lq": lq})
    _, losses = model.compute_losses(1)
    with torch.no_grad():
        expected = torch.nn.functional.l1_loss(model.net_g(lq), model.teachers["teacher"](lq))
    assert list(losses) == ["l_out"]
    torch.testing.assert_close(losses["l_out"], expected)
    model.optimize_parameters(1)
    assert np.isfinite(model.log_dict["l_total"])


def test_gt_free_training_validates_against_the_teacher(bundled_root, lq_dirs, teacher, tmp_path) -> None:
    opt = _gtfree_options(bundled_root, lq_dirs, teacher, "gtfree_train")
    summary = run_training(parse_args(["-opt", str(write_options(tmp_path / "g.yml", opt))]), root=tmp_path)
    assert set(summary["metrics"]) == {"psnr_to_teacher", "ssim_to_teacher"}  # named so; no GT metric
    # Independently: the saved student (EMA) against the teacher's image on each val LQ, as 8-bit images.
    student, _ = load_student(opt, tmp_path / "experiments/gtfree_train/models/net_g_latest.pth")
    (loaded,) = teachers_from_options(opt).values()
    values = []
    for p in list_images(lq_dirs["val"]):
        x = torch.from_numpy(read_image(p).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            s, t = quantize(student(x)), quantize(loaded.net(x))
        values.append((float(psnr(s, t, 4, True)[0]), float(ssim(s, t, 4, True)[0])))
    assert summary["metrics"]["psnr_to_teacher"] == pytest.approx(np.mean([v[0] for v in values]), abs=1e-6)
    assert summary["metrics"]["ssim_to_teacher"] == pytest.approx(np.mean([v[1] for v in values]), abs=1e-6)
    history = (tmp_path / "experiments/gtfree_train/history.jsonl").read_text()
    assert '"psnr_to_teacher"' in history and '"l_pix"' not in history


def test_teacher_cache_serves_the_lq_folder(bundled_root, lq_dirs, teacher, tmp_path) -> None:
    opt = _gtfree_options(bundled_root, lq_dirs, teacher, "gtfree_cache", **{"train:total_iter": 4})
    opt["train"]["teacher_cache"] = {"root": str(tmp_path / "cache"), "tile": None}
    summary = run_training(parse_args(["-opt", str(write_options(tmp_path / "c.yml", opt))]), root=tmp_path)
    (folder,) = (tmp_path / "cache").iterdir()
    files = sorted((folder / "teacher").glob("*.npy"))
    assert [f.stem for f in files] == [p.stem for p in list_images(lq_dirs["train"])]
    (loaded,) = teachers_from_options(opt).values()
    x = torch.from_numpy(read_image(lq_dirs["train"] / "astronaut.png").transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        whole = loaded.net(x)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(np.load(folder / "teacher/astronaut.npy").astype(np.float32), whole, atol=2e-3)
    assert summary["iters"] == 4 and "psnr_to_teacher" in summary["metrics"]
    # The model reads the batch's teacher images: no teacher forward in a training step.
    model = build(opt, tmp_path)
    forwards = []
    model.teachers["teacher"].register_forward_hook(lambda *a: forwards.append(1))
    ds = LQFolderDataset(
        {
            **opt["datasets"]["train"],
            "phase": "train",
            "scale": 4,
            "teacher_outputs": {"teacher": str(folder / "teacher")},
        }
    )
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    model.feed_data(batch)
    _, losses = model.compute_losses(1)
    assert forwards == [] and list(losses) == ["l_out"]


# -------------------------------------------------------------------------------------------------- eval
def test_kit_eval_against_the_teacher_reports_both_references(bundled_root, lq_dirs, teacher, tmp_path, capsys):
    opt = _gtfree_options(bundled_root, lq_dirs, teacher)
    opt_path = write_options(tmp_path / "e.yml", opt)
    from basicsr.archs import build_network

    torch.manual_seed(0)  # a random student: the numbers are checked, not its quality
    net = build_network(dict(opt["network_g"]))
    ckpt = tmp_path / "student.pth"
    torch.save({"params": net.state_dict()}, ckpt)
    base = ["-opt", str(opt_path), "--checkpoint", str(ckpt), "--bicubic"]

    # 1. LQ only (no GT): every model to the teacher.
    out = tmp_path / "lq_only.json"
    assert kit_eval([*base, "--lq", str(lq_dirs["val"]), "--against-teacher", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "reference: the teacher's output (PSNR/SSIM of each model TO teacher)" in printed
    assert "reference: the ground truth" not in printed
    data = json.loads(out.read_text())
    assert data["references"] == ["teacher"] and set(data["means"]) == {"student", "bicubic"}

    # Independent: student and bicubic PSNR to the teacher's 8-bit image.
    (loaded,) = teachers_from_options(opt).values()
    from kit.runners import BicubicRunner

    bicubic, expected = BicubicRunner(4), {"student": [], "bicubic": []}
    teacher_dir = tmp_path / "teacher_images"
    for p in list_images(lq_dirs["val"]):
        x = torch.from_numpy(read_image(p).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            t = loaded.net(x).clamp(0, 1)
            expected["student"].append(float(psnr(quantize(net.eval()(x)), quantize(t), 4, True)[0]))
        expected["bicubic"].append(float(psnr(quantize(bicubic(x)), quantize(t), 4, True)[0]))
        write_image(teacher_dir / f"{p.stem}.png", t[0].permute(1, 2, 0).numpy())
    for model, values in expected.items():
        assert data["means"][model]["psnr"] == pytest.approx(np.mean(values), abs=1e-6)

    # 2. Precomputed teacher images give the same numbers without running the teacher.
    out2 = tmp_path / "from_folder.json"
    assert (
        kit_eval([*base, "--lq", str(lq_dirs["val"]), "--teacher-images", str(teacher_dir), "--json", str(out2)]) == 0
    )
    capsys.readouterr()
    from_folder = json.loads(out2.read_text())["means"]
    for model, means in data["means"].items():
        assert from_folder[model] == pytest.approx(means, abs=1e-9)

    # 3. With a GT: both references, each table named.
    paired_lq = tmp_path / "paired_lq"
    for p in list_images(bundled_root / "val/LR_bicubic/X4"):
        write_image(paired_lq / p.name, read_image(p))
    out3 = tmp_path / "both.json"
    argv = [*base, "--lq", str(paired_lq), "--gt", str(bundled_root / "val/HR"), "--against-teacher"]
    assert kit_eval([*argv, "--json", str(out3), "--compare", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert printed.index("reference: the ground truth") < printed.index("reference: the teacher's output")
    both = json.loads(out3.read_text())
    assert both["references"] == ["GT", "teacher"]
    assert set(both["means_by_reference"]["GT"]) == {"student", "teacher", "bicubic"}
    assert set(both["means_by_reference"]["teacher"]) == {"student", "bicubic"}
    assert both["means_by_reference"]["GT"]["bicubic"] != both["means_by_reference"]["teacher"]["bicubic"]
    assert len(list((tmp_path / "cmp").glob("*.png"))) == 3

    # Bad input: one clear message each.
    assert kit_eval([*base, "--lq", str(lq_dirs["val"])]) == 2
    assert "--lq needs --gt (the ground truths), or --against-teacher" in capsys.readouterr().err
    (teacher_dir / "chelsea.png").unlink()
    assert kit_eval([*base, "--lq", str(lq_dirs["val"]), "--teacher-images", str(teacher_dir)]) == 2
    assert "has no teacher image for 1 input(s): chelsea" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ real teacher (shared)
@pytest.mark.skipif(
    not (SHARED_TEACHERS / "RealESRGAN_x4plus.pth").is_file(),
    reason="../shared/teachers/RealESRGAN_x4plus.pth is absent (a benchmark input, not part of the project)",
)
def test_real_esrgan_loads_with_auto_teacher_and_distils_one_step(bundled_root, lq_dirs, tmp_path) -> None:
    ckpt = SHARED_TEACHERS / "RealESRGAN_x4plus.pth"
    assert list(torch.load(ckpt, map_location="cpu", weights_only=True)) == ["params_ema"]
    opt = _gtfree_options(bundled_root, lq_dirs, tiny_teacher_checkpoint(tmp_path / "tiny.pth"))
    opt["network_t"] = {"type": "AutoTeacher"}
    opt["path"].update(pretrain_network_t=str(ckpt), param_key_t="params_ema")
    model = build(opt, tmp_path)
    (teacher,) = model.teachers.values()
    assert sum(p.numel() for p in teacher.parameters()) == 16_697_987  # RRDBNet 64 feat, 23 blocks
    lq = torch.rand(1, 3, 12, 12)
    model.feed_data({"lq": lq})
    model.optimize_parameters(1)
    assert np.isfinite(model.log_dict["l_out"]) and model.log_dict["l_out"] > 0
