"""train.teacher_cache: teacher images computed once, cropped with the GT, keyed by checkpoint, never half-built."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from basicsr.archs import build_network

from kit.cli.train import parse_args
from kit.data.cached_dataset import CachedPairedImageDataset
from kit.images import read_image
from kit.options import finalize
from kit.registry import OptionsKeyError
from kit.run import run_training
from kit.teachers import cache as tc
from tests.helpers import (
    build,
    distill_options,
    same_seed_samples,
    tiny_options,
    tiny_teacher_checkpoint,
    write_options,
)


@pytest.fixture
def teacher(tmp_path):
    return tiny_teacher_checkpoint(tmp_path / "teacher.pth")


def _cache_options(bundled_root, tmp_path, teacher, name="c", **cache) -> dict:
    """Output-only distillation with the cache under ``tmp_path/cache``."""
    opt = distill_options(bundled_root, name, *teacher, **{"train:total_iter": 4})
    del opt["train"]["distill"]["mid"]
    opt["train"]["teacher_cache"] = {"root": str(tmp_path / "cache"), **cache}
    return opt


def _finalized(opt: dict, root: Path) -> dict:
    import copy

    return finalize(copy.deepcopy(opt), is_train=True, root=root)


def _lq_paths(opt: dict) -> list[str]:
    return [p["lq_path"] for p in CachedPairedImageDataset(opt["datasets"]["train"]).paths]


# ------------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"tile": 8}, "tile must be an integer >= 16 or null"),
        ({"tile": 64, "overlap": 64}, "overlap must be an integer in [0, tile)"),
        ({"tiles": 64}, "unknown key(s) ['tiles']"),
        ("yes", "must be true or a mapping"),
    ],
)
def test_bad_options_say_what_to_change(value, message) -> None:
    with pytest.raises(OptionsKeyError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        tc.cache_options(value)


def test_defaults_and_off() -> None:
    assert tc.cache_options(True) == {"root": tc.DEFAULT_ROOT, "tile": 256, "overlap": 32}
    assert tc.cache_options(None) is None and tc.cache_options(False) is None
    assert tc.cache_options({"tile": None}) == {"root": tc.DEFAULT_ROOT, "tile": None, "overlap": 32}


def test_refused_with_feature_pairs(bundled_root, tmp_path, teacher) -> None:
    opt = distill_options(bundled_root, "p", *teacher)
    opt["train"]["teacher_cache"] = True
    with pytest.raises(OptionsKeyError, match=r"feature pair\(s\) \['mid'\].*remove teacher_cache or the pairs"):
        tc.resolve_cache(_finalized(opt, tmp_path))  # the training run's start-up check (kit.run.startup)


def test_refused_with_an_on_the_fly_degradation(bundled_root, tmp_path, teacher) -> None:
    opt = _cache_options(bundled_root, tmp_path, teacher)
    opt["datasets"]["train"]["type"] = "DegradedImageDataset"
    with pytest.raises(OptionsKeyError, match="needs datasets:train:type CachedPairedImageDataset"):
        tc.check_cache_usable(opt)
    opt["datasets"]["train"].update(type="CachedPairedImageDataset", io_backend={"type": "lmdb"})
    with pytest.raises(OptionsKeyError, match="reads the LQ image files, but datasets:train:io_backend is lmdb"):
        tc.check_cache_usable(opt)


# ---------------------------------------------------------------------------------------------- building
def test_cache_holds_the_teachers_whole_image_output(bundled_root, tmp_path, teacher) -> None:
    opt = _finalized(_cache_options(bundled_root, tmp_path, teacher, tile=None), tmp_path)
    paths = _lq_paths(opt)[:3]
    folder = tc.build_teacher_cache(opt, paths, tmp_path)
    net = build_network(dict(teacher[0])).eval()
    net.load_state_dict(torch.load(teacher[1], weights_only=True)["params_ema"])
    for lq_path in paths:
        lq = torch.from_numpy(read_image(lq_path).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            expected = net(lq)[0].permute(1, 2, 0).numpy()  # (sH, sW, 3) RGB
        cached = np.load(tc.cache_file(folder, "teacher", lq_path))
        assert cached.dtype == np.float16 and cached.shape == expected.shape
        np.testing.assert_allclose(cached.astype(np.float32), expected, atol=2e-3, rtol=1e-3)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["images"] == [Path(p).name for p in paths] and manifest["scale"] == 4


def test_tiled_cache_is_close_to_whole_image(bundled_root, tmp_path, teacher) -> None:
    opt = _finalized(_cache_options(bundled_root, tmp_path, teacher, tile=None), tmp_path)
    paths = _lq_paths(opt)[:1]
    whole = np.load(tc.cache_file(tc.build_teacher_cache(opt, paths, tmp_path), "teacher", paths[0]))
    opt["train"]["teacher_cache"].update(tile=48, overlap=24)
    tiled = np.load(tc.cache_file(tc.build_teacher_cache(opt, paths, tmp_path), "teacher", paths[0]))
    # EDSR with 2 blocks: receptive radius 6 LR pixels < the (24 - 8) // 2 = 8 pixels of discarded context
    np.testing.assert_allclose(tiled.astype(np.float32), whole.astype(np.float32), atol=2e-3)


def test_reused_when_unchanged_rebuilt_when_the_checkpoint_changes(bundled_root, tmp_path, teacher, monkeypatch):
    opt = _finalized(_cache_options(bundled_root, tmp_path, teacher), tmp_path)
    paths = _lq_paths(opt)[:2]
    first = tc.build_teacher_cache(opt, paths, tmp_path)

    def no_teacher(*args, **kwargs):
        raise AssertionError("a complete cache must be reused, not recomputed")

    with monkeypatch.context() as m:
        m.setattr("kit.teachers.load_teachers", no_teacher)
        assert tc.build_teacher_cache(opt, paths, tmp_path) == first

    state = torch.load(teacher[1], weights_only=True)
    state["params_ema"] = {k: v + 0.01 for k, v in state["params_ema"].items()}
    torch.save(state, teacher[1])  # same path, new weights
    second = tc.build_teacher_cache(opt, paths, tmp_path)
    assert second != first and (second / "manifest.json").is_file()
    a, b = (np.load(tc.cache_file(f, "teacher", paths[0])) for f in (first, second))
    assert not np.array_equal(a, b)


def test_an_interrupted_build_leaves_nothing(bundled_root, tmp_path, teacher, monkeypatch) -> None:
    opt = _finalized(_cache_options(bundled_root, tmp_path, teacher), tmp_path)
    paths = _lq_paths(opt)[:3]
    calls = []

    def fail_on_second(path, array):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        np.save(path, array)

    monkeypatch.setattr(tc.np, "save", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        tc.build_teacher_cache(opt, paths, tmp_path)
    assert list((tmp_path / "cache").iterdir()) == []


# ----------------------------------------------------------------------------------------------- dataset
def _write_gt_as_teacher(dataset: CachedPairedImageDataset, folder: Path) -> None:
    """A 'teacher' whose image is the GT itself (RGB float16): then every cached crop must equal the GT crop."""
    folder.mkdir(parents=True)
    for entry in dataset.paths:
        gt = read_image(entry["gt_path"])
        np.save(folder / f"{Path(entry['lq_path']).stem}.npy", gt.astype(np.float16))


def test_dataset_crops_and_augments_the_teacher_image_with_the_gt(bundled_root, tmp_path) -> None:
    opt = _finalized(tiny_options(bundled_root, "d"), tmp_path)
    dataset_opt = dict(opt["datasets"]["train"], gt_size=48)
    plain = CachedPairedImageDataset(dataset_opt)
    _write_gt_as_teacher(plain, tmp_path / "gt_teacher")
    cached = CachedPairedImageDataset(dict(dataset_opt, teacher_outputs={"a": str(tmp_path / "gt_teacher")}))
    # the same crop and augmentation as without the cache (the random stream is untouched) ...
    for _, got, _ in same_seed_samples(cached, plain, range(len(plain))):
        # ... and the teacher image lies exactly over the GT crop (float16 rounding only)
        assert got["teacher"]["a"].shape == got["gt"].shape
        torch.testing.assert_close(got["teacher"]["a"], got["gt"], atol=5e-4, rtol=0)


def test_dataset_names_a_missing_teacher_file(bundled_root, tmp_path) -> None:
    opt = _finalized(tiny_options(bundled_root, "d"), tmp_path)
    (tmp_path / "empty").mkdir()
    ds = CachedPairedImageDataset(dict(opt["datasets"]["train"], teacher_outputs={"a": str(tmp_path / "empty")}))
    with pytest.raises(FileNotFoundError, match="teacher output .* is missing; delete the cache folder"):
        ds[0]


# ------------------------------------------------------------------------------------------------- model
def test_model_uses_the_batch_teacher_images_without_a_teacher_forward(bundled_root, tmp_path, teacher) -> None:
    opt = _cache_options(bundled_root, tmp_path, teacher)
    opt["train"]["pixel_opt"] = {"type": "L1Loss", "loss_weight": 1.0}
    model = build(opt, tmp_path)
    forwards = []
    model.teachers["teacher"].register_forward_hook(lambda *a: forwards.append(1))
    torch.manual_seed(0)
    lq, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    model.feed_data({"lq": lq, "gt": gt, "teacher": {"teacher": gt.clone()}})  # a 'teacher' equal to the GT
    _, losses = model.compute_losses(1)
    assert forwards == []
    torch.testing.assert_close(losses["l_out"], losses["l_pix"])  # same L1 against the same target
    model.feed_data({"lq": lq, "gt": gt})  # no cached images (validation batches): the teacher runs
    model.compute_losses(1)
    assert forwards == [1]
    with pytest.raises(ValueError, match=r"cached images of teachers \['other'\].*declare \['teacher'\]"):
        model.feed_data({"lq": lq, "gt": gt, "teacher": {"other": gt}})


def test_training_builds_the_cache_once_and_reuses_it(bundled_root, tmp_path, teacher) -> None:
    opt = _cache_options(bundled_root, tmp_path, teacher, name="first")
    summary = run_training(parse_args(["-opt", str(write_options(tmp_path / "a.yml", opt))]), root=tmp_path)
    (folder,) = (tmp_path / "cache").iterdir()
    assert len(list((folder / "teacher").glob("*.npy"))) == 13  # every bundled training photo
    assert summary["iters"] == 4 and summary["metrics"]["psnr"] > 5
    history = (tmp_path / "experiments/first/history.jsonl").read_text()
    assert '"l_out"' in history and '"l_pix"' in history
    opt["name"] = "second"
    run_training(parse_args(["-opt", str(write_options(tmp_path / "b.yml", opt))]), root=tmp_path)
    log = next((tmp_path / "experiments/second").glob("train_*.log")).read_text()
    assert f"Teacher cache: reusing {folder}" in log
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]


def test_two_teachers_each_get_their_images_and_the_target_is_their_weighted_mean(bundled_root, tmp_path) -> None:
    net_a, ckpt_a = tiny_teacher_checkpoint(tmp_path / "a.pth", num_feat=16)
    net_b, ckpt_b = tiny_teacher_checkpoint(tmp_path / "b.pth", num_feat=12)
    opt = _cache_options(bundled_root, tmp_path, (net_a, ckpt_a), name="two")
    del opt["network_t"], opt["path"]["pretrain_network_t"]
    opt["teachers"] = {
        "a": {"network": net_a, "checkpoint": str(ckpt_a), "weight": 3.0},
        "b": {"network": net_b, "checkpoint": str(ckpt_b), "weight": 1.0},
    }
    fin = _finalized(opt, tmp_path)
    paths = _lq_paths(fin)[:2]
    folder = tc.build_teacher_cache(fin, paths, tmp_path)
    a, b = (np.load(tc.cache_file(folder, name, paths[0])).astype(np.float32) for name in ("a", "b"))
    assert a.shape == b.shape and not np.allclose(a, b)  # two different teachers, one folder each

    model = build(opt, tmp_path)
    gt = torch.rand(1, 3, 32, 32)
    ta, tb = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    model.feed_data({"lq": torch.rand(1, 3, 8, 8), "gt": gt, "teacher": {"b": tb, "a": ta}})
    _, losses = model.compute_losses(1)
    with torch.no_grad():
        expected = torch.nn.functional.l1_loss(model.output.float(), 0.75 * ta + 0.25 * tb)
    torch.testing.assert_close(losses["l_out"], expected)


def test_upcycling_still_labels_its_extra_inputs_with_the_live_teacher(bundled_root, tmp_path, teacher) -> None:
    opt = _cache_options(bundled_root, tmp_path, teacher)
    opt["train"]["recipes"] = {"upcycle": {"weight": 1.0, "variants": ["zoom_out"], "flips": False}}
    model = build(opt, tmp_path)
    forwards = []
    model.teachers["teacher"].register_forward_hook(lambda module, args, out: forwards.append(args[0].shape))
    gt = torch.rand(2, 3, 32, 32)
    model.feed_data({"lq": torch.rand(2, 3, 8, 8), "gt": gt, "teacher": {"teacher": gt}})
    _, losses = model.compute_losses(1)
    assert len(forwards) == 1 and forwards[0] != (2, 3, 8, 8)  # the upcycled input only, never the batch
    assert losses["l_upcycle"] > 0


@pytest.mark.slow
def test_torchrun_rank0_builds_the_other_rank_reuses(bundled_root, tmp_path, teacher, exp_name) -> None:
    from tests.helpers import REPO, run_torchrun

    opt = _cache_options(bundled_root, tmp_path, teacher, name=exp_name)
    opt["val"]["val_freq"] = 100
    log = run_torchrun(write_options(tmp_path / "o.yml", opt), cwd=tmp_path)
    (folder,) = (tmp_path / "cache").iterdir()  # one complete cache, no partial folder left
    assert (folder / "manifest.json").is_file()
    assert "all 2 ranks hold identical weights: student" in log
    assert (REPO / "experiments" / exp_name / "models/net_g_latest.pth").is_file()


def test_a_missing_teacher_checkpoint_is_named(bundled_root, tmp_path, teacher) -> None:
    opt = _cache_options(bundled_root, tmp_path, (teacher[0], tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match=r"teacher 'teacher' checkpoint '.*nope.pth' does not exist"):
        run_training(parse_args(["-opt", str(write_options(tmp_path / "o.yml", opt))]), root=tmp_path)
    assert not (tmp_path / "cache").exists()


def test_shipped_options_output_only_from_the_command_line(tmp_path) -> None:
    """``--force_yml train:distill:cwd_0=null … train:teacher_cache=true`` on options/distill.yml: a cached run."""
    from kit.options import REPO_ROOT, apply_override, load_options

    opt = load_options(REPO_ROOT / "options/distill.yml")
    opt["path"] = {}  # a random teacher of the declared architecture
    pairs = [name for name in opt["train"]["distill"] if name.startswith("cwd_")]
    assert pairs == ["cwd_0", "cwd_1", "cwd_2", "cwd_3"]  # the README's command switches off these four
    with pytest.raises(OptionsKeyError, match=r"feature pair\(s\) \['cwd_0', 'cwd_1', 'cwd_2', 'cwd_3'\]"):
        apply_override(opt, "train:teacher_cache=true")
        tc.check_cache_usable(opt)
    for name in pairs:
        apply_override(opt, f"train:distill:{name}=null")
    tc.check_cache_usable(opt)
    model = build(opt, tmp_path)
    assert model.pairs == [] and model.cri_out is not None


def test_build_logs_progress_with_eta(bundled_root, tmp_path, teacher, monkeypatch) -> None:
    import logging

    opt = _finalized(_cache_options(bundled_root, tmp_path, teacher), tmp_path)
    paths = _lq_paths(opt)[:3]
    monkeypatch.setattr(tc, "LOG_EVERY_S", -1.0)  # a line after every image
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("basicsr")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # as train.py sets it
    try:
        tc.build_teacher_cache(opt, paths, tmp_path)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [r.getMessage() for r in records if "ETA" in r.getMessage()]
    assert [line.split(",")[0] for line in lines] == ["Teacher cache: 1/3 images", "Teacher cache: 2/3 images"]


# ------------------------------------------------------------------------------------ resolved once (issue 12)
def test_lq_listing_before_the_dataset_equals_the_dataset_order(bundled_root, tmp_path, teacher) -> None:
    from kit.data.cached_dataset import paired_lq_paths

    opt = _finalized(_cache_options(bundled_root, tmp_path, teacher), tmp_path)
    assert paired_lq_paths(opt["datasets"]["train"]) == _lq_paths(opt)
    assert len(_lq_paths(opt)) == 13


def test_the_run_loads_the_teachers_once_for_the_cache_and_the_model(bundled_root, tmp_path, teacher, monkeypatch):
    from kit.teachers import multi

    calls = []
    real = multi.load_teacher_with_info
    monkeypatch.setattr(multi, "load_teacher_with_info", lambda *a, **k: calls.append(1) or real(*a, **k))
    opt = _cache_options(bundled_root, tmp_path, teacher, name="once")
    run_training(parse_args(["-opt", str(write_options(tmp_path / "a.yml", opt))]), root=tmp_path)
    assert calls == [1]  # one teacher, loaded once: the cache builder and the model share it
    log = next((tmp_path / "experiments/once").glob("train_*.log")).read_text()
    assert "Teacher cache: running 1 teacher(s) over 13 LQ images" in log
    assert "the training batches carry the teachers' images" in log


def test_loading_teachers_leaves_the_random_streams_alone(bundled_root, tmp_path, teacher) -> None:
    from kit.teachers import load_teachers_frozen_rng

    opt = _finalized(_cache_options(bundled_root, tmp_path, teacher), tmp_path)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    assert load_teachers_frozen_rng(opt)
    torch.testing.assert_close(torch.rand(4), expected, rtol=0, atol=0)
