"""FeatureRecorder: call selection, errors, lifecycle, in-place safety, BasicSR's RRDBNet."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision, registers the kit)

# isort: split
from basicsr.archs.rrdbnet_arch import RRDBNet

from kit.distill.pairs import FeatureRecorder, closest_paths, module_paths, parse_spec

DEVICE = torch.device(os.environ.get("KIT_TEST_DEVICE", "cpu"))


class TwiceNet(nn.Module):
    """Calls ``act`` twice on distinguishable inputs; ``body`` is a Sequential with numbered children."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(2, 3, 3, padding=1)
        self.act = nn.Tanh()
        self.body = nn.Sequential(*[nn.Conv2d(3, 3, 1) for _ in range(20)])
        self.unused = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.head(x))  # call 0
        b = self.act(2 * a + 1)  # call 1
        return self.body(b)


class InplaceNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.relu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.conv(x), x)


@pytest.fixture
def net() -> TwiceNet:
    torch.manual_seed(0)
    return TwiceNet().to(DEVICE)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(1)).to(DEVICE)


def test_parse_spec():
    assert parse_spec("body.7") == ("body.7", None)
    assert parse_spec("lrelu#2") == ("lrelu", 2)
    with pytest.raises(ValueError, match="integer"):
        parse_spec("lrelu#x")
    with pytest.raises(ValueError, match="integer"):
        parse_spec("lrelu#-1")


def test_picks_each_call_of_reused_module(net, x):
    with FeatureRecorder(net, {"first": "act#0", "second": "act#1", "mid": "body.7"}) as rec:
        net(x)
        first, second, mid = rec.get("first"), rec.get("second"), rec.get("mid")
        assert rec.calls("first") == 2
    a = torch.tanh(net.head(x))
    b = torch.tanh(2 * a + 1)
    torch.testing.assert_close(first, a)
    torch.testing.assert_close(second, b)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(mid, net.body[:8](b))


def test_source_input(net, x):
    with FeatureRecorder(net, {"in1": "act#1"}, source="input") as rec:
        net(x)
        torch.testing.assert_close(rec.get("in1"), 2 * torch.tanh(net.head(x)) + 1)


def test_wrong_path_lists_closest(net):
    with pytest.raises(ValueError, match=r"student path 'body\.77' not found; closest: body\.7, body\.17"):
        FeatureRecorder(net, {"mid": "body.77"}, role="student")
    with pytest.raises(ValueError, match="module_paths"):
        FeatureRecorder(net, {"mid": "zzzzzz"})


def test_module_paths_and_closest(net):
    paths = module_paths(net)
    assert paths[:2] == ["head", "act"] and "body.19" in paths and "" not in paths
    assert closest_paths(net, "body.77", n=2) == ["body.7", "body.17"]


def test_double_call_without_index(net, x):
    with FeatureRecorder(net, {"a": "act"}, role="teacher") as rec:
        net(x)
        with pytest.raises(ValueError, match=r"teacher path 'act' ran 2 times.*'act#k' with k in 0\.\.1"):
            rec.get("a")


def test_index_out_of_range(net, x):
    with FeatureRecorder(net, {"a": "act#2"}) as rec:
        net(x)
        with pytest.raises(ValueError, match=r"call 2 but 'act' ran 2 times"):
            rec.get("a")


def test_never_fired(net, x):
    with FeatureRecorder(net, {"u": "unused"}) as rec:
        net(x)
        with pytest.raises(ValueError, match="did not run"):
            rec.get("u")


def test_not_attached_hint(net, x):
    rec = FeatureRecorder(net, {"m": "body.0"})
    net(x)
    with pytest.raises(ValueError, match="not attached"):
        rec.get("m")


def test_unknown_name(net, x):
    with FeatureRecorder(net, {"m": "body.0"}) as rec:
        net(x)
        with pytest.raises(KeyError, match="it has: m"):
            rec.get("nope")


def test_under_inference_mode(net, x):
    with FeatureRecorder(net, {"mid": "body.3"}) as rec, torch.inference_mode():
        net(x)
        feat = rec.get("mid")
    assert feat.is_inference()
    with torch.no_grad():
        torch.testing.assert_close(feat, net.body[:4](torch.tanh(2 * torch.tanh(net.head(x)) + 1)))


def test_student_feature_keeps_gradient(net, x):
    with FeatureRecorder(net, {"mid": "body.3"}) as rec:
        net(x)
        rec.get("mid").sum().backward()
    assert net.head.weight.grad is not None and net.head.weight.grad.abs().sum() > 0
    assert net.body[10].weight.grad is None  # only layers before body.3 took part


def test_remove_hooks(net, x):
    before_pre = len(net._forward_pre_hooks)
    rec = FeatureRecorder(net, {"a": "act#0", "m": "body.5"}).attach()
    assert len(net.act._forward_hooks) == 1 and len(net.body[5]._forward_hooks) == 1
    rec.attach()  # idempotent
    assert len(net.act._forward_hooks) == 1
    rec.remove()
    assert len(net.act._forward_hooks) == 0
    assert len(net.body[5]._forward_hooks) == 0
    assert len(net._forward_pre_hooks) == before_pre
    assert not rec.attached


def test_clear_and_auto_clear(net, x):
    with FeatureRecorder(net, {"a": "act#1"}) as rec:
        net(x)
        net(x)  # auto_clear: counts restart at each forward of the model
        assert rec.calls("a") == 2
        rec.clear()
        assert rec.calls("a") == 0
        with pytest.raises(ValueError, match="did not run"):
            rec.get("a")
    with FeatureRecorder(net, {"a": "act#1"}, auto_clear=False) as rec:
        net(x)
        net(x)
        assert rec.calls("a") == 4
        rec.clear()
        net(x)
        assert rec.calls("a") == 2


def test_latest_forward_is_recorded(net, x):
    with FeatureRecorder(net, {"a": "act#0"}) as rec:
        net(x)
        net(-x)
        torch.testing.assert_close(rec.get("a"), torch.tanh(net.head(-x)))


def test_inplace_after_record_does_not_change_it():
    torch.manual_seed(0)
    model = InplaceNet().to(DEVICE)
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    pre = model.conv(x).detach()
    assert (pre < 0).any()
    with FeatureRecorder(model, {"c": "conv"}) as rec:
        model(x)
        torch.testing.assert_close(rec.get("c"), pre)
    # Without the clone the in-place LeakyReLU rewrites the recorded tensor: the clone is what protects it.
    with FeatureRecorder(model, {"c": "conv"}, clone=False) as rec:
        model(x)
        torch.testing.assert_close(rec.get("c"), F.leaky_relu(pre, 0.2))


def test_tuple_output_records_first_tensor():
    model = TupleNet().to(DEVICE)
    x = torch.randn(1, 2, 3, 3, device=DEVICE)
    with FeatureRecorder(model, {"root": ""}) as rec:
        model(x)
        torch.testing.assert_close(rec.get("root"), model.conv(x))


def test_bad_source(net):
    with pytest.raises(ValueError, match="source"):
        FeatureRecorder(net, {"a": "act"}, source="outputs")


def test_rrdbnet_lrelu_calls_and_body():
    torch.manual_seed(0)
    model = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, num_grow_ch=4, scale=4).to(DEVICE).eval()
    x = torch.rand(1, 3, 6, 6, device=DEVICE)
    specs = {"up1": "lrelu#0", "up2": "lrelu#1", "hr": "lrelu#2", "body1": "body.1"}
    with FeatureRecorder(model, specs, role="teacher") as rec, torch.inference_mode():
        out = model(x)
        got = rec.get_all()
        assert rec.calls("up1") == 3
        # By hand, following RRDBNet.forward (its lrelu is in place, so compare against fresh ops).
        feat = model.conv_first(x)
        body1 = model.body[1](model.body[0](feat))
        feat = feat + model.conv_body(body1)
        up1 = F.leaky_relu(model.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        up2 = F.leaky_relu(model.conv_up2(F.interpolate(up1, scale_factor=2, mode="nearest")), 0.2)
        hr = F.leaky_relu(model.conv_hr(up2), 0.2)
        torch.testing.assert_close(got["body1"], body1)
        torch.testing.assert_close(got["up1"], up1)
        torch.testing.assert_close(got["up2"], up2)
        torch.testing.assert_close(got["hr"], hr)
        torch.testing.assert_close(model.conv_last(hr), out)
    assert got["up1"].shape == (1, 8, 12, 12) and got["hr"].shape == (1, 8, 24, 24)
    with FeatureRecorder(model, {"l": "lrelu"}) as rec, torch.inference_mode():
        model(x)
        with pytest.raises(ValueError, match=r"ran 3 times"):
            rec.get("l")
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
