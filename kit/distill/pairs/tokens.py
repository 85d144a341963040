"""Token sequences as feature maps: a transformer layer's ``(N, L, C)`` read as ``(N, C, H, W)``.

SwinIR's and HAT's main layers (``layers.k``) return token sequences: ``L = H·W`` positions of the (window-padded)
input grid, row-major, ``C`` channels, which is how their own ``PatchUnEmbed`` turns them back into maps. A feature
pair compares maps, so a 3-D feature is reshaped the same way; the grid is the factorisation of ``L`` closest to
the network input's aspect ratio (the padded grid of a square crop is square).
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["as_map", "map_shape", "token_grid"]


def token_grid(length: int, image_hw: tuple[int, int]) -> tuple[int, int] | None:
    """The grid ``(H, W)`` with ``H·W = length`` whose aspect ratio is closest to the image's (``None``: L < 1)."""
    if length < 1:
        return None
    target = math.log(image_hw[0] / image_hw[1])
    best = None
    for h in range(1, math.isqrt(length) + 1):
        if length % h:
            continue
        for grid in ((h, length // h), (length // h, h)):
            score = abs(math.log(grid[0] / grid[1]) - target)
            if best is None or score < best[0]:
                best = (score, grid)
    return best[1]


def map_shape(shape: tuple[int, ...] | str, image_hw: tuple[int, int]) -> tuple[int, ...] | str:
    """The shape a pair compares: ``(N, C, H, W)`` as is, tokens ``(N, L, C)`` as ``(N, C, H, W)``; else unchanged."""
    if isinstance(shape, str) or len(shape) != 3:
        return shape
    n, length, c = shape
    h, w = token_grid(length, image_hw) or (0, 0)
    return (n, c, h, w) if h else shape


def as_map(feature: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """``feature`` as a map: 4-D as is; tokens ``(N, L, C)`` → ``(N, C, H, W)`` (a view, see :func:`token_grid`)."""
    if feature.dim() != 3:
        return feature
    n, length, c = feature.shape
    h, w = token_grid(length, tuple(image_hw)) or (0, 0)
    if not h:
        return feature
    return feature.transpose(1, 2).reshape(n, c, h, w)
