"""Counts as the organisers compute them (fvcore FLOPs = MACs, NTIRE activations), portable paths, INT8 float nodes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from fvcore.nn import FlopCountAnalysis
from torch import nn

from kit.archs import deploy_network
from kit.export.budget import count_macs, measure_budget
from kit.export.counts import challenge_counts, fvcore_flops, ntire_activations
from kit.export.int8 import float_nodes
from kit.export.onnx_export import export_onnx
from kit.export.portable import portable_path, scrub_paths
from kit.options import REPO_ROOT


def _multiply_adds_by_hand(conv: nn.Conv2d, x: torch.Tensor) -> int:
    """Count the multiply-adds of a convolution by walking its output positions (no formula from fvcore)."""
    n, _, h, w = x.shape
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    ph, pw = conv.padding
    per_group_in = conv.in_channels // conv.groups
    total = 0
    for _ in range(n):
        for _oc in range(conv.out_channels):
            for _oy in range(0, h + 2 * ph - kh + 1, sh):
                for _ox in range(0, w + 2 * pw - kw + 1, sw):
                    total += per_group_in * kh * kw  # one multiply-add per weight tap, padded taps included
    return total


def test_fvcore_counts_one_multiply_add_as_one_flop():
    for conv, shape in (
        (nn.Conv2d(3, 8, 3, padding=1), (1, 3, 12, 10)),
        (nn.Conv2d(8, 4, 3, stride=2), (1, 8, 11, 9)),
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), (1, 8, 7, 7)),  # depthwise
    ):
        x = torch.rand(*shape)
        hand = _multiply_adds_by_hand(conv, x)
        assert int(FlopCountAnalysis(conv, x).total()) == hand  # fvcore's "FLOPs" are MACs (bias not counted)
        assert fvcore_flops(conv, shape) == hand
        assert count_macs(conv, shape) == hand  # torch's FlopCounterMode counts 2 per MAC; count_macs halves it


def test_size_gate_counts_fvcore_and_says_where_it_differs_from_flopcountermode():
    net = deploy_network(
        build_network({"type": "RLFNStudent", "num_feat": 8, "num_block": 2, "img_residual": "bicubic"})
    )
    budget = measure_budget(net, (1, 3, 24, 24))
    assert budget.macs == int(FlopCountAnalysis(net, torch.rand(1, 3, 24, 24)).total())
    # fvcore counts ESA's bilinear resize (4 per output element, 16 channels at full size, 2 blocks);
    # FlopCounterMode does not, and neither counts the bicubic residual.
    assert budget.macs - count_macs(net, (1, 3, 24, 24)) == 2 * 4 * 16 * 24 * 24


class _Sub(nn.Conv2d):
    """A Conv2d subclass: NTIRE's isinstance check counts it."""


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = _Sub(4, 2, 1)
        self.up = nn.ConvTranspose2d(2, 2, 2, stride=2)
        self.fc = nn.Linear(2, 2)
        self.w = nn.Parameter(torch.randn(5, 4, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)  # 4 x 8 x 8 = 256
        y = self.a(torch.cat([y[:, :3]], 1))  # the same module again: 256 more, one more conv
        _ = F.conv2d(y, self.w, padding=1)  # functional: not counted
        y = self.up(self.b(y))  # 2 x 8 x 8 = 128, then 2 x 16 x 16 = 512
        return self.fc(y.mean((2, 3)))  # Linear: not counted


def test_ntire_activations_semantics():
    activations, num_conv = ntire_activations(_Toy(), (3, 8, 8))
    assert (activations, num_conv) == (256 + 256 + 128 + 512, 4)


def test_challenge_counts_of_a_student():
    net = deploy_network(build_network({"type": "RepSRStudent", "num_feat": 4, "num_block": 1}))
    counts = challenge_counts(net, (1, 3, 16, 16))
    assert counts.params == sum(p.numel() for p in net.parameters())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert counts.num_conv == len(convs) == 3
    assert counts.activations == 16 * 16 * (4 + 4 + 3 * 16)  # conv_first, body.0, conv_last (3 x 4^2 channels)
    assert counts.record()["gflops"] == counts.flops / 1e9


def test_portable_paths():
    inside = REPO_ROOT / "datasets" / "bundled" / "val" / "HR"
    assert portable_path(inside) == "datasets/bundled/val/HR"
    assert portable_path("/data/DIV2K/DIV2K_valid_HR") == "DIV2K_valid_HR"
    assert portable_path("options/distill.yml") == "options/distill.yml"
    outside = Path(tempfile.gettempdir()) / "DIV2K" / "HR"
    text = f"LQ '{inside}' GT '{outside}', 1/255, Y/RGB, MACs = FLOPs / 2, node /body/body.0/Add"
    assert scrub_paths({"d": [text], str(inside): 1}) == {
        "d": ["LQ 'datasets/bundled/val/HR' GT 'HR', 1/255, Y/RGB, MACs = FLOPs / 2, node /body/body.0/Add"],
        "datasets/bundled/val/HR": 1,
    }


def test_int8_float_nodes_are_the_image_path_and_the_end_convs(tmp_path):
    import onnx

    net = deploy_network(
        build_network({"type": "RLFNStudent", "num_feat": 8, "num_block": 1, "img_residual": "bicubic"})
    )
    model = onnx.load(str(export_onnx(net, tmp_path / "m.onnx", (1, 3, 16, 16))))
    by_name = {n.name: n for n in model.graph.node}
    image = float_nodes(model, ["image"])
    assert sorted(by_name[n].op_type for n in image) == ["Add", "Resize"]  # bicubic residual and the final sum
    assert "output" in by_name[next(n for n in image if by_name[n].op_type == "Add")].output
    assert [by_name[n].input[0] for n in float_nodes(model, ["first"])] == ["input"]
    (last,) = float_nodes(model, ["last"])
    assert by_name[last].input[1] == "upsampler.0.weight"


def test_bicubic_rewrite_is_exact_and_stays_float_in_int8(tmp_path):
    import onnx
    import onnxruntime as ort

    from kit.export.onnx_rewrite import bicubic_phase_kernel, rewrite_cubic_upsampling

    assert bicubic_phase_kernel(4).sum(axis=1) == pytest.approx([1.0] * 4)  # each phase's weights sum to 1

    class Up(nn.Module):
        def __init__(self, s: int) -> None:
            super().__init__()
            self.s = s

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=self.s, mode="bicubic", align_corners=False)

    for s in (2, 3, 4):
        model = onnx.load(str(export_onnx(Up(s), tmp_path / f"up{s}.onnx", (1, 3, 8, 8))))
        assert len(rewrite_cubic_upsampling(model)) == 1
        assert "Resize" not in {n.op_type for n in model.graph.node}
        onnx.checker.check_model(model, full_check=True)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        for shape in ((1, 3, 8, 8), (2, 3, 5, 9), (1, 3, 1, 2)):  # borders: PyTorch clamps the source index
            x = torch.rand(*shape)
            (y,) = session.run(None, {"input": x.numpy()})
            assert float((torch.from_numpy(y) - Up(s)(x)).abs().max()) < 2e-6

    net = deploy_network(
        build_network({"type": "RLFNStudent", "num_feat": 8, "num_block": 1, "img_residual": "bicubic"})
    )
    model = onnx.load(str(export_onnx(net, tmp_path / "rlfn.onnx", (1, 3, 16, 16))))
    rewrite_cubic_upsampling(model)
    by_name = {n.name: n for n in model.graph.node}
    assert sorted(by_name[n].op_type for n in float_nodes(model, ["image"])) == ["Add", "Conv", "DepthToSpace", "Pad"]
    assert [by_name[n].input[0] for n in float_nodes(model, ["first"])] == ["input"]  # conv_first, not the rewrite
