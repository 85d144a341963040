"""LPIPS wrapper: equals the lpips package called directly, never downloads, names missing backbone files."""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision, registers the kit)

# isort: split
import lpips

from kit.metrics import LPIPSMetric, backbone_weights_path, build_lpips

DEVICE = torch.device(os.environ.get("KIT_TEST_DEVICE", "cpu"))
FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """An empty TORCH_HOME; any download or socket connection raises (and is recorded)."""
    attempts: list[str] = []

    def refuse(url, *args, **kwargs):
        attempts.append(str(url))
        raise AssertionError(f"network access attempted: {url}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A real photo crop in [0, 1] and a noisy version, (2, 3, 32, 32)."""
    imgs = [skimage.data.astronaut()[100:132, 200:232], skimage.data.coffee()[150:182, 300:332]]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    y = (x + 0.08 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    return x.to(DEVICE), y.to(DEVICE)


@pytest.fixture
def fast_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip torch's weight initialisation (VGG16's 138M-parameter init dominates the test's time); the test
    fills the weights it uses itself."""
    for name in ("kaiming_uniform_", "kaiming_normal_", "normal_", "uniform_", "constant_"):
        monkeypatch.setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_wrapper_equals_lpips_called_directly(net: str, offline: list[str], fast_init: None) -> None:
    metric = LPIPSMetric(net, pretrained_backbone=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in metric.model.net.parameters():  # a random backbone with sane activations
            p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p[0].numel()) ** 0.5)
    metric = metric.to(DEVICE)
    direct = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    direct.load_state_dict(metric.model.state_dict())  # same random backbone, same packaged linear layers
    direct = direct.to(DEVICE).eval()
    x, y = _pair()
    with torch.no_grad():
        expected = direct(2 * x - 1, 2 * y - 1).flatten()
    got = metric(x, y)
    assert got.shape == (2,) and bool(torch.isfinite(got).all()) and float(got.min()) > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    if net == "alex":  # cheap enough for extra checks
        with torch.no_grad():
            unscaled = direct(x, y).flatten()
        assert not torch.allclose(got, unscaled, rtol=1e-3)  # the [0, 1] -> [-1, 1] scaling is applied
        assert float(metric(x, x).abs().max()) < 1e-6
    assert offline == []


def test_packaged_linear_layers_are_loaded() -> None:
    model = build_lpips("alex", pretrained_backbone=False)
    shipped = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth", map_location="cpu")
    torch.testing.assert_close(model.lin0.model[1].weight, shipped["lin0.model.1.weight"])
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_missing_backbone_names_file_and_folder(net: str, tmp_path: Path, offline: list[str]) -> None:
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert backbone_weights_path(net) == folder / FILES[net]
    with pytest.raises(FileNotFoundError) as info:
        LPIPSMetric(net)
    assert FILES[net] in str(info.value) and str(folder) in str(info.value)
    assert offline == []  # failed before any download attempt


def test_cached_backbone_is_used(tmp_path: Path, offline: list[str], fast_init: None) -> None:
    """A file in $TORCH_HOME/hub/checkpoints is loaded (a fake one: constant tensors stored as 1-element views)."""
    from torchvision.models import alexnet

    shapes = {k: v.shape for k, v in alexnet().state_dict().items()}
    fake = {k: torch.full((1,), 0.01 * i).expand(s) for i, (k, s) in enumerate(shapes.items())}
    path = backbone_weights_path("alex")
    path.parent.mkdir(parents=True)
    torch.save(fake, path)
    metric = LPIPSMetric("alex")
    first_conv = metric.model.net.slice1[0].weight
    assert torch.equal(first_conv, fake["features.0.weight"])
    assert offline == []


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="one of alex, vgg"):
        build_lpips("resnet", pretrained_backbone=False)
    metric = LPIPSMetric("alex", pretrained_backbone=False)
    with pytest.raises(ValueError, match="shapes differ"):
        metric(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 33))
