"""kit-prune (issue #24): a teacher pruned into a smaller registered student that loads strictly and computes the
pruned-then-refit function; targets met and never exceeded; impossible targets refused in one line."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import copy

import cv2
import numpy as np
import pytest
import torch

from kit.archs import RLFNStudent, SPANStudent, count_params
from kit.checkpoint import load_checkpoint, save_atomic
from kit.cli.prune import main
from kit.options import load_options
from kit.prune import PruneSettings, PruneTarget, PruneTargetError, prune_teacher
from kit.prune.target import measure
from tests.helpers import REPO, build, use_tiny_pool

SPAN_TEACHER = REPO.parent / "shared" / "teachers" / "spanx4_ch48.safetensors"


def _crops(count: int = 6, size: int = 12) -> torch.Tensor:
    """Smooth random LR crops in [0, 1] (a blurred noise image: channels correlated, as in photos)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(count, 3, size + 4, size + 4, generator=g)
    return torch.nn.functional.avg_pool2d(x, 5, stride=1)


def _span(num_feat: int = 12, num_block: int = 2) -> SPANStudent:
    torch.manual_seed(0)
    return SPANStudent(num_feat=num_feat, num_block=num_block)


def _rlfn(num_feat: int = 12) -> RLFNStudent:
    torch.manual_seed(0)
    return RLFNStudent(num_feat=num_feat, num_block=2, esa_channels=4)


def _settings(**target) -> PruneSettings:
    return PruneSettings(PruneTarget(input_size=(16, 16), **target), batch=3)


def test_span_loads_strictly_into_the_smaller_student_and_equals_the_pruned_network() -> None:
    crops = _crops()
    result = prune_teacher("SPANStudent", _span().state_dict(), crops, _settings(width=8))
    student = SPANStudent(num_feat=8, num_block=2)  # the trainable form network_g builds
    student.load_state_dict(result.state, strict=True)
    assert result.arguments["num_feat"] == 8 and count_params(result.deployed) == result.params
    with torch.no_grad():
        expected = result.deployed(crops)
        torch.testing.assert_close(student.eval()(crops), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(student.train()(crops), expected, rtol=1e-4, atol=1e-5)  # the branches themselves
        fused = student.fuse()
    kernel = fused.block_1.c2_r.eval_conv.weight
    torch.testing.assert_close(kernel, result.deployed.block_1.c2_r.eval_conv.weight, rtol=1e-4, atol=1e-6)
    branches = [p for n, p in student.named_parameters() if ".conv." in n and n.endswith("weight")]
    assert all(float(p.detach().abs().max()) > 0 for p in branches)  # every branch trains


def test_rlfn_loads_strictly_into_the_smaller_student_and_equals_the_pruned_network() -> None:
    crops = _crops()
    result = prune_teacher("RLFNStudent", _rlfn().state_dict(), crops, _settings(width=8))
    student = RLFNStudent(num_feat=8, num_block=2, esa_channels=4)
    student.load_state_dict(result.state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(student.eval()(crops), result.deployed(crops))


def test_the_refit_brings_the_cut_network_closer_to_the_teacher() -> None:
    teacher, crops = _span(), _crops()
    with torch.no_grad():
        reference = teacher.eval()(crops)
    errors = {}
    for refit in (False, True):
        settings = PruneSettings(PruneTarget(width=6, input_size=(16, 16)), refit=refit, batch=3)
        deployed = prune_teacher("SPANStudent", teacher.state_dict(), crops, settings).deployed
        with torch.no_grad():
            errors[refit] = float((deployed(crops) - reference).square().mean())
    assert errors[True] < 0.5 * errors[False]


def test_taylor_cuts_a_channel_that_carries_nothing_first_and_needs_the_hr_crops() -> None:
    from kit.prune.graph import channel_groups, taylor_importance

    teacher, crops = _span(num_feat=8).eval(), _crops()
    targets = torch.nn.functional.interpolate(crops, scale_factor=4, mode="bicubic", align_corners=False)
    net = teacher.fuse()  # the deployed form kit-prune scores
    group = next(g for g in channel_groups(net, crops[:1]) if g.root == "conv_1.eval_conv")  # the residual stream
    params = dict(net.named_parameters())
    with torch.no_grad():  # channel 3 of the residual stream: every weight coupled to it set to zero
        for item in group.items:
            idx = [i for i, r in zip(item.idxs, item.root_idxs) if r == 3]
            weight = params[f"{item.module}.weight"]
            weight[(idx,) if item.kind == "out" else (slice(None), idx)] = 0
            if item.kind == "out" and f"{item.module}.bias" in params:
                params[f"{item.module}.bias"][idx] = 0
    scores = taylor_importance(net, crops, targets, batch=3)
    assert set(scores) == {g.root for g in channel_groups(net, crops[:1])}  # one score per channel of every group
    assert float(scores["conv_1.eval_conv"][3]) == 0.0 and int(scores["conv_1.eval_conv"].argmin()) == 3
    settings = PruneSettings(PruneTarget(width=7, input_size=(16, 16)), importance="taylor", refit=False, batch=3)
    result = prune_teacher("SPANStudent", net.state_dict(), crops, settings, targets=targets)
    kept = [0, 1, 2, 4, 5, 6, 7]  # the residual stream loses the channel that carried nothing (no refit: as cut)
    torch.testing.assert_close(result.deployed.conv_1.eval_conv.weight, net.conv_1.eval_conv.weight[kept])
    SPANStudent(num_feat=7, num_block=2).load_state_dict(result.state, strict=True)
    with pytest.raises(ValueError, match="importance 'taylor' needs the calibration crops' HR crops"):
        prune_teacher("SPANStudent", net.state_dict(), crops, settings)


def test_dropping_blocks_gives_the_shallower_student() -> None:
    result = prune_teacher("SPANStudent", _span(num_block=3).state_dict(), _crops(), _settings(width=8, blocks=2))
    assert len(result.kept_blocks) == 2
    SPANStudent(num_feat=8, num_block=2).load_state_dict(result.state, strict=True)


@pytest.mark.parametrize("cap", ["params", "gmacs"])
def test_a_cap_is_met_and_never_exceeded(cap: str) -> None:
    family = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_block": 2}
    from kit.prune.families import get_family

    sizes = {w: measure(get_family("SPANStudent"), {**family, "num_feat": w}, (16, 16)) for w in (9, 10)}
    limit = sizes[9][0] + 1 if cap == "params" else (sizes[9][1] + sizes[10][1]) / 2  # 9 fits, 10 does not
    target = {"max_params": limit} if cap == "params" else {"max_gmacs": limit}
    result = prune_teacher("SPANStudent", _span().state_dict(), _crops(), _settings(**target))
    assert result.arguments["num_feat"] == 9
    assert (result.params if cap == "params" else result.gmacs) <= limit


def test_an_impossible_target_says_why_in_one_line() -> None:
    with pytest.raises(PruneTargetError, match=r"cannot meet --max-params 100: even at num_feat 1") as err:
        prune_teacher("SPANStudent", _span().state_dict(), _crops(), _settings(max_params=100))
    assert "\n" not in str(err.value)
    with pytest.raises(PruneTargetError, match=r"--width 20: the teacher's num_feat is 12"):
        prune_teacher("SPANStudent", _span().state_dict(), _crops(), _settings(width=20))
    with pytest.raises(PruneTargetError, match=r"not a RLFNStudent"):
        prune_teacher("RLFNStudent", _span().state_dict(), _crops(), _settings(width=8))
    with pytest.raises(ValueError, match=r"'RepSRStudent' is not supported"):
        prune_teacher("RepSRStudent", _span().state_dict(), _crops(), _settings(width=8))


def _photos(folder, count: int = 2, side: int = 64) -> str:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        img = cv2.GaussianBlur(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), (5, 5), 0)
        cv2.imwrite(str(folder / f"photo{i}.png"), img)
    return str(folder)


def _cli(tmp_path, teacher, *extra: str) -> int:
    photos = str(tmp_path / "photos") if (tmp_path / "photos").exists() else _photos(tmp_path / "photos")
    flags = ["--teacher", str(teacher), "--family", "SPANStudent", "--data", photos, "--crops", "4"]
    return main([*flags, "--crop-size", "8", "--input-size", "16x16", *extra])


def test_cli_writes_a_checkpoint_train_py_starts_from(tmp_path, capsys) -> None:
    teacher = tmp_path / "span48.safetensors"
    save_atomic(_span(num_feat=48, num_block=6).state_dict(), teacher)  # the official layout, random weights
    out = tmp_path / "span28.safetensors"
    assert _cli(tmp_path, teacher, "--width", "28", "--form", "deployed", "--out", str(out)) == 0
    report = capsys.readouterr().out
    assert "num_feat: 28" in report and "deploy: true" in report and "loads strictly" in report
    opt = copy.deepcopy(load_options(REPO / "options" / "distill_pruned_span.yml"))
    opt["path"].update(pretrain_network_t=str(teacher), pretrain_network_g=str(out))
    use_tiny_pool(opt, tmp_path)
    opt["datasets"]["train"]["gt_size"] = 32
    model = build(opt, tmp_path)
    written = load_checkpoint(out)
    torch.testing.assert_close(model.net_g.conv_cat.weight.detach(), written["conv_cat.weight"])
    model.feed_data({"lq": torch.rand(1, 3, 8, 8), "gt": torch.rand(1, 3, 32, 32)})
    model.optimize_parameters(1)


def test_cli_deployed_form_loads_into_deploy_true_and_computes_the_pruned_network(tmp_path, capsys) -> None:
    teacher = tmp_path / "span.safetensors"
    save_atomic(_span().state_dict(), teacher)
    out = tmp_path / "deployed.safetensors"
    assert _cli(tmp_path, teacher, "--width", "8", "--form", "deployed", "--out", str(out)) == 0
    assert "deploy: true" in capsys.readouterr().out
    deployed = SPANStudent(num_feat=8, num_block=2, deploy=True)
    deployed.load_state_dict(load_checkpoint(out), strict=True)
    trainable_out = tmp_path / "trainable.safetensors"
    assert _cli(tmp_path, teacher, "--width", "8", "--out", str(trainable_out)) == 0
    trainable = SPANStudent(num_feat=8, num_block=2)
    trainable.load_state_dict(load_checkpoint(trainable_out), strict=True)
    x = _crops(2)
    with torch.no_grad():  # the same pruned function in both forms
        torch.testing.assert_close(deployed.eval()(x), trainable.eval()(x), rtol=1e-4, atol=1e-5)
    deployed.train()(x).mean().backward()  # the deployed form trains: its plain convolutions get gradients
    kernel = deployed.block_1.c1_r.eval_conv.weight
    assert deployed.conv_cat.weight.grad is not None and float(kernel.grad.abs().sum()) > 0


def test_cli_refuses_an_impossible_target_in_one_line(tmp_path, capsys) -> None:
    teacher = tmp_path / "span.safetensors"
    save_atomic(_span().state_dict(), teacher)
    assert _cli(tmp_path, teacher, "--max-params", "100", "--out", str(tmp_path / "s.safetensors")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kit-prune: error: SPANStudent cannot meet --max-params 100") and "\n" not in err
    assert not (tmp_path / "s.safetensors").exists()


def test_the_official_span_prunes_to_the_ntire_baseline_size() -> None:
    if not SPAN_TEACHER.is_file():
        pytest.skip(f"{SPAN_TEACHER} is absent (the real pretrained teachers live in ../shared on CI only)")
    settings = PruneSettings(PruneTarget(width=28), batch=4)
    result = prune_teacher("SPANStudent", load_checkpoint(SPAN_TEACHER), _crops(8, 24), settings)
    assert result.params == 150_688 and result.gmacs <= 9.84
    SPANStudent(num_feat=28).load_state_dict(result.state, strict=True)
    assert result.max_difference < 1e-3
