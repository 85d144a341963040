"""GT-only images degraded on the fly: same-size restoration (noise, blur, JPEG) and bicubic SR."""

from __future__ import annotations

import numpy as np
import torch
from basicsr.data.transforms import augment
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from kit.data.decoded_store import DecodedImageStore
from kit.data.degradations import BicubicDown, apply_degradations, build_degradations
from kit.images import list_images, read_image


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
            num_worker_per_gpu: auto

    For SR (``scale`` > 1) the list must hold a ``BicubicDown`` of that scale. Decoded GT images are kept in
    memory up to ``cache_gb`` (default 4, per data-loader worker; see :mod:`kit.data.decoded_store`).
    """

    def __init__(self, opt: dict) -> None:
        super().__init__()
        self.opt = opt
        self.scale = int(opt.get("scale", 1))
        self.paths = list_images(opt["dataroot_gt"])
        if not self.paths:
            raise FileNotFoundError(f"dataset folder '{opt['dataroot_gt']}' holds no images; fix dataroot_gt")
        self.degradations = build_degradations(opt.get("degradations"))
        downs = [d for d in self.degradations if isinstance(d, BicubicDown)]
        factor = int(np.prod([d.scale for d in downs])) if downs else 1
        if factor != self.scale:
            raise ValueError(
                f"dataset '{opt.get('name')}': the degradations downscale by {factor} but scale is {self.scale}; "
                f"add {{type: BicubicDown, scale: {self.scale}}} (or fix scale)"
            )
        self.seed = int(opt.get("seed", 0))
        self._cache = DecodedImageStore(opt.get("cache_gb"), f"datasets:{opt.get('phase', 'train')}")  # decoded GT

    def __len__(self) -> int:
        return len(self.paths)

    def _rng(self, index: int) -> np.random.Generator:
        if self.opt["phase"] == "train":
            return np.random.default_rng([self.seed, index, int(np.random.randint(2**31))])
        return np.random.default_rng([self.seed, index])

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        gt = self._cache.get(str(path), lambda: read_image(path))  # (H, W, 3) RGB float32 in [0, 1]
        s = self.scale
        if self.opt["phase"] == "train":
            size = int(self.opt["gt_size"])
            h, w = gt.shape[:2]
            if h < size or w < size:
                raise ValueError(f"image '{path}' ({h}x{w}) is smaller than gt_size {size}")
            top = np.random.randint(0, (h - size) // s + 1) * s
            left = np.random.randint(0, (w - size) // s + 1) * s
            # a copy: BasicSR's augment flips in place, and the crop is a view of the cached image
            gt = gt[top : top + size, left : left + size].copy()
            gt = augment(gt, self.opt.get("use_hflip", True), self.opt.get("use_rot", True))
        else:
            h, w = gt.shape[:2]
            gt = gt[: h - h % s, : w - w % s].copy()
        lq = apply_degradations(np.ascontiguousarray(gt), self.degradations, self._rng(index))
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float()  # noqa: E731
        return {"lq": to_t(lq), "gt": to_t(gt), "lq_path": str(path), "gt_path": str(path)}
