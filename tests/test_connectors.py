"""Connectors: shapes, norm/activation options, resize, and the YAML builder's loud errors."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision, registers the kit)

# isort: split
from kit.distill.pairs import CONNECTOR_REGISTRY, ConvConnector, IdentityConnector, build_connector

DEVICE = torch.device(os.environ.get("KIT_TEST_DEVICE", "cpu"))


def _x(shape: tuple[int, ...] = (2, 4, 6, 6)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(DEVICE)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_output_shape(kernel_size):
    conn = ConvConnector(4, 7, kernel_size=kernel_size).to(DEVICE)
    assert conn(_x()).shape == (2, 7, 6, 6)
    assert conn.conv.kernel_size == (kernel_size, kernel_size)


def test_default_is_conv_bn_relu():
    conn = ConvConnector(4, 7)
    assert isinstance(conn.norm, nn.BatchNorm2d) and isinstance(conn.act, nn.ReLU)
    assert conn.conv.bias is None  # the norm carries the bias
    assert (conn.to(DEVICE)(_x()) >= 0).all()


def test_no_norm_no_act_is_plain_conv():
    conn = ConvConnector(4, 7, kernel_size=3, norm=None, act=None).to(DEVICE)
    x = _x()
    assert conn.conv.bias is not None
    torch.testing.assert_close(conn(x), F.conv2d(x, conn.conv.weight, conn.conv.bias, padding=1))
    assert (conn(x) < 0).any()  # signed output, as restoration features are


@pytest.mark.parametrize(
    ("act", "cls", "ref"),
    [
        ("relu", nn.ReLU, F.relu),
        ("lrelu", nn.LeakyReLU, lambda y: F.leaky_relu(y, 0.2)),
        ("gelu", nn.GELU, F.gelu),
        ("prelu", nn.PReLU, lambda y: F.leaky_relu(y, 0.25)),  # PReLU starts at slope 0.25
    ],
)
def test_activations(act, cls, ref):
    conn = ConvConnector(4, 5, norm=None, act=act).to(DEVICE)
    assert isinstance(conn.act, cls)
    x = _x()
    pre = conn.conv(x).detach()
    assert (pre < 0).any()
    torch.testing.assert_close(conn(x), ref(pre))


def test_prelu_per_channel():
    assert ConvConnector(4, 5, act="prelu").act.weight.shape == (5,)


def test_lrelu_slope():
    assert ConvConnector(4, 5, act="lrelu").act.negative_slope == 0.2


def test_bn_normalises_in_train_mode():
    conn = ConvConnector(4, 5, norm="bn", act=None).to(DEVICE).train()
    y = conn(_x((8, 4, 6, 6)) * 10 + 3)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(5, device=DEVICE), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest", "area"])
def test_resize_to_size(mode):
    conn = ConvConnector(4, 7, norm=None, act=None, resize=mode).to(DEVICE)
    x = _x()
    y = conn(x, size=(12, 12))
    assert y.shape == (2, 7, 12, 12)
    align = False if mode in ("bilinear", "bicubic") else None
    torch.testing.assert_close(y, F.interpolate(conn(x), size=(12, 12), mode=mode, align_corners=align))
    assert conn(x, size=(6, 6)).shape == (2, 7, 6, 6)
    assert conn(x).shape == (2, 7, 6, 6)


def test_no_resize_when_resize_is_none():
    conn = ConvConnector(4, 7).to(DEVICE)
    assert conn(_x(), size=(12, 12)).shape == (2, 7, 6, 6)


def test_identity_connector():
    x = _x()
    assert IdentityConnector()(x, size=(3, 3)) is x
    assert IdentityConnector(resize="bilinear")(x, size=(3, 3)).shape == (2, 4, 3, 3)


def test_wrong_input_channels():
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\), got \(2, 5, 6, 6\)"):
        ConvConnector(4, 7).to(DEVICE)(_x((2, 5, 6, 6)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm": "ln"}, "norm='ln'.*bn, null"),
        ({"act": "swish"}, "act='swish'"),
        ({"resize": "linear"}, "resize='linear'"),
        ({"kernel_size": 2}, "odd"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvConnector(4, 7, **kwargs)


def test_gradients_reach_connector():
    conn = ConvConnector(4, 7, kernel_size=3).to(DEVICE)
    conn(_x()).sum().backward()
    assert all(p.grad is not None for p in conn.parameters())


def test_registry():
    assert CONNECTOR_REGISTRY.get("ConvConnector") is ConvConnector
    assert CONNECTOR_REGISTRY.get("IdentityConnector") is IdentityConnector


def test_build_from_dict():
    opt = {"type": "ConvConnector", "in_channels": 48, "out_channels": 64, "kernel_size": 3, "norm": None}
    conn = build_connector(opt)
    assert isinstance(conn, ConvConnector)
    assert conn.conv.in_channels == 48 and conn.conv.out_channels == 64 and conn.conv.kernel_size == (3, 3)
    assert isinstance(conn.norm, nn.Identity) and isinstance(conn.act, nn.ReLU)
    assert opt["type"] == "ConvConnector"  # the options are not consumed
    assert build_connector(None) is None


def test_build_unknown_key_names_class():
    with pytest.raises(
        ValueError, match=r"connector: ConvConnector has no argument 'kernel' \(did you mean 'kernel_size'\?\)"
    ):
        build_connector({"type": "ConvConnector", "in_channels": 4, "out_channels": 7, "kernel": 3})


def test_build_missing_argument():
    with pytest.raises(ValueError, match=r"connector: ConvConnector needs out_channels"):
        build_connector({"type": "ConvConnector", "in_channels": 4})


def test_build_unknown_type():
    with pytest.raises(
        ValueError, match=r"unknown type 'ConvConector' \(no such connector is registered\); closest: ConvConnector"
    ):
        build_connector({"type": "ConvConector", "in_channels": 4, "out_channels": 7})
    with pytest.raises(ValueError, match="expected a mapping with 'type:'"):
        build_connector({"in_channels": 4})
