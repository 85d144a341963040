"""Tiled inference: run a model on overlapping tiles of an image too large for memory, and blend them.

The image is cut into a grid of ``tile × tile`` LR tiles; neighbouring tiles share at least ``overlap`` pixels.
Inside each shared band, the middle ``feather`` pixels are cross-faded linearly, and the ``(overlap − feather)
// 2`` pixels next to each tile's cut edge are discarded context (weight 0), so that no output pixel comes
from a tile that could not see all of its receptive field. Hence, for a model whose receptive radius is
``r`` (receptive field ``2r + 1``), the tiled output equals the whole-image output up to float rounding when
``(overlap − feather) // 2 ≥ r``; with the default ``feather=1`` that is ``overlap ≥ 2r + 1``. For models whose
receptive field spans the image (SwinIR-like transformers) nothing is exact; a wider ``feather`` hides seams.

Tiles at the image border keep their outer pixels (the model pads them as it would pad the whole image).
This is the same idea as Real-ESRGAN's ``tile`` / ``tile_pad`` (Wang et al. 2021, arXiv:2107.10833), with a
cross-fade instead of a hard crop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["tile_starts", "tiled_forward"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``length`` pixels, evenly spread, sharing at least ``overlap`` pixels.

    Args:
        length: Image size along the axis.
        tile: Tile size (the whole axis is one tile when ``tile >= length``).
        overlap: Minimum number of pixels shared by neighbours.

    Returns:
        Sorted starts; the first is 0 and the last is ``length - tile``.
    """
    if tile >= length:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _ramp(d: Tensor, margin: float, feather: float) -> Tensor:
    """Weight at distance ``d`` (pixel centres) from a cut edge: 0 up to ``margin``, then linear over ``feather``."""
    if feather <= 0:
        return (d > margin).to(d.dtype)
    return ((d - margin) / feather).clamp(0.0, 1.0)


def _axis_weights(length: int, tile: int, overlap: int, feather: int, scale: int) -> list[tuple[int, int, Tensor]]:
    """Per tile along one axis: (LR start, LR size, normalised HR weights of length size·scale)."""
    size = min(tile, length)
    starts = tile_starts(length, tile, overlap)
    margin, fade = (overlap - feather) // 2 * scale, feather * scale
    d = torch.arange(size * scale, dtype=torch.float64) + 0.5  # HR pixel centres from the tile's first edge
    raw = []
    for s in starts:
        w_first = _ramp(d, margin, fade) if s > 0 else torch.ones_like(d)
        w_last = _ramp(size * scale - d, margin, fade) if s + size < length else torch.ones_like(d)
        raw.append(torch.minimum(w_first, w_last))
    total = torch.zeros(length * scale, dtype=torch.float64)
    for s, w in zip(starts, raw):
        total[s * scale : (s + size) * scale] += w
    if bool((total <= 0).any()):
        raise ValueError(
            f"tile={tile} is too small for overlap={overlap}, feather={feather}: some pixels get no weight; "
            "use a larger tile or a smaller overlap"
        )
    return [(s, size, w / total[s * scale : (s + size) * scale]) for s, w in zip(starts, raw)]


def _as_tensor(out, like: Tensor) -> Tensor:
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    elif isinstance(out, (list, tuple)) and len(out) == 1:  # onnxruntime's session.run returns a list
        return _as_tensor(out[0], like)
    if not torch.is_tensor(out):
        raise TypeError(f"tiled_forward: the model returned {type(out).__name__}; expected a Tensor or numpy array")
    return out.to(like.device)


def _checked_feather(lq: Tensor, scale: int, tile: int, overlap: int, feather: int | None) -> int:
    """The feather width :func:`tiled_forward` uses; raises on a bad shape or tiling."""
    if lq.dim() != 4:
        raise ValueError(f"tiled_forward expects lq of shape (N, C, H, W), got {tuple(lq.shape)}")
    if not (isinstance(scale, int) and scale >= 1):
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap={overlap}, tile={tile}")
    if feather is None:
        feather = min(1, overlap)
    if not 0 <= feather <= overlap:
        raise ValueError(f"need 0 <= feather <= overlap, got feather={feather}, overlap={overlap}")
    return feather


@torch.no_grad()
def tiled_forward(
    model: Callable[[Tensor], Tensor | np.ndarray],
    lq: Tensor,
    scale: int,
    tile: int,
    overlap: int,
    feather: int | None = None,
) -> Tensor:
    """Run ``model`` on overlapping tiles of ``lq`` and blend the outputs (under ``torch.no_grad``).

    Args:
        model: An ``nn.Module`` or any callable mapping ``(N, C, h, w)`` to ``(N, C_out, h·scale, w·scale)``,
            e.g. a wrapper around an onnxruntime session (numpy outputs are accepted).
        lq: Input ``(N, C, H, W)``.
        scale: Output/input size ratio of the model (1 for denoising/deblurring, 2–4 for SR).
        tile: LR tile size; ``tile >= max(H, W)`` runs the model once on the whole image.
        overlap: LR pixels shared by neighbouring tiles; at least the model's receptive field for exactness.
        feather: LR width of the linear cross-fade inside each shared band (``0 <= feather <= overlap``);
            default 1 (0 when ``overlap`` is 0: tiles that merely touch).

    Returns:
        ``(N, C_out, H·scale, W·scale)`` on ``lq``'s device, in the model output's dtype.
    """
    feather = _checked_feather(lq, scale, tile, overlap, feather)
    n, _, h, w = lq.shape

    def run(x: Tensor) -> Tensor:
        y = _as_tensor(model(x), lq)
        expected = (x.shape[0], x.shape[2] * scale, x.shape[3] * scale)
        if y.dim() != 4 or (y.shape[0], y.shape[2], y.shape[3]) != expected:
            raise ValueError(
                f"model output {tuple(y.shape)} for a tile {tuple(x.shape)} is not (N, C, h·{scale}, w·{scale}); "
                "is scale right?"
            )
        return y

    if tile >= h and tile >= w:
        return run(lq)
    rows = _axis_weights(h, tile, overlap, feather, scale)
    cols = _axis_weights(w, tile, overlap, feather, scale)
    out, out_dtype = None, lq.dtype
    for y0, th, wy in rows:
        for x0, tw, wx in cols:
            y = run(lq[:, :, y0 : y0 + th, x0 : x0 + tw])
            if out is None:  # accumulate in at least float32 (half-precision models)
                out_dtype = y.dtype
                acc = torch.promote_types(y.dtype, torch.float32)
                out = torch.zeros(n, y.shape[1], h * scale, w * scale, dtype=acc, device=y.device)
            weight = (wy[:, None] * wx[None, :]).to(device=y.device, dtype=out.dtype)
            out[:, :, y0 * scale : (y0 + th) * scale, x0 * scale : (x0 + tw) * scale] += y.to(out.dtype) * weight
    return out.to(out_dtype)
