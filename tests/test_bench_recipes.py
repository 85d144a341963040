"""The recipes benchmark runs end to end (tiny setting) and writes its table, JSON and plot."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import json

import pytest

from bench import recipes as bench
from bench import recipes_real as real
from tests.helpers import REPO, use_tiny_pool


@pytest.mark.slow
def test_bench_recipes_tiny(bundled_root, tmp_path) -> None:
    out = bench.main(
        ["--setting", "tiny", "--recipes", "scratch", "mix", "fitnets_balanced", "--results", str(tmp_path)]
    )
    assert [r["recipe"] for r in out["runs"]] == ["scratch", "mix", "fitnets_balanced"]
    table = (tmp_path / "recipes_tiny.md").read_text()
    assert "| mix |" in table and "Δ vs scratch" in table
    runs = json.loads((tmp_path / "recipes_tiny.json").read_text())["runs"]
    assert all(5 < r["psnr"] < 40 for r in runs)
    assert (tmp_path / "recipes_tiny.png").stat().st_size > 1000


@pytest.mark.slow
def test_gpu_setting_options_build_for_every_recipe(tmp_path) -> None:
    """The GPU-sized setting cannot run here; its options must still wire (paths, connectors, teachers)."""
    import torch
    from basicsr.archs import build_network

    from tests.helpers import build

    cfg = bench.SETTINGS["gpu"]
    teacher_net = dict(cfg["teacher"])
    ckpt = tmp_path / "t.pth"
    torch.save({"params_ema": build_network(dict(teacher_net)).state_dict()}, ckpt)
    for recipe in bench.RECIPES:
        opt = bench.run_options("gpu", cfg, recipe, 0, teacher_net, [ckpt, ckpt])
        lr = 2 * bench.LR if recipe.endswith("_lr2") else bench.LR  # the benchmark's own, not distill.yml's
        assert float(opt["train"]["optim_g"]["lr"]) == pytest.approx(lr), recipe
        use_tiny_pool(opt, tmp_path)  # a tiny pool folder instead of the bundled photos (labelled here, not cached)
        opt["num_gpu"] = 0
        assert opt["train"]["amp"] == "bf16"  # kept: bf16 autocast also runs on the CPU
        opt["datasets"]["train"]["gt_size"] = 64  # a small dry forward
        model = build(opt, tmp_path)
        assert opt["network_g"]["num_feat"] == 52 and model.opt["train"]["total_iter"] == 3000, recipe
        gt = torch.rand(1, 3, 32, 32)  # one bf16 step of every recipe (connectors, upcycling, mixing)
        model.feed_data({"lq": gt[..., ::4, ::4].contiguous(), "gt": gt})
        model.optimize_parameters(1)
        assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values()), recipe


@pytest.mark.slow
def test_real_setting_options_build_and_step_for_every_recipe(tmp_path) -> None:
    """The real-teacher setting's options wire for every recipe and student (a random SPAN stands in)."""
    import torch

    from tests.helpers import build
    from tests.test_shipped_options import random_span_checkpoint

    with pytest.raises(SystemExit, match="does not exist; pass --teacher"):
        real.check_teacher(tmp_path / "missing.safetensors")
    ckpt = random_span_checkpoint(tmp_path / "span.safetensors")
    first = next(iter(real.STUDENTS))
    for student in real.STUDENTS:
        for recipe, (_, distill, _, cached) in real.RECIPES.items():
            opt = real.run_options(student, 600, recipe, 0, ckpt)
            assert opt["train"]["total_iter"] == 600
            assert opt["network_g"]["num_feat"] == real.STUDENTS[student]["num_feat"]
            assert bool(opt["train"].get("teacher_cache")) == cached, recipe
            if recipe.startswith("scratch"):
                assert opt["model_type"] == "KitSRModel" and "network_t" not in opt
                continue
            pairs = {k: v for k, v in opt["train"]["distill"].items() if k != "output"}
            if any(entry[0] == "all" for entry in distill.values() if isinstance(entry, tuple)):
                # one pair per student block, the last on conv_cat, the others on the teacher's blocks in order
                blocks = real.STUDENTS[student]["num_block"]
                assert [p["student"] for p in pairs.values()] == [f"body.{i}" for i in range(blocks)]
                at = [p["teacher"] for p in pairs.values()]
                assert at[-1] == "conv_cat" and at[:-1] == sorted(set(at[:-1]), key=lambda t: int(t.split("_")[1]))
            if student != first and not pairs:
                continue  # the other student differs only in the pairs' layers: built and stepped where it has pairs
            assert opt["network_t"] == {"type": "AutoTeacher"} and opt["path"]["pretrain_network_t"] == str(ckpt)
            opt["train"].pop("teacher_cache", None)  # the cache has its own tests
            use_tiny_pool(opt, tmp_path)
            opt["num_gpu"] = 0
            opt["datasets"]["train"]["gt_size"] = 32
            model = build(opt, tmp_path)  # the dry forward checks every pair's shapes (conv_cat, block_3)
            gt = torch.rand(1, 3, 32, 32)
            model.feed_data({"lq": gt[..., ::4, ::4].contiguous(), "gt": gt})
            model.optimize_parameters(1)
            assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values()), (student, recipe)


def test_distill_ships_cwd_all_as_the_cpu_setting_measured_it(tmp_path) -> None:
    """options/distill.yml's pairs, recipes and lr are the cpu setting's cwd_all_lr2 (EDSR teacher), as measured."""
    from kit.options import load_options

    shipped = load_options(REPO / "options/distill.yml")
    snapshots = [tmp_path / "mid.pth", tmp_path / "final.pth"]
    measured = bench.run_options("cpu", bench.SETTINGS["cpu"], "cwd_all_lr2", 0, shipped["network_t"], snapshots)
    assert list(shipped["train"]["distill"].values()) == list(measured["train"]["distill"].values())
    assert [e["teacher"] for e in measured["train"]["distill"].values() if "teacher" in e] == [
        "body.1",
        "body.3",
        "body.5",
        "body.7",
    ]
    assert shipped["train"]["recipes"] == measured["train"]["recipes"]
    assert shipped["network_g"] == measured["network_g"]
    assert float(shipped["train"]["optim_g"]["lr"]) == measured["train"]["optim_g"]["lr"] == 2e-3
    scratch = bench.run_options("cpu", bench.SETTINGS["cpu"], "scratch", 0, shipped["network_t"], snapshots)
    student = load_options(REPO / "options/student.yml")  # the benchmark's scratch is options/student.yml's
    assert scratch["train"]["optim_g"]["lr"] == float(student["train"]["optim_g"]["lr"]) == 1e-3


def test_distill_pretrained_ships_the_recipe_measured_best_with_span(tmp_path) -> None:
    """options/distill_pretrained.yml's pairs, recipes and lr are the real setting's cwd_all_pool at lr 2e-3.

    The file's pairs are automatic (train.distill.auto): on a SPAN x4 ch48 they are the benchmark's four.
    """
    import torch
    from spandrel.architectures.SPAN import SPAN

    from kit.distill.pairs.auto import automatic_pairs, dry_input_size, parse_auto
    from kit.options import load_options
    from kit.registry import build_network

    measured = real.run_options("rlfn32x4", 600, "cwd_all_pool", 0, tmp_path / "span.safetensors", lr=2e-3)
    shipped = load_options(REPO / "options/distill_pretrained.yml")
    distill = dict(shipped["train"]["distill"])
    spec = parse_auto(distill.pop("auto"), ["teacher"])
    side = dry_input_size(shipped)
    student, teacher = build_network(shipped["network_g"], "g"), SPAN(num_in_ch=3, num_out_ch=3, feature_channels=48)
    pairs, _, _ = automatic_pairs(spec, student, teacher, torch.rand(1, 3, side, side))
    assert [*distill.values(), *pairs.values()] == list(measured["train"]["distill"].values())
    measured["train"]["recipes"]["pool"].pop("cache_root")  # the benchmark's own folder; the file keeps the default
    assert shipped["train"]["recipes"] == measured["train"]["recipes"]
    assert float(shipped["train"]["optim_g"]["lr"]) == measured["train"]["optim_g"]["lr"] == 2e-3
    assert shipped["network_g"] == measured["network_g"]
    assert shipped["train"]["pixel_opt"] == measured["train"]["pixel_opt"]


def test_shipped_only_remeasures_the_named_files_and_keeps_the_other_rows(tmp_path, monkeypatch) -> None:
    """``--shipped distill.yml`` trains only that file and its twin; the other rows of shipped.json stay."""
    trained: list[str] = []

    def fake_training(flags, console=True):  # the PSNR says which file ran (no training here)
        trained.append(flags.opt.rsplit("/", 1)[-1])
        return {"metrics": {"psnr": 31.0 if "distill" in flags.opt else 30.0}}

    monkeypatch.setattr(bench, "run_training", fake_training)
    old = {"twin": "student_repsr.yml", "task": "x4 SR", "metric": "PSNR-Y, border 4", "seeds": [0, 1]}
    old |= {"scratch": [29.9, 29.9], "distill": [29.95, 29.95], "wall_s": 100.0}
    (tmp_path / "shipped.json").write_text(json.dumps({"rows": {"distill_repsr.yml": old}}))
    table = bench.shipped([0, 1], tmp_path, ["distill.yml"])
    assert trained == ["student.yml", "student.yml", "distill.yml", "distill.yml"]
    rows = json.loads((tmp_path / "shipped.json").read_text())["rows"]
    assert rows["distill_repsr.yml"] == old
    assert rows["distill.yml"]["scratch"] == [30.0, 30.0] and rows["distill.yml"]["distill"] == [31.0, 31.0]
    assert "| `distill.yml` | x4 SR | PSNR-Y, border 4 | 0,1 | 30.000 ± 0.000 | 31.000 ± 0.000 | +1.000 |" in table
    assert "`distill_repsr.yml`" in (tmp_path / "shipped.md").read_text()
    with pytest.raises(SystemExit, match="not shipped; choose from"):
        bench.shipped([0], tmp_path, ["distil.yml"])
