"""GT-only images degraded on the fly: same-size restoration (noise, blur, JPEG) and bicubic SR."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from basicsr.data.transforms import augment
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from kit.data.degradations import BicubicDown, apply_degradations, build_degradations

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted; a clear error when the folder is missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder '{folder}' does not exist; fix dataroot_gt/dataroot_lq")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"dataset folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_rgb(path: Path) -> np.ndarray:
    """RGB float32 HWC in [0, 1]; 16-bit PNGs keep their precision; grayscale → 3 channels."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot decode image '{path}'; remove or replace the file")
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3][..., ::-1]  # BGR(A) -> RGB, alpha dropped
    return (img.astype(np.float32) / scale).copy()


@DATASET_REGISTRY.register()
class DegradedImageDataset(data.Dataset):
    """GT images from a folder; LQ made from each GT by a list of degradations.

    Training draws the degradation parameters afresh for every sample (seeded by BasicSR's global seed,
    so a run is reproducible); validation uses one fixed draw per image (seeded by ``seed`` and the index).

    .. code-block:: yaml

        datasets:
          train:
            name: bundled_denoise
            type: DegradedImageDataset
            dataroot_gt: datasets/bundled/train/HR
            degradations: [{type: GaussianNoise, sigma: 25}]
            gt_size: 96
            use_hflip: true
            use_rot: true
            batch_size_per_gpu: 8
            num_worker_per_gpu: 0

    For SR (``scale`` > 1) the list must hold a ``BicubicDown`` of that scale.
    """

    def __init__(self, opt: dict) -> None:
        super().__init__()
        self.opt = opt
        self.scale = int(opt.get("scale", 1))
        self.paths = list_images(opt["dataroot_gt"])
        self.degradations = build_degradations(opt.get("degradations"))
        downs = [d for d in self.degradations if isinstance(d, BicubicDown)]
        factor = int(np.prod([d.scale for d in downs])) if downs else 1
        if factor != self.scale:
            raise ValueError(
                f"dataset '{opt.get('name')}': the degradations downscale by {factor} but scale is {self.scale}; "
                f"add {{type: BicubicDown, scale: {self.scale}}} (or fix scale)"
            )
        self.seed = int(opt.get("seed", 0))

    def __len__(self) -> int:
        return len(self.paths)

    def _rng(self, index: int) -> np.random.Generator:
        if self.opt["phase"] == "train":
            return np.random.default_rng([self.seed, index, int(np.random.randint(2**31))])
        return np.random.default_rng([self.seed, index])

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        gt = read_rgb(path)
        s = self.scale
        if self.opt["phase"] == "train":
            size = int(self.opt["gt_size"])
            h, w = gt.shape[:2]
            if h < size or w < size:
                raise ValueError(f"image '{path}' ({h}x{w}) is smaller than gt_size {size}")
            top = np.random.randint(0, (h - size) // s + 1) * s
            left = np.random.randint(0, (w - size) // s + 1) * s
            gt = gt[top : top + size, left : left + size]
            gt = augment(gt, self.opt.get("use_hflip", True), self.opt.get("use_rot", True))
        else:
            h, w = gt.shape[:2]
            gt = gt[: h - h % s, : w - w % s]
        lq = apply_degradations(np.ascontiguousarray(gt), self.degradations, self._rng(index))
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float()  # noqa: E731
        return {"lq": to_t(lq), "gt": to_t(gt), "lq_path": str(path), "gt_path": str(path)}
