"""``python -m bench prune`` (issue #24's controls): the four arms differ only in their start and their loss; the
summary's means, spreads and gaps to the goal; the report's rows; a missing input refused in one line."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import pytest

from bench import prune as bench
from kit.schema import check_options


def _args(tmp_path, *extra: str):
    flags = ["--data", str(tmp_path / "SunHays80"), "--steps", "8", "--batch", "4", "--lq-size", "16", *extra]
    return bench.build_parser().parse_args(flags)


def test_the_arms_share_data_steps_and_seed_and_differ_in_start_and_loss(tmp_path) -> None:
    args, pruned = _args(tmp_path), {"checkpoint": str(tmp_path / "span28.safetensors")}
    opts = {arm: bench.run_options(arm, 1, args, pruned) for arm in bench.ARMS}
    first = opts["scratch"]
    for arm, opt in opts.items():
        check_options(opt, arm)  # every key one the kit knows
        if "pool" not in arm:
            assert opt["datasets"] == first["datasets"], arm
        assert opt["manual_seed"] == 1 and opt["datasets"]["train"]["gt_size"] == 64, arm
        assert opt["train"]["total_iter"] == 8 and opt["network_g"] == first["network_g"], arm
        start, distil, _ = bench.ARMS[arm]
        distil = bool(distil)
        assert ("pretrain_network_g" in opt["path"]) == (start == "pruned"), arm
        assert (opt["model_type"] == "DistillModel") == distil and ("distill" in opt["train"]) == distil, arm
        online = arm == "pruned_cwd_pool"  # feature pairs: the teacher runs every step, no cached images
        assert ("teacher_cache" in opt["train"]) == (distil and not online) and ("network_t" in opt) == distil, arm
        crops = opt["datasets"]["train"]["batch_size_per_gpu"] + opt["train"].get("recipes", {}).get("pool", {}).get(
            "batch", 0
        )
        assert crops == 4, arm  # the pool arms take half their crops from the pool: as many a step as every arm
    assert opts["pruned_gt"]["train"]["optim_g"] == opts["pruned_kd"]["train"]["optim_g"]  # the fair control
    assert opts["scratch"]["train"]["optim_g"] == opts["scratch_kd"]["train"]["optim_g"]
    assert opts["pruned_kd"]["path"]["pretrain_network_g"] == pruned["checkpoint"]
    assert first["datasets"]["train"]["dataroot_lq"].endswith("SunHays80/LR_bicubic/X4")
    # the other recipes tried from the pruned start: each changes pruned_kd's loss in one way
    kd = opts["pruned_kd"]["train"]
    assert (
        "pixel_opt" not in opts["pruned_teacher"]["train"]
        and opts["pruned_teacher"]["train"]["distill"] == kd["distill"]
    )
    l2 = opts["pruned_kd_l2"]["train"]
    assert l2["pixel_opt"]["type"] == "MSELoss" and l2["distill"]["output"]["loss"]["type"] == "MSELoss"
    assert opts["pruned_pool"]["train"]["recipes"]["pool"]["sources"] == ["hr", "zoom_out"]
    cwd = opts["pruned_cwd_pool"]["train"]
    assert cwd["distill"]["auto"]["loss"]["type"] == "ChannelWiseDivergence" and "balance" in cwd["recipes"]
    assert bench.CONTROLS == ("scratch", "pruned_gt", "pruned_kd", "scratch_kd")  # the default grid: the issue's


def test_a_pruned_start_other_than_kit_prunes_defaults_is_named_apart(tmp_path) -> None:
    pruned = {"checkpoint": str(tmp_path / "span28.safetensors")}
    args = _args(tmp_path, "--calib-crops", "384", "--ridge", "0.001")
    assert bench.run_options("pruned_kd", 0, args, pruned)["name"] == "prune_pruned_kd_8_lq16_c384_r0.001_s0"
    assert bench.run_options("scratch", 0, args, pruned)["name"] == "prune_scratch_8_lq16_s0"  # no start
    defaults = _args(tmp_path)
    assert bench.run_options("pruned_kd", 0, defaults, pruned)["name"] == "prune_pruned_kd_8_lq16_s0"
    stored = {"arm": "pruned_kd", "steps": 8, "form": "trainable", "lq_size": 16}  # a run from before the flags
    assert bench._wanted(stored, defaults, 8) and not bench._wanted(stored, args, 8)
    fewer = bench.build_parser().parse_args(["--data", str(tmp_path / "SunHays40"), "--steps", "8", "--lq-size", "16"])
    assert bench.run_options("scratch", 0, fewer, pruned)["name"] == "prune_scratch_8_lq16_SunHays40_s0"  # apart
    assert not bench._wanted(stored, fewer, 8) and bench._wanted(stored | {"data": "SunHays40"}, fewer, 8)
    assert bench._wanted(stored | {"start": {"crops": 384, "ridge": 0.001}}, args, 8)
    assert bench._wanted({**stored, "arm": "scratch", "start": None}, args, 8)  # a random start: every table


def test_a_faded_start_trains_the_teacher_at_full_width_then_the_rest_of_the_budget_is_pruned_kd(tmp_path) -> None:
    args = _args(tmp_path, "--fade-steps", "6", "--fade-lr", "1e-4")
    pruned = {"checkpoint": str(tmp_path / "span28.safetensors")}
    teacher = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 48, "num_block": 6}
    opt = bench.fade_options(0, args, pruned, str(tmp_path / "span48.safetensors"), teacher)
    check_options(opt, "fade")
    assert opt["network_g"] == {"type": "SPANStudent", **teacher, "deploy": True}
    assert opt["path"]["pretrain_network_g"] == str(tmp_path / "span48.safetensors")
    train = opt["train"]
    assert train["recipes"] == {"fade": {"width": bench.WIDTH, "end_iter": 4}} and train["ema_decay"] == 0
    assert train["total_iter"] == 6 and train["optim_g"]["lr"] == 1e-4 and "distill" in train
    kd = bench.run_options("pruned_kd", 0, args, pruned)
    assert opt["datasets"] == kd["datasets"] and opt["manual_seed"] == kd["manual_seed"]
    assert opt["name"] == "prune_fadestart_f6_lr0.0001_lq16_s0"
    assert bench.run_options("pruned_fade", 0, args, pruned)["name"] == "prune_pruned_fade_8_lq16_f6lr0.0001_s0"
    run = _run("pruned_fade", 0, 31.0) | {"fade": {"steps": 6, "lr": 1e-4, "start_val_psnr": 30.5}}
    run["fade"]["start_tests"] = {"Set5": {"psnr_y": 30.9}}
    assert bench.label(run) == "pruned_fade (6 steps at 48 ch, lr 0.0001)"
    record = {
        "setting": {"steps": 8, "batch": 4, "lq_size": 16, "seeds": [0], "data": "photos"},
        "references": {},
        "pruned": {"params": 150_688, "gmacs": 9.8338},
        "runs": [run],
        "arms": bench.summarize([run]),
        "total_min": 3.0,
    }
    text = bench.markdown(record)
    assert "`pruned_fade (6 steps at 48 ch, lr 0.0001)` val 30.500, Set5 30.900" in text


def test_fewer_photos_are_an_even_spread_of_links_to_the_same_pairs(tmp_path, monkeypatch) -> None:
    data = tmp_path / "SunHays80"
    for name in ("a", "b", "c", "d"):
        for part, file in (("HR", f"{name}.png"), ("LR_bicubic/X4", f"{name}x4.png")):
            (data / part).mkdir(parents=True, exist_ok=True)
            (data / part / file).write_bytes(name.encode())
    monkeypatch.setattr(bench, "OUT", tmp_path / "out")
    subset = bench.photo_subset(data, 2)
    assert subset.name == "SunHays80-2" and sorted(p.name for p in (subset / "HR").iterdir()) == ["a.png", "c.png"]
    assert (subset / "LR_bicubic" / "X4" / "cx4.png").read_bytes() == b"c"  # each HR with its own LR
    assert bench.photo_subset(data, 2) == subset  # again: the same folder, nothing rewritten
    with pytest.raises(SystemExit, match="--photos 5 must be between 1 and 4"):
        bench.photo_subset(data, 5)


def test_the_deployed_form_trains_every_arm_as_plain_convolutions_from_the_same_pruned_function(tmp_path) -> None:
    import torch

    from kit.archs import SPANStudent
    from kit.checkpoint import load_checkpoint, save_atomic

    torch.manual_seed(0)
    trainable = SPANStudent(num_feat=bench.WIDTH)
    save_atomic(trainable.state_dict(), tmp_path / "span28.safetensors")
    args = _args(tmp_path, "--form", "deployed", "--pruned-lr", "5e-4", "--scratch-lr", "2e-3")
    pruned = {"checkpoint": str(tmp_path / "span28.safetensors")}
    opts = {arm: bench.run_options(arm, 0, args, pruned) for arm in bench.ARMS}
    assert all(opt["network_g"]["deploy"] is True for opt in opts.values())
    assert opts["pruned_kd"]["name"] == "prune_pruned_kd_8_lr0.0005_deployed_lq16_s0"
    assert opts["scratch"]["train"]["optim_g"]["lr"] == 2e-3 and opts["pruned_gt"]["train"]["optim_g"]["lr"] == 5e-4
    start = opts["pruned_kd"]["path"]["pretrain_network_g"]
    deployed = SPANStudent(num_feat=bench.WIDTH, deploy=True)
    deployed.load_state_dict(load_checkpoint(start), strict=True)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(deployed.eval()(x), trainable.eval()(x), rtol=1e-4, atol=1e-5)


def _run(arm: str, seed: int, set5: float, lr: float | None = None) -> dict:
    tests = {
        n: {"psnr_y": set5 - i, "ssim_y": 0.8, "psnr_rgb": set5 - i - 1.5, "ssim_rgb": 0.7}
        for i, n in enumerate(bench.TEST_SETS)
    }
    return {
        "arm": arm,
        "seed": seed,
        "steps": 8,
        "lr": lr or (bench.LR[bench.ARMS[arm][0]] if arm in bench.ARMS else None),
        "val_psnr": set5 - 2,
        "wall_s": 10.0 + seed,
        "curve": {"4": set5 - 3, "8": set5 - 2},
        "tests": tests,
    }


def test_the_summary_averages_seeds_and_states_the_gap_to_the_goal() -> None:
    runs = [_run("pruned_kd", 0, 31.0), _run("scratch", 0, 29.0), _run("pruned_kd", 1, 31.2)]
    arms = bench.summarize([*runs, _run("pruned_kd", 0, 30.0, lr=5e-5)])
    kd = arms["pruned_kd"]
    assert kd["Set5_psnr_y"] == pytest.approx(31.1) and kd["Set5_psnr_y_spread"] == pytest.approx(0.1)
    assert kd["Set5_vs_goal"] == pytest.approx(31.1 - 31.739)
    assert kd["Set14_psnr_rgb"] == pytest.approx(31.1 - 1 - 1.5) and kd["wall_s"] == pytest.approx(10.5)
    assert list(arms) == ["scratch", "pruned_kd", "pruned_kd (lr 5e-05)"]  # the arms' order; a learning rate apart
    assert arms["scratch"]["Set5_psnr_y_spread"] == 0.0 and arms["pruned_kd (lr 5e-05)"]["Set5_psnr_y"] == 30.0


def test_the_report_has_the_baseline_the_start_and_every_arm(tmp_path) -> None:
    runs = [_run("pruned_kd", 0, 31.0), _run("pruned_kd", 1, 31.2), _run("scratch", 0, 29.0)]
    ref = _run("x", 0, 31.739) | {"params": 150_688, "gmacs": 9.8338}
    record = {
        "setting": {"steps": 8, "batch": 4, "lq_size": 16, "seeds": [0, 1], "data": "photos"},
        "references": {"ntire_baseline": ref, "pruned_start": _run("x", 0, 30.0)},
        "pruned": {"params": 150_688, "gmacs": 9.8338},
        "arms": bench.summarize(runs),
        "total_min": 3.0,
    }
    text = bench.markdown(record, bench.ROOT / "docs" / "pruning.md")
    assert "| **NTIRE 2026 baseline** (released weights) | 150,688 | 9.834 | 31.739 |" in text
    assert "| `pruned_kd`:" in text and "31.100 ± 0.100" in text and "Set5 -0.639 dB" in text
    assert "Best arm on the validation photos" in text
    assert "pruned start, before training" in text and "(../bench/results/prune_curves.png)" in text


def test_a_missing_input_is_refused_in_one_line(tmp_path) -> None:
    with pytest.raises(SystemExit, match=r"^python -m bench prune: '.*/t.safetensors' does not exist \(see") as err:
        bench.main(["--teacher", str(tmp_path / "t.safetensors"), "--report"])
    assert "\n" not in str(err.value)
