"""Inference helpers: tiled forward passes and comparison pictures (image file I/O is :mod:`kit.images`)."""

from __future__ import annotations

from kit.infer.compare import comparison_png, pick_crop_box, upscale_nearest
from kit.infer.tiled import tile_starts, tiled_forward

__all__ = ["comparison_png", "pick_crop_box", "tile_starts", "tiled_forward", "upscale_nearest"]
