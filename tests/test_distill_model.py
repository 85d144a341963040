"""DistillModel: frozen teacher, trained connectors, the optimizer's contents, resume, DDP, shape checks."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import copy
from pathlib import Path

import pytest
import torch

from kit.cli.train import parse_args
from kit.distill.pairs.wiring import DistillOptionsError
from kit.run import run_training
from kit.run.state import ResumeState
from tests.helpers import (
    REPO,
    build,
    distill_options,
    kill_when,
    run_torchrun,
    run_train,
    tiny_options,
    tiny_teacher_checkpoint,
    write_options,
)


def batch(seed: int = 0, n: int = 2, size: int = 8):
    g = torch.Generator().manual_seed(seed)
    lq = torch.rand(n, 3, size, size, generator=g)
    return {"lq": lq, "gt": torch.nn.functional.interpolate(lq, scale_factor=4, mode="bicubic").clamp(0, 1)}


@pytest.fixture
def teacher(tmp_path: Path):
    return tiny_teacher_checkpoint(tmp_path / "teacher.pth")


def test_steps_train_student_and_connectors_only(bundled_root, tmp_path, teacher) -> None:
    model = build(distill_options(bundled_root, "d", *teacher), tmp_path)
    t_before = {k: v.clone() for k, v in model.teachers["teacher"].state_dict().items()}
    c_before = {k: v.clone() for k, v in model.connectors.state_dict().items()}
    s_before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    for i in range(3):
        model.feed_data(batch(i))
        model.optimize_parameters(i + 1)

    teacher_net = model.teachers["teacher"]
    assert not teacher_net.training and all(not m.training for m in teacher_net.modules())
    assert not any(p.requires_grad for p in teacher_net.parameters())
    for k, v in teacher_net.state_dict().items():
        assert torch.equal(v, t_before[k]), k
    assert any(not torch.equal(v, c_before[k]) for k, v in model.connectors.state_dict().items())
    assert any(not torch.equal(v, s_before[k]) for k, v in model.net_g.state_dict().items())

    in_optimizer = {id(p) for group in model.optimizer_g.param_groups for p in group["params"]}
    expected = {id(p) for p in model.net_g.parameters()} | {id(p) for p in model.connectors.parameters()}
    assert in_optimizer == expected
    assert not in_optimizer & {id(p) for p in teacher_net.parameters()}
    assert set(model.log_dict) == {"l_pix", "l_out", "l_mid", "l_total"}


def test_checkpoint_holds_student_only_and_state_holds_connectors(bundled_root, tmp_path, teacher) -> None:
    model = build(distill_options(bundled_root, "d", *teacher), tmp_path)
    model.feed_data(batch())
    model.optimize_parameters(1)
    model.save(0, 1)  # the weights; the run writes the resume state, with the model's part in it
    exp = tmp_path / "experiments/d"
    ResumeState(epoch=0, current_iter=1, model=model.training_state()).save(exp / "training_states")
    ckpt = torch.load(exp / "models/net_g_1.pth", weights_only=True)
    assert set(ckpt["params"]) == set(model.net_g.state_dict())
    state = torch.load(exp / "training_states/1.state", weights_only=True)
    assert set(state["connectors"]) == set(model.connectors.state_dict())
    assert not list(exp.rglob("*teacher*"))


def test_killed_distillation_resumes_connectors_and_teacher(bundled_root, tmp_path, teacher, exp_name) -> None:
    opt = distill_options(
        bundled_root, exp_name, *teacher, **{"train:total_iter": 12, "logger:save_checkpoint_freq": 4}
    )
    opt_file = write_options(tmp_path / "o.yml", opt)
    exp = REPO / "experiments" / exp_name
    kill_when(["-opt", str(opt_file)], cwd=REPO, marker=exp / "training_states/4.state")
    state = torch.load(exp / "training_states/4.state", weights_only=True)

    # The state brings the connectors back as they were at iter 4; the teacher keeps its own checkpoint.
    resumed_opt = copy.deepcopy(opt)
    resumed_opt["path"]["pretrain_network_g"] = str(exp / "models/net_g_4.pth")
    resumed_opt["path"]["param_key_g"] = "params"
    model = build(resumed_opt, REPO)
    model.resume_training(state)
    for k, v in model.connectors.state_dict().items():
        assert torch.equal(v, state["connectors"][k]), k
    saved_teacher = torch.load(teacher[1], weights_only=True)["params_ema"]
    for k, v in model.teachers["teacher"].state_dict().items():
        assert torch.equal(v, saved_teacher[k]), k

    result = run_train(["-opt", str(opt_file), "--auto_resume"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from" in result.stderr and (exp / "models/net_g_12.pth").is_file()


@pytest.mark.slow
def test_ddp_distillation_ranks_agree(bundled_root, tmp_path, teacher, exp_name) -> None:
    opt = distill_options(bundled_root, exp_name, *teacher, **{"train:total_iter": 4, "val:val_freq": 100})
    opt_file = write_options(tmp_path / "o.yml", opt)
    log = run_torchrun(opt_file, cwd=tmp_path)
    assert "all 2 ranks hold identical weights: student" in log and "connectors" in log


def test_channel_mismatch_fails_at_startup_with_both_shapes(bundled_root, tmp_path, teacher) -> None:
    opt = distill_options(bundled_root, "d", *teacher)
    opt["train"]["distill"]["mid"].pop("connector")
    with pytest.raises(DistillOptionsError, match=r"\(1, 8, 8, 8\).*\(1, 16, 8, 8\).*in_channels: 8, out_channels: 16"):
        build(opt, tmp_path)


def test_spatial_mismatch_fails_unless_connector_resizes(bundled_root, tmp_path, teacher) -> None:
    opt = distill_options(bundled_root, "d", *teacher)
    opt["train"]["distill"]["mid"]["teacher"] = "upsample"
    with pytest.raises(DistillOptionsError, match=r"\(1, 16, 8, 8\).*\(1, 16, 32, 32\).*resize: bilinear"):
        build(opt, tmp_path)
    opt["train"]["distill"]["mid"]["connector"]["resize"] = "bilinear"
    model = build(opt, tmp_path)
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert model.log_dict["l_mid"] > 0


def test_wrong_path_names_closest(bundled_root, tmp_path, teacher) -> None:
    opt = distill_options(bundled_root, "d", *teacher)
    opt["train"]["distill"]["mid"]["student"] = "body.22"
    with pytest.raises(ValueError, match="student path 'body.22' not found; closest: body.2"):
        build(opt, tmp_path)


def test_two_teachers_mean_target_and_named_pairs(bundled_root, tmp_path) -> None:
    net_a, ckpt_a = tiny_teacher_checkpoint(tmp_path / "a.pth", num_feat=16)
    net_b, ckpt_b = tiny_teacher_checkpoint(tmp_path / "b.pth", num_feat=12)
    opt = distill_options(bundled_root, "d", net_a, ckpt_a)
    del opt["network_t"], opt["path"]["pretrain_network_t"]
    opt["teachers"] = {
        "a": {"network": net_a, "checkpoint": str(ckpt_a), "weight": 3.0},
        "b": {"network": net_b, "checkpoint": str(ckpt_b), "weight": 1.0},
    }
    opt["train"]["distill"]["mid"]["teacher_name"] = "b"
    opt["train"]["distill"]["mid"]["connector"]["out_channels"] = 12
    model = build(opt, tmp_path)
    lq = batch()["lq"]
    images = model.teacher_images(lq)
    expected = 0.75 * model.teachers["a"](lq) + 0.25 * model.teachers["b"](lq)
    torch.testing.assert_close(model.teacher_target(images), expected)
    feats = model.teacher_features()
    assert feats["mid"].shape[1] == 12  # the pair reads teacher b (12 channels), not a (16)
    assert list(model.teacher_recs) == [("b", "output")]


def test_end_to_end_run_logs_each_term(bundled_root, tmp_path, teacher) -> None:
    opt = distill_options(
        bundled_root, "d", *teacher, **{"train:total_iter": 4, "val:val_freq": 2, "val:compare_every": 2}
    )
    summary = run_training(parse_args(["-opt", str(write_options(tmp_path / "o.yml", opt))]), root=tmp_path)
    pictures = sorted((tmp_path / "experiments/d/visualization").glob("compare_*.png"))
    assert [p.name for p in pictures] == ["compare_coffee_4.png"]  # 2nd validation (iter 4), 1st val image
    history = (tmp_path / "experiments/d/history.jsonl").read_text()
    for key in ("l_pix", "l_out", "l_mid", "l_total"):
        assert f'"{key}"' in history
    assert summary["metrics"]["psnr"] > 5


def test_teacher_stage_then_same_student_as_with_an_existing_teacher(bundled_root, tmp_path) -> None:
    """Stage 1 trains the teacher when missing, then the run equals one where the teacher already existed."""
    teacher_opt = tiny_options(bundled_root, "t", **{"train:total_iter": 2})
    teacher_opt["network_g"] = {
        "type": "EDSR",
        "num_in_ch": 3,
        "num_out_ch": 3,
        "num_feat": 16,
        "num_block": 2,
        "upscale": 4,
        "img_range": 1.0,
        "rgb_mean": [0.5, 0.5, 0.5],
    }
    recipe = write_options(tmp_path / "teacher.yml", teacher_opt)
    ckpt = tmp_path / "experiments/t/models/net_g_latest.pth"
    opt = distill_options(bundled_root, "first", teacher_opt["network_g"], ckpt, **{"train:total_iter": 2})
    opt["path"]["teacher_recipe"] = str(recipe)
    run_training(parse_args(["-opt", str(write_options(tmp_path / "a.yml", opt))]), root=tmp_path)
    assert ckpt.is_file()
    opt["name"] = "second"
    run_training(parse_args(["-opt", str(write_options(tmp_path / "b.yml", opt))]), root=tmp_path)
    first = torch.load(tmp_path / "experiments/first/models/net_g_latest.pth", weights_only=True)["params"]
    second = torch.load(tmp_path / "experiments/second/models/net_g_latest.pth", weights_only=True)["params"]
    for k, v in first.items():
        assert torch.equal(v, second[k]), k


def test_connector_typo_names_the_pair_key(bundled_root, tmp_path, teacher) -> None:
    opt = distill_options(bundled_root, "d", *teacher)
    opt["train"]["distill"]["mid"]["connector"]["out_channel"] = 16
    with pytest.raises(ValueError, match=r"train:distill:mid:connector: ConvConnector has no argument 'out_channel'"):
        build(opt, tmp_path)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_step_with_a_feature_pair(bundled_root, tmp_path, teacher, amp) -> None:
    """Under autocast the student's recorded features are half precision; the connectors must take them."""
    opt = distill_options(bundled_root, "d", *teacher, **{"train:amp": amp})
    opt["train"]["recipes"] = {"balance": {"ratio": 0.1, "warmup_iter": 2}}
    model = build(opt, tmp_path)
    before = [p.detach().clone() for p in model.connectors.parameters()]
    for it in (1, 2):
        model.feed_data(batch())
        model.optimize_parameters(it)
    assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values())
    assert model.log_dict["l_mid"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.connectors.parameters(), strict=True))


def test_comparison_teacher_panel_is_tiled_like_the_student(bundled_root, tmp_path, teacher) -> None:
    opt = distill_options(bundled_root, "d", *teacher, **{"val:tile": 32, "val:tile_overlap": 24})
    model = build(opt, tmp_path)
    lq = torch.rand(1, 3, 40, 72, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = model.teachers["teacher"](lq).clamp(0, 1)
    calls = []
    model.teachers["teacher"].register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
    panel = model.comparison_images(lq)["teacher"]
    assert len(calls) > 1 and all(c[-2] <= 32 and c[-1] <= 32 for c in calls)  # tiles, not the whole image
    # tiny EDSR: receptive radius < (24 - 1) // 2 LR pixels, so the tiles reproduce the whole image
    torch.testing.assert_close(panel, whole, atol=1e-5, rtol=0)


def test_output_each_teacher_is_one_weighted_term(bundled_root, tmp_path) -> None:
    net_a, ckpt_a = tiny_teacher_checkpoint(tmp_path / "a.pth", num_feat=16)
    net_b, ckpt_b = tiny_teacher_checkpoint(tmp_path / "b.pth", num_feat=12)
    opt = distill_options(bundled_root, "d", net_a, ckpt_a)
    del opt["network_t"], opt["path"]["pretrain_network_t"], opt["train"]["distill"]["mid"]
    opt["teachers"] = {
        "a": {"network": net_a, "checkpoint": str(ckpt_a), "weight": 3.0},
        "b": {"network": net_b, "checkpoint": str(ckpt_b), "weight": 1.0},
    }
    opt["train"]["distill"]["output"]["teachers"] = "each"
    model = build(opt, tmp_path)
    model.feed_data(batch())
    _, losses = model.compute_losses(1)
    assert "l_out" not in losses
    with torch.no_grad():
        out = model.output.float()
        images = {name: t(model.lq).float() for name, t in model.teachers.items()}
    l1 = torch.nn.functional.l1_loss
    torch.testing.assert_close(losses["l_out_a"], 0.75 * l1(out, images["a"]))
    torch.testing.assert_close(losses["l_out_b"], 0.25 * l1(out, images["b"]))


def test_pair_on_module_inputs(bundled_root, tmp_path, teacher) -> None:
    """``source: input`` pairs read the modules' first arguments (and coexist with output pairs)."""
    opt = distill_options(bundled_root, "d", *teacher)
    mid = opt["train"]["distill"]["mid"]
    opt["train"]["distill"]["mid_in"] = {**copy.deepcopy(mid), "source": "input"}
    model = build(opt, tmp_path)
    assert sorted(model.student_recs) == ["input", "output"]
    seen = {}
    model.net_g.body[2].register_forward_hook(lambda m, args, out: seen.update(s_in=args[0], s_out=out))
    model.feed_data(batch())
    model.optimize_parameters(1)
    feats = model.student_features()
    assert torch.equal(feats["mid_in"], seen["s_in"]) and torch.equal(feats["mid"], seen["s_out"])
    assert model.log_dict["l_mid_in"] > 0 and model.log_dict["l_mid"] > 0


@pytest.mark.slow
def test_ddp_teacher_stage_then_distillation(bundled_root, tmp_path, exp_name) -> None:
    """Under torchrun, rank 0 trains the missing teacher while the other rank waits for its checkpoint."""
    teacher_opt = tiny_options(bundled_root, f"{exp_name}_teacher", **{"train:total_iter": 2, "val:val_freq": 100})
    teacher_opt["network_g"] = dict(tiny_teacher_checkpoint(tmp_path / "unused.pth")[0])
    recipe = write_options(tmp_path / "teacher.yml", teacher_opt)
    ckpt = REPO / "experiments" / f"{exp_name}_teacher" / "models/net_g_latest.pth"
    opt = distill_options(
        bundled_root, exp_name, teacher_opt["network_g"], ckpt, **{"train:total_iter": 2, "val:val_freq": 100}
    )
    opt["path"]["teacher_recipe"] = str(recipe)
    log = run_torchrun(write_options(tmp_path / "o.yml", opt), cwd=tmp_path)
    assert "Stage 1/2 done" in log and ckpt.is_file()
    assert "all 2 ranks hold identical weights: student" in log
