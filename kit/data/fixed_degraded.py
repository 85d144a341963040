"""GT-only photos degraded ONCE into a fixed folder of LQ images (for distillation without ground truth).

``DegradedImageDataset`` draws a new degradation for every sample, which no teacher cache can hold. For a
big teacher (Real-ESRGAN on a CPU costs seconds per 64² input) the LQ images are made once here, the teacher
labels them once (``train.teacher_cache``) and an :class:`kit.data.lq_folder.LQFolderDataset` serves them::

    python -m kit.cli.fixed_degraded --gt datasets/bundled/train/HR --out datasets/gtfree_x4/train/LQ --scale 4

Image ``i`` (sorted by name) is mod-cropped to ``scale``, optionally centre-cropped to ``max_gt_size``, and
degraded with ``np.random.default_rng([seed, i])``: the same inputs give the same files. The folder is written
under a temporary name and renamed when complete, with ``manifest.json`` saying how it was made; an existing
folder made with other settings is never overwritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kit.data.degradations import BicubicDown, apply_degradations, build_degradations
from kit.files import staged_folder
from kit.images import list_images, mod_crop, read_image, write_image

__all__ = ["REALISTIC_X4", "write_degraded_folder"]

# A first-order "real photo" degradation (Real-ESRGAN's ingredients, once each): blur, ×4 down, noise, JPEG.
REALISTIC_X4 = [
    {"type": "GaussianBlur", "kernel_size": 21, "sigma": [0.2, 2.0]},
    {"type": "BicubicDown", "scale": 4},
    {"type": "GaussianNoise", "sigma": [1.0, 10.0]},
    {"type": "JPEG", "quality": [50, 90]},
]


def _centre_crop(img: np.ndarray, size: int | None, scale: int) -> np.ndarray:
    if size is None:
        return img
    size -= size % scale
    h, w = img.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2 // scale * scale, (w - cw) // 2 // scale * scale
    return img[top : top + ch, left : left + cw]


def write_degraded_folder(
    gt_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    degradations: list[dict],
    scale: int,
    seed: int = 0,
    max_gt_size: int | None = None,
) -> Path:
    """Degrade every image of ``gt_dir`` once and write the LQ PNGs into ``out_dir`` (idempotent).

    Args:
        gt_dir: Folder of clean photos.
        out_dir: Folder to create; reused as is when it was made with the same settings.
        degradations: Options-style list (see :mod:`kit.data.degradations`); must downscale by ``scale``.
        scale: The SR scale the LQ images are for.
        seed: Seed of the draws (image ``i`` uses ``default_rng([seed, i])``).
        max_gt_size: Centre-crop each photo to at most this side first (a cheaper teacher), ``None``: whole.

    Returns:
        ``out_dir`` as a Path, holding ``<photo stem>.png`` per photo and ``manifest.json``.

    Raises:
        ValueError: no images, degradations that do not downscale by ``scale``, or ``out_dir`` made with
            other settings (delete it or choose another folder).
    """
    files = list_images(gt_dir)
    if not files:
        raise ValueError(f"no images in GT folder '{gt_dir}'")
    degs = build_degradations(degradations)
    factor = int(np.prod([d.scale for d in degs if isinstance(d, BicubicDown)] or [1]))
    if factor != scale:
        raise ValueError(f"the degradations downscale by {factor} but the scale is {scale}; add a BicubicDown")
    made_with = {
        "source": str(Path(gt_dir).resolve()),
        "images": [p.name for p in files],
        "degradations": degradations,
        "scale": scale,
        "seed": seed,
        "max_gt_size": max_gt_size,
    }
    out = Path(out_dir)
    if _made_already(out, made_with):
        return out
    with staged_folder(out, if_exists="error") as tmp:
        for i, path in enumerate(files):
            gt = _centre_crop(mod_crop(read_image(path), scale)[0], max_gt_size, scale)
            lq = apply_degradations(np.ascontiguousarray(gt), degs, np.random.default_rng([seed, i]))
            write_image(tmp / f"{path.stem}.png", lq)
        (tmp / "manifest.json").write_text(json.dumps(made_with, indent=2) + "\n", encoding="utf-8")
    return out


def _made_already(out: Path, made_with: dict) -> bool:
    """True when ``out`` holds a folder made with ``made_with``; raises when it holds anything else."""
    manifest = out / "manifest.json"
    if manifest.is_file():
        if json.loads(manifest.read_text(encoding="utf-8")) == made_with:
            return True
        raise ValueError(f"'{out}' was made with other settings (see its manifest.json); delete it or choose --out")
    if out.exists():
        raise ValueError(f"'{out}' exists but has no manifest.json; delete it or choose another folder")
    return False
