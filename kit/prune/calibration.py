"""Calibration inputs for pruning: LR crops made from a folder of photos, as the teacher was trained to see them.

Each crop is a random ``size·scale`` square of a photo (photos taken in turn), downscaled by ``scale`` with
MATLAB-style bicubic (``basicsr.utils.matlab_functions.imresize``, as the bundled and DIV2K ``LR_bicubic``
folders are made). Deterministic for a seed.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from kit.images import IMAGE_EXTENSIONS, list_images, read_image

__all__ = ["calibration_crops", "calibration_pairs"]


def calibration_crops(folder: str | os.PathLike, scale: int, count: int = 48, size: int = 48, seed: int = 0) -> Tensor:
    """``(count, 3, size, size)`` LR crops in [0, 1] from the photos in ``folder`` (:func:`calibration_pairs`)."""
    return calibration_pairs(folder, scale, count, size, seed)[0]


def calibration_pairs(
    folder: str | os.PathLike, scale: int, count: int = 48, size: int = 48, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """``(count, 3, size, size)`` LR crops in [0, 1] from the photos in ``folder``, and their HR crops.

    Args:
        folder: Photos (HR); each must be at least ``size·scale`` pixels on both sides to be used.
        scale: The teacher's upscaling factor.
        count: Number of crops.
        size: LR side of a crop.
        seed: Seed of the crop positions.

    Raises:
        ValueError: no photo in ``folder`` is large enough (or none at all).
    """
    from basicsr.utils.matlab_functions import imresize

    side = size * scale
    photos = list_images(folder)
    images = [img for img in (read_image(p) for p in photos) if min(img.shape[:2]) >= side]
    if not images:
        raise ValueError(
            f"no photo in '{folder}' ({len(photos)} with {', '.join(IMAGE_EXTENSIONS)}) is at least {side}x{side} "
            f"pixels: give --data a folder of larger photos, or a smaller --crop-size"
        )
    rng = np.random.default_rng(seed)
    crops, hrs = [], []
    for i in range(count):
        img = images[i % len(images)]
        top = int(rng.integers(0, img.shape[0] - side + 1))
        left = int(rng.integers(0, img.shape[1] - side + 1))
        hr = img[top : top + side, left : left + side]
        crop = imresize(hr, 1 / scale)
        crop = np.round(np.clip(crop, 0.0, 1.0) * 255.0) / 255.0  # 8-bit, as an LR_bicubic PNG
        crops.append(torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float())
        hrs.append(torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))).float())
    return torch.stack(crops), torch.stack(hrs)
