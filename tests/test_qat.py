"""Quantisation-aware fine-tuning (kit.quant): simulation vs onnxruntime, exact resume, layers kept float.

Tolerances, in steps of the output quantiser (its scale): onnxruntime without graph optimisation runs the QDQ
graph as written (quantise, dequantise, float convolution); it divides by the scale where PyTorch's fake
quantiser multiplies by its inverse, so a value on a rounding tie can land one step apart: at most 2 steps on a
few pixels, mean under 0.02 step (measured on this tiny SPAN since the weights are on onnxruntime's [-127, 127]:
0 and 0; on PyTorch's default [-128, 127] each channel's largest weight sat on a tie: 1 and 0.04). With its
optimisations onnxruntime fuses each convolution into ``QLinearConv`` (int32 accumulator, one requantisation): at
most 4 steps, mean under 0.25 step (measured: 2 and 0.16).
"""

from __future__ import annotations

from pathlib import Path

import kit  # noqa: F401  (compat + registries)

# isort: split
import numpy as np
import pytest
import torch

from kit.quant import QATStudent, end_convolutions
from kit.quant.qdq import export_qdq, frozen_copy, simulation_agreement
from tests.helpers import REPO, tiny_options, write_options

SPAN = {"type": "SPANStudent", "num_feat": 8, "num_block": 2, "scale": 2}


def _smooth_images(n: int, size: int = 24, seed: int = 0) -> list[torch.Tensor]:
    """Photo-like inputs: low-frequency random fields in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return list(torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic").clamp(0, 1).split(1))


def _calibrated(keep_float=("image",)) -> QATStudent:
    torch.manual_seed(0)
    net = QATStudent(SPAN, keep_float=list(keep_float)).train()
    with torch.no_grad():
        for x in _smooth_images(6):
            net(x)
    return net.eval()


def _ort(path: Path, level: str = "ORT_ENABLE_ALL"):
    import onnxruntime as ort

    from kit.runners import OnnxRunner

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return OnnxRunner(path, session_options=so)


def _output_step(net: QATStudent) -> float:
    from torch.ao.quantization import FakeQuantize

    last = [m for m in frozen_copy(net).modules() if isinstance(m, FakeQuantize)][-1]  # learned ranges: fixed
    return float(last.scale)


def test_simulation_and_onnxruntime_agree(tmp_path: Path) -> None:
    net = _calibrated()
    path = tmp_path / "q.onnx"
    record = export_qdq(net, path, (1, 3, 24, 24))
    assert record["format"] == "QDQ" and record["quantize_linear_nodes"] > 0 and record["float_convolutions"] == []
    assert record["weights_folded_to_int8"] == 13  # every convolution's weights stored as int8 (conv_cat in 4 parts)
    assert record["split_concat"] == ["conv_cat"]
    inputs = _smooth_images(2, 20, seed=1) + [torch.cat(_smooth_images(2, 28, seed=2))]
    step = _output_step(net)
    for level, worst, mean in (("ORT_DISABLE_ALL", 2, 0.02), ("ORT_ENABLE_ALL", 4, 0.25)):
        checks = simulation_agreement(net, _ort(path, level), inputs)
        assert max(c["max_abs_error"] for c in checks) <= worst * step * (1 + 1e-5), (level, checks, step)
        assert max(c["mean_abs_error"] for c in checks) <= mean * step, (level, checks, step)


def test_observers_follow_training_and_freeze_in_eval() -> None:
    net = _calibrated()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net(torch.rand(1, 3, 16, 16) * 0.1)  # eval: a range must not move
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    net.train()
    with torch.no_grad():
        net(torch.rand(1, 3, 16, 16))
    assert any(not torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_kept_float_layers_stay_float_in_the_graph(tmp_path: Path) -> None:
    net = _calibrated(("image", "first", "last"))
    ends = end_convolutions(net.fp32_network())
    assert ends == {"first": ["conv_1.eval_conv"], "last": ["upsampler.0"]}
    record = export_qdq(net, tmp_path / "q.onnx", (1, 3, 24, 24))
    assert len(record["float_convolutions"]) == 2, record["float_convolutions"]
    # and only those: the other convolutions read int8 weights
    default = export_qdq(_calibrated(), tmp_path / "d.onnx", (1, 3, 24, 24))
    assert default["float_convolutions"] == []
    x = _smooth_images(1, 20, seed=3)[0]
    assert float((_ort(tmp_path / "q.onnx")(x) - frozen_copy(net)(x)).abs().max()) <= 4 * _output_step(net) * (1 + 1e-5)


def test_a_convolution_named_in_keep_float_stays_float(tmp_path: Path) -> None:
    net = _calibrated(("image", "conv_cat"))
    assert isinstance(net.quantised.conv_cat, torch.nn.Conv2d)  # kept float: not split either
    record = export_qdq(net, tmp_path / "q.onnx", (1, 3, 24, 24))
    assert len(record["float_convolutions"]) == 1, record["float_convolutions"]
    assert record["split_concat"] == [] and record["weights_folded_to_int8"] == 9


def test_unknown_keep_float_part_is_refused() -> None:
    with pytest.raises(ValueError, match="keep_float part"):
        QATStudent(SPAN, keep_float=["middle"])


def test_fused_network_is_the_fine_tuned_fp32_network() -> None:
    net = _calibrated()
    fused = net.fuse()
    assert fused.qat_source is net and "qat_source" not in dict(fused.named_modules())
    x = _smooth_images(1, 20, seed=4)[0]
    from torch.ao.quantization import disable_fake_quant

    sim = frozen_copy(net)
    sim.apply(disable_fake_quant)
    with torch.no_grad():  # conv_cat is a sum of 4 part convolutions in ``sim``: float rounding apart only
        assert float((fused(x) - sim(x)).abs().max()) < 1e-5


def _deployed_span() -> torch.nn.Module:
    from kit.archs.deploy import deploy_network
    from kit.registry import build_network

    torch.manual_seed(0)
    return deploy_network(build_network(dict(SPAN), "network"))


def test_split_concat_keeps_the_fp32_function() -> None:
    from kit.quant.split import split_concat_convolutions, split_convolutions

    net = _deployed_span()
    split = split_concat_convolutions(net, torch.rand(1, 3, 16, 16))
    assert split_convolutions(split) == ["conv_cat"]
    parts = [split.get_submodule(f"conv_cat_part{k}") for k in range(4)]
    assert [p.in_channels for p in parts] == [8, 8, 8, 8] and [p.bias is not None for p in parts] == [1, 0, 0, 0]
    assert torch.equal(torch.cat([p.weight for p in parts], 1), net.conv_cat.weight)
    x = _smooth_images(1, 20, seed=5)[0]
    with torch.no_grad():
        assert float((split(x) - net(x)).abs().max()) < 1e-5


class _CatTwice(torch.nn.Module):
    """A concatenation read by a convolution and by the output; one along the batch (neither may be split)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 3, 1), torch.nn.Conv2d(3, 3, 1)
        self.c, self.d = torch.nn.Conv2d(6, 3, 1), torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = torch.cat([self.a(x), self.b(x)], dim=1)  # (N, 6, H, W)
        batch = torch.cat([x, x], dim=0)  # (2N, 3, H, W)
        return self.c(both) + both[:, 3:] + self.d(batch)[:1]


def test_split_concat_leaves_shared_and_other_concatenations() -> None:
    from kit.quant.split import split_concat_convolutions

    assert split_concat_convolutions(_CatTwice(), torch.rand(1, 3, 8, 8)) is None
    assert split_concat_convolutions(_deployed_span(), torch.rand(1, 3, 8, 8), keep={"conv_cat"}) is None


def _input_quantisers(net: QATStudent, prefix: str) -> dict[str, torch.nn.Module]:
    """The activation quantiser each call of a module named ``prefix…`` reads, by module path."""
    graph = net.quantised.graph
    return {
        str(n.target): net.quantised.get_submodule(str(n.args[0].target))
        for n in graph.nodes
        if n.op == "call_module" and str(n.target).startswith(prefix) and n.args[0].op == "call_module"
    }


def test_each_part_has_its_own_input_quantiser() -> None:
    from torch.ao.quantization import FakeQuantize

    net = _calibrated()
    quantisers = _input_quantisers(net, "conv_cat_part")
    assert sorted(quantisers) == [f"conv_cat_part{k}" for k in range(4)]
    assert all(isinstance(q, FakeQuantize) for q in quantisers.values())
    assert all(hasattr(net.quantised.get_submodule(k), "weight_fake_quant") for k in quantisers)  # QAT convs
    scales = [float(q.scale) for q in quantisers.values()]
    assert len({id(q) for q in quantisers.values()}) == 4 and max(scales) > 2 * min(scales), scales


def test_fp32_network_reassembles_the_split_convolution() -> None:
    from torch.ao.quantization import disable_fake_quant

    net = _calibrated()
    with torch.no_grad():  # as fine-tuning would: every part moves
        for k in range(4):
            net.quantised.get_submodule(f"conv_cat_part{k}").weight.add_(0.01 * (k + 1))
    fp32 = net.fp32_network()
    parts = [net.quantised.get_submodule(f"conv_cat_part{k}") for k in range(4)]
    assert torch.equal(fp32.conv_cat.weight, torch.cat([p.weight for p in parts], 1))
    assert torch.equal(fp32.conv_cat.bias, parts[0].bias)
    sim = frozen_copy(net)
    sim.apply(disable_fake_quant)
    x = _smooth_images(1, 20, seed=6)[0]
    with torch.no_grad():
        assert float((fp32(x) - sim(x)).abs().max()) < 1e-5


def test_a_hook_on_the_split_path_records_the_sum() -> None:
    from torch.ao.quantization import disable_fake_quant

    from kit.distill.pairs import FeatureRecorder

    net = _calibrated()
    fp32 = net.fp32_network()
    net.quantised.apply(disable_fake_quant)
    x = _smooth_images(1, 20, seed=7)[0]
    student = FeatureRecorder(net, {"cat": "quantised.conv_cat"}, role="student")
    teacher = FeatureRecorder(fp32, {"cat": "conv_cat"}, role="teacher")
    with student, teacher, torch.no_grad():
        net(x)
        fp32(x)
        got, want = student.get("cat"), teacher.get("cat")
    assert got.shape == (1, 8, 20, 20) and float((got - want).abs().max()) < 1e-6 * float(want.abs().max())


def test_each_part_is_an_int8_convolution_in_the_qdq_model(tmp_path: Path) -> None:
    import onnx

    export_qdq(_calibrated(), tmp_path / "q.onnx", (1, 3, 24, 24))
    model = onnx.load(str(tmp_path / "q.onnx"))
    producer = {o: n for n in model.graph.node for o in n.output}
    parts = [n for n in model.graph.node if n.op_type == "Conv" and "conv_cat_part" in n.name]
    assert len(parts) == 4, [n.name for n in model.graph.node if n.op_type == "Conv"]
    for conv in parts:
        dq = producer[conv.input[0]]
        assert dq.op_type == "DequantizeLinear" and producer[dq.input[0]].op_type == "QuantizeLinear", conv.name
        assert producer[conv.input[1]].op_type == "DequantizeLinear", conv.name  # int8 weights


def test_split_concat_can_be_turned_off() -> None:
    net = QATStudent(SPAN, split_concat=False)
    assert isinstance(net.quantised.conv_cat, torch.nn.Conv2d) and hasattr(net.quantised.conv_cat, "weight_fake_quant")
    assert not any("conv_cat_part" in k for k in net.state_dict())


def _learned_ranges(net: QATStudent) -> dict[str, float]:
    from torch.ao.quantization._learnable_fake_quantize import _LearnableFakeQuantize

    return {
        n: float(m.scale.detach()) for n, m in net.quantised.named_modules() if isinstance(m, _LearnableFakeQuantize)
    }


def test_learned_ranges_are_trained_and_frozen_in_eval() -> None:
    torch.manual_seed(0)
    net = QATStudent(SPAN, ranges="learned").train()
    teacher = net.fp32_network()
    # lr 1e-2 can step a learned scale below 0, which the next forward (eval's too) clamps to eps
    optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    seen = []
    for x in _smooth_images(4, 16, seed=8):
        loss = (net(x) - teacher(x).detach()).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        seen.append(_learned_ranges(net))
    assert len(seen[0]) == 21 and all(v > 0 for v in seen[0].values())
    moved = [k for k in seen[0] if seen[-1][k] != seen[1][k]]  # after the first batch set them: by gradient
    assert len(moved) == len(seen[0]), moved
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = _smooth_images(1, 20, seed=9)[0]
    with torch.no_grad():
        out = net(x * 3)  # eval: a range must not move
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
        assert torch.equal(net(x), frozen_copy(net)(x))  # the exported quantisers compute the same
    net.train()
    net(x * 3)  # training again: gradients, not the observer, move the ranges
    assert _learned_ranges(net) == seen[-1] and out.shape == (1, 3, 40, 40)


def test_learned_ranges_simulation_and_onnxruntime_agree(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = QATStudent(SPAN, ranges="learned").train()
    optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    for x in _smooth_images(3, 24):
        optimiser.zero_grad()
        net(x).abs().mean().backward()
        optimiser.step()
    net.eval()
    record = export_qdq(net, tmp_path / "q.onnx", (1, 3, 24, 24))
    assert record["float_convolutions"] == [] and "learned" in record["calibration_method"]
    inputs = _smooth_images(2, 20, seed=1)
    step = _output_step(net)
    checks = simulation_agreement(net, _ort(tmp_path / "q.onnx"), inputs)
    assert max(c["max_abs_error"] for c in checks) <= 4 * step * (1 + 1e-5), (checks, step)
    assert max(c["mean_abs_error"] for c in checks) <= 0.25 * step, (checks, step)


def test_unknown_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="ranges 'lsq' unknown"):
        QATStudent(SPAN, ranges="lsq")


def _qat_options(bundled: Path, name: str, weights: Path, ranges: str = "minmax", **overrides) -> dict:
    opt = tiny_options(bundled, name, **overrides)
    span = dict(SPAN, scale=4)
    opt["model_type"] = "DistillModel"
    opt["network_g"] = {"type": "QATStudent", "network": span, "weights": str(weights), "ranges": ranges}
    opt["network_t"] = span
    opt["path"]["pretrain_network_t"] = str(weights)
    opt["train"]["ema_decay"] = 0
    opt["train"]["distill"] = {
        "output": {"loss": {"type": "L1Loss", "loss_weight": 1.0}},
        "cat": {"student": "quantised.conv_cat", "teacher": "conv_cat", "loss": {"type": "L2Loss", "loss_weight": 1.0}},
    }
    return opt


@pytest.mark.parametrize("ranges", ["minmax", "learned"])
def test_qat_training_resumes_exactly(bundled_root: Path, tmp_path: Path, exp_name: str, warm, ranges: str) -> None:
    from kit.archs import SPANStudent

    torch.manual_seed(0)
    weights = tmp_path / "fp32.pth"
    torch.save({"params": SPANStudent(num_feat=8, num_block=2, scale=4).state_dict()}, weights)
    iters = {"train:total_iter": 6, "logger:save_checkpoint_freq": 3, "val:val_freq": 3, "logger:print_freq": 1}
    opt_file = write_options(tmp_path / "qat.yml", _qat_options(bundled_root, exp_name, weights, ranges, **iters))
    result = warm.run("train.py", ["-opt", str(opt_file)])
    assert result.returncode == 0, result.stderr[-3000:]
    exp = REPO / "experiments" / exp_name
    whole = torch.load(exp / "models/net_g_latest.pth", weights_only=True)["params"]
    assert any("activation_post_process" in k for k in whole)  # the ranges are saved with the weights
    assert any("conv_cat_part3" in k for k in whole)  # split: conv_cat in 4 parts
    for stale in ("training_states/6.state", "models/net_g_6.pth", "models/net_g_latest.pth"):
        (exp / stale).unlink()
    result = warm.run("train.py", ["-opt", str(opt_file), "--auto_resume"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "iter 3" in result.stderr
    resumed = torch.load(exp / "models/net_g_latest.pth", weights_only=True)["params"]
    assert whole.keys() == resumed.keys()
    worst = max(float((whole[k].float() - resumed[k].float()).abs().max()) for k in whole)
    assert worst == 0.0


def test_ema_is_refused_for_qat(bundled_root: Path, tmp_path: Path, exp_name: str) -> None:
    from tests.helpers import build

    weights = tmp_path / "fp32.pth"
    from kit.archs import SPANStudent

    torch.save({"params": SPANStudent(num_feat=8, num_block=2, scale=4).state_dict()}, weights)
    opt = _qat_options(bundled_root, exp_name, weights)
    opt["train"]["ema_decay"] = 0.9
    with pytest.raises(ValueError, match="ema_decay"):
        build(opt, tmp_path)


def test_qdq_export_runs_with_np_inputs(tmp_path: Path) -> None:
    net = _calibrated()
    export_qdq(net, tmp_path / "q.onnx", (1, 3, 24, 24))
    out = _ort(tmp_path / "q.onnx")(torch.from_numpy(np.full((1, 3, 17, 19), 0.5, np.float32)))
    assert out.shape == (1, 3, 34, 38)


def test_export_int8_of_a_qat_run_is_its_own_qdq_model(bundled_root: Path, tmp_path: Path, exp_name: str, warm) -> None:
    import json

    from kit.archs import SPANStudent
    from kit.cli.export import main as export_main
    from kit.quant.qdq import QDQ_TOOL

    torch.manual_seed(0)
    weights = tmp_path / "fp32.pth"
    torch.save({"params": SPANStudent(num_feat=8, num_block=2, scale=4).state_dict()}, weights)
    iters = {"train:total_iter": 2, "logger:save_checkpoint_freq": 2, "val:val_freq": 100}
    opt_file = write_options(tmp_path / "qat.yml", _qat_options(bundled_root, exp_name, weights, **iters))
    assert warm.run("train.py", ["-opt", str(opt_file)]).returncode == 0
    out = tmp_path / "subs"
    small = ["--input-size", "32x32", "--latency-runs", "1"]
    assert export_main(["-opt", str(opt_file), "--int8", "--out-dir", str(out), *small]) == 0
    q = json.loads((out / exp_name / "manifest.json").read_text())["int8"]
    assert q["tool"] == QDQ_TOOL and q["float_convolutions"] == [] and "calibration_crops" not in q
    agree = q["simulation_vs_onnxruntime"]
    assert len(agree["parity"]) == 2 and agree["parity"][0]["input_shape"] == [1, 3, 32, 32]  # both parity sizes
    assert abs(agree["psnr_onnxruntime_minus_simulated"]) < 0.05, agree
    assert agree["validation_psnr_onnxruntime"] == q["validation"]["psnr"]
