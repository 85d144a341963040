"""Tiled inference equals the whole-image forward for a model of limited receptive field."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision, registers the kit)

# isort: split
from kit.infer.tiled import tile_starts, tiled_forward

DEVICE = torch.device(os.environ.get("KIT_TEST_DEVICE", "cpu"))
RADIUS = 4  # four 3x3 convs at LR resolution: receptive field 2 * 4 + 1 = 9
FIELD = 2 * RADIUS + 1


class TinySR(nn.Module):
    """Three 3x3 convs and a 3x3 conv + PixelShuffle upsampler (zero padding, like BasicSR's SR nets)."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 3 * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _setup(scale: int, h: int = 37, w: int = 53) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(scale)
    model = TinySR(scale).to(DEVICE).eval()
    lq = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    with torch.no_grad():
        whole = model(lq)
    return model, lq, whole


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_equals_whole_image_at_overlap_equal_receptive_field(scale: int) -> None:
    model, lq, whole = _setup(scale)  # odd sizes 37 x 53: uneven tiles and edges
    out = tiled_forward(model, lq, scale, tile=16, overlap=FIELD)
    assert out.shape == whole.shape == (2, 3, 37 * scale, 53 * scale)
    assert float((out - whole).abs().max()) < 1e-3  # every pixel, the image edges included


def test_wide_feather_is_exact_with_enough_overlap() -> None:
    model, lq, whole = _setup(4)
    feather = 6
    overlap = 2 * RADIUS + feather  # (overlap - feather) // 2 == RADIUS
    out = tiled_forward(model, lq, 4, tile=20, overlap=overlap, feather=feather)
    assert float((out - whole).abs().max()) < 1e-3


def test_too_little_overlap_shows_seams() -> None:
    """The comparison above has teeth: without enough context the tiles differ from the whole image."""
    model, lq, whole = _setup(2)
    for overlap, feather in ((0, 0), (FIELD, FIELD)):  # no overlap; overlap all feather (no discarded context)
        out = tiled_forward(model, lq, 2, tile=16, overlap=overlap, feather=feather)
        assert float((out - whole).abs().max()) > 1e-3


def test_tile_larger_than_image_is_a_plain_forward() -> None:
    model, lq, whole = _setup(4)
    calls = []

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return model(x)

    out = tiled_forward(counting, lq, 4, tile=64, overlap=FIELD)
    assert calls == [tuple(lq.shape)]
    assert torch.equal(out, whole)


def test_one_axis_fits_in_a_tile() -> None:
    model, lq, whole = _setup(3, h=12, w=61)
    out = tiled_forward(model, lq, 3, tile=20, overlap=FIELD)
    assert float((out - whole).abs().max()) < 1e-3


def test_numpy_callable_like_onnxruntime() -> None:
    """A callable returning numpy arrays in a one-element list (onnxruntime's ``session.run`` style)."""
    model, lq, whole = _setup(2)

    def session_like(x: torch.Tensor) -> list[np.ndarray]:
        with torch.no_grad():
            return [model(x).cpu().numpy()]

    out = tiled_forward(session_like, lq, 2, tile=18, overlap=FIELD)
    assert out.device == lq.device
    assert float((out - whole).abs().max()) < 1e-3


def test_tile_starts_cover_with_overlap() -> None:
    for length, tile, overlap in ((37, 16, 9), (100, 40, 20), (105, 40, 20), (17, 16, 9), (16, 16, 4)):
        starts = tile_starts(length, tile, overlap)
        size = min(tile, length)
        assert starts[0] == 0 and starts[-1] + size == length
        assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))


def test_clear_errors() -> None:
    model, lq, _ = _setup(2)
    with pytest.raises(ValueError, match="overlap < tile"):
        tiled_forward(model, lq, 2, tile=8, overlap=8)
    with pytest.raises(ValueError, match="feather <= overlap"):
        tiled_forward(model, lq, 2, tile=16, overlap=4, feather=5)
    with pytest.raises(ValueError, match="is scale right"):
        tiled_forward(model, lq, 4, tile=16, overlap=FIELD)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        tiled_forward(model, lq[0], 2, tile=16, overlap=FIELD)


def test_touching_tiles_without_overlap() -> None:
    """``overlap=0`` (tiles that merely touch): exact for a per-pixel model, e.g. nearest upsampling."""
    model = nn.Upsample(scale_factor=2, mode="nearest")
    lq = torch.rand(1, 3, 37, 50, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    out = tiled_forward(model, lq, scale=2, tile=16, overlap=0)
    torch.testing.assert_close(out, model(lq), rtol=0, atol=1e-6)
