"""Quantisation-aware fine-tuning (kit.quant): simulation vs onnxruntime, exact resume, layers kept float.

Tolerances, in steps of the output quantiser (its scale): onnxruntime without graph optimisation runs the QDQ
graph as written (quantise, dequantise, float convolution); it divides by the scale where PyTorch's fake
quantiser multiplies by its inverse, so a value on a rounding tie lands one step apart and the output differs by
at most 2 steps on a few pixels (mean under 0.1 step). With its optimisations onnxruntime fuses each convolution
into ``QLinearConv`` (int32 accumulator, one requantisation): at most 4 steps, mean under 0.25 step (measured on
this tiny SPAN: 2 and 0.04; 3 and 0.16).
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

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def _output_step(net: QATStudent) -> float:
    from torch.ao.quantization import FakeQuantize

    last = [m for m in net.quantised.modules() if isinstance(m, FakeQuantize)][-1]
    return float(last.scale)


def test_simulation_and_onnxruntime_agree(tmp_path: Path) -> None:
    net = _calibrated()
    path = tmp_path / "q.onnx"
    record = export_qdq(net, path, (1, 3, 24, 24))
    assert record["format"] == "QDQ" and record["quantize_linear_nodes"] > 0 and record["float_convolutions"] == []
    assert record["weights_folded_to_int8"] == 10  # every convolution's weights stored as int8 in the file
    inputs = _smooth_images(2, 20, seed=1) + [torch.cat(_smooth_images(2, 28, seed=2))]
    step = _output_step(net)
    for level, worst, mean in (("ORT_DISABLE_ALL", 2, 0.1), ("ORT_ENABLE_ALL", 4, 0.25)):
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
    record = export_qdq(_calibrated(("image", "conv_cat")), tmp_path / "q.onnx", (1, 3, 24, 24))
    assert len(record["float_convolutions"]) == 1, record["float_convolutions"]


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
    with torch.no_grad():
        assert torch.equal(fused(x), sim(x))


def _qat_options(bundled: Path, name: str, weights: Path, **overrides) -> dict:
    opt = tiny_options(bundled, name, **overrides)
    span = dict(SPAN, scale=4)
    opt["model_type"] = "DistillModel"
    opt["network_g"] = {"type": "QATStudent", "network": span, "weights": str(weights)}
    opt["network_t"] = span
    opt["path"]["pretrain_network_t"] = str(weights)
    opt["train"]["ema_decay"] = 0
    opt["train"]["distill"] = {
        "output": {"loss": {"type": "L1Loss", "loss_weight": 1.0}},
        "cat": {"student": "quantised.conv_cat", "teacher": "conv_cat", "loss": {"type": "L2Loss", "loss_weight": 1.0}},
    }
    return opt


def test_qat_training_resumes_exactly(bundled_root: Path, tmp_path: Path, exp_name: str, warm) -> None:
    from kit.archs import SPANStudent

    torch.manual_seed(0)
    weights = tmp_path / "fp32.pth"
    torch.save({"params": SPANStudent(num_feat=8, num_block=2, scale=4).state_dict()}, weights)
    iters = {"train:total_iter": 6, "logger:save_checkpoint_freq": 3, "val:val_freq": 3, "logger:print_freq": 1}
    opt_file = write_options(tmp_path / "qat.yml", _qat_options(bundled_root, exp_name, weights, **iters))
    result = warm.run("train.py", ["-opt", str(opt_file)])
    assert result.returncode == 0, result.stderr[-3000:]
    exp = REPO / "experiments" / exp_name
    whole = torch.load(exp / "models/net_g_latest.pth", weights_only=True)["params"]
    assert any("activation_post_process" in k for k in whole)  # the ranges are saved with the weights
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
