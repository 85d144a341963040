"""The recipes benchmark runs end to end (tiny setting) and writes its table, JSON and plot."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import importlib.util
import json

import pytest

from tests.helpers import REPO


@pytest.mark.slow
def test_bench_recipes_tiny(bundled_root, tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("bench_recipes", REPO / "bench/bench_recipes.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
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

    spec = importlib.util.spec_from_file_location("bench_recipes", REPO / "bench/bench_recipes.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = bench.SETTINGS["gpu"]
    teacher_net = dict(cfg["teacher"])
    ckpt = tmp_path / "t.pth"
    torch.save({"params_ema": build_network(dict(teacher_net)).state_dict()}, ckpt)
    for recipe in bench.RECIPES:
        opt = bench.run_options("gpu", cfg, recipe, 0, teacher_net, [ckpt, ckpt])
        opt["num_gpu"] = 0
        assert opt["train"]["amp"] == "bf16"  # kept: bf16 autocast also runs on the CPU
        opt["datasets"]["train"]["gt_size"] = 64  # a small dry forward
        model = build(opt, tmp_path)
        assert opt["network_g"]["num_feat"] == 52 and model.opt["train"]["total_iter"] == 3000, recipe
        gt = torch.rand(1, 3, 32, 32)  # one bf16 step of every recipe (connectors, upcycling, mixing)
        model.feed_data({"lq": gt[..., ::4, ::4].contiguous(), "gt": gt})
        model.optimize_parameters(1)
        assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values()), recipe
