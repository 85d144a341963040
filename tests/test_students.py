"""Registry-driven tests of every kit student: any class in ARCH_REGISTRY defined under ``kit.archs`` gets them all.

A new student is tested at its default size unless ``TINY`` below gives it small constructor arguments.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision, registers the students)

# isort: split
from basicsr.utils.registry import ARCH_REGISTRY

from kit.archs import count_params, deploy_network

DEVICE = torch.device(os.environ.get("KIT_TEST_DEVICE", "cpu"))
CAP = 5_000_000

STUDENTS = sorted(name for name, cls in ARCH_REGISTRY if cls.__module__.startswith("kit.archs"))

TINY = {
    "RLFNStudent": dict(num_feat=8, num_block=2, esa_channels=4),
    "RepSRStudent": dict(num_feat=8, num_block=2),
    "NAFStudent": dict(width=4, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1]),
    "SPANStudent": dict(num_feat=8, num_block=2),
}


def _cls(name: str) -> type[nn.Module]:
    return ARCH_REGISTRY.get(name)


def _scales(name: str) -> tuple[int, ...]:
    return getattr(_cls(name), "supported_scales", (1, 2, 3, 4))


def _build(name: str, scale: int | None = None) -> nn.Module:
    kwargs = dict(TINY.get(name, {}))
    if scale is not None:
        kwargs["scale"] = scale
    torch.manual_seed(0)
    return _cls(name)(**kwargs).to(DEVICE)


def _perturb(net: nn.Module, std: float = 0.05) -> None:
    """Move every parameter off its initial value (zero-initialised residual scales would hide dead branches)."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * std)


def _train_a_little(net: nn.Module, scale: int, steps: int = 3) -> None:
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(steps):
        x = torch.rand(2, 3, 12, 12, device=DEVICE)
        target = torch.rand(2, 3, 12 * scale, 12 * scale, device=DEVICE)
        loss = (net(x) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_kit_students_are_registered():
    assert {"RLFNStudent", "RepSRStudent", "NAFStudent", "SPANStudent"} <= set(STUDENTS)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("name", STUDENTS)
def test_forward_shape_and_gradients(name, scale):
    if scale not in _scales(name):
        with pytest.raises(ValueError, match="scale"):
            _build(name, scale)
        return
    net = _build(name, scale)
    _perturb(net)
    x = torch.rand(2, 3, 16, 16, device=DEVICE)
    out = net(x)
    assert out.shape == (2, 3, 16 * scale, 16 * scale)
    assert torch.isfinite(out).all()
    out.mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: parameter {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: parameter {pname} got an all-zero gradient"


@pytest.mark.parametrize("name", STUDENTS)
def test_small_odd_input(name):
    scale = max(_scales(name))
    net = _build(name, scale).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 5, 7, device=DEVICE))
    assert out.shape == (1, 3, 5 * scale, 7 * scale)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", STUDENTS)
def test_default_size_under_cap(name):
    net = _cls(name)()
    assert 0 < count_params(net) < CAP
    assert count_params(deploy_network(net)) < CAP


@pytest.mark.parametrize("name", STUDENTS)
def test_fused_equals_unfused(name):
    scale = max(_scales(name))
    net = _build(name, scale)
    assert callable(getattr(net, "fuse", None)), f"{name} has no fuse() method (return self when nothing fuses)"
    _train_a_little(net, scale)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fused = deploy_network(net)
    assert net.training, "deploy_network must leave the original network's mode alone"
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"deploy_network changed the original's {k}"
    assert not fused.training
    net.eval()
    x = torch.rand(2, 3, 13, 11, device=DEVICE)
    with torch.no_grad():
        ref, out = net(x), fused(x)
    assert ref.abs().max() > 0
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_rep_fusion_reduces_and_keeps_paths():
    net = _build("RepSRStudent", 2)
    fused = net.fuse()
    assert count_params(fused) < count_params(net)
    assert len(list(fused.modules())) < len(list(net.modules()))
    blocks = {n for n, _ in net.named_children()} | {n for n, _ in net.body.named_children()}
    assert blocks == {n for n, _ in fused.named_children()} | {n for n, _ in fused.body.named_children()}
    assert all(isinstance(fused.get_submodule(f"body.{k}").conv, nn.Conv2d) for k in range(len(fused.body)))
    # each fused block is exactly one 3×3 conv (+ activation)
    convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(fused.body) + 2 and all(c.kernel_size == (3, 3) for c in convs)
    # the fused weights load into a network built with deploy=True
    rebuilt = _cls("RepSRStudent")(**TINY["RepSRStudent"], scale=2, deploy=True)
    rebuilt.load_state_dict(fused.state_dict())


@pytest.mark.parametrize("scale", [2, 3])
def test_rep_residual_is_nearest_upsampling(scale):
    """With the last conv zeroed, RepSRStudent returns its input upsampled by nearest neighbour (per channel)."""
    fused = _build("RepSRStudent", scale).fuse()
    with torch.no_grad():
        fused.conv_last.conv.weight.zero_()
        fused.conv_last.conv.bias.zero_()
        x = torch.rand(1, 3, 6, 5, device=DEVICE)
        torch.testing.assert_close(fused(x), F.interpolate(x, scale_factor=scale, mode="nearest"))


@pytest.mark.parametrize("name", STUDENTS)
def test_submodule_paths(name):
    net = _build(name, max(_scales(name)))
    names = dict(net.named_modules())
    if name == "NAFStudent":
        required = ["intro", "encoders.0", "middle_blks", "decoders.0", "ending"]
    elif name == "SPANStudent":  # the official SPAN names (its published checkpoints load strictly)
        required = ["conv_1", "block_1", f"block_{net.num_block}", "conv_2", "conv_cat", "upsampler"]
    else:
        required = ["conv_first", "body.0", f"body.{len(net.body) - 1}", "upsampler"]
        assert isinstance(net.body, nn.Sequential)
    missing = [p for p in required if p not in names]
    assert not missing, f"{name}: missing module paths {missing}"
    fused_names = dict(deploy_network(net).named_modules())
    assert [p for p in required if p not in fused_names] == []


@pytest.mark.parametrize("name", STUDENTS)
def test_onnx_export_dynamic_size(name, tmp_path):
    scale = max(_scales(name))
    net = _build(name, scale).cpu()
    _perturb(net)
    fused = deploy_network(net)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        fused,
        (torch.rand(1, 3, 16, 16),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 17, 23), (2, 3, 24, 20)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            ref = fused(x).numpy()
        (out,) = session.run(None, {"input": x.numpy()})
        assert out.shape == ref.shape == (shape[0], 3, shape[2] * scale, shape[3] * scale)
        assert np.abs(out - ref).max() <= 1e-4, f"{name}: ONNX differs from PyTorch at input {shape}"
