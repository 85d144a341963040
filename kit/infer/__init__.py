"""Inference helpers: tiled forward passes, image reading/writing/pairing, comparison pictures."""

from __future__ import annotations

from kit.infer.compare import comparison_png, pick_crop_box, upscale_nearest
from kit.infer.images import IMAGE_EXTENSIONS, list_images, mod_crop, pair_folders, read_image, write_image
from kit.infer.tiled import tile_starts, tiled_forward

__all__ = [
    "IMAGE_EXTENSIONS",
    "comparison_png",
    "list_images",
    "mod_crop",
    "pair_folders",
    "pick_crop_box",
    "read_image",
    "tile_starts",
    "tiled_forward",
    "upscale_nearest",
    "write_image",
]
