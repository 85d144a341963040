"""Paired LQ/GT folders (BasicSR layout and options) with decoded images kept in memory.

BasicSR's ``PairedImageDataset`` decodes both full images for every random crop; on the bundled photos
(up to 1411² pixels) that is a third of a CPU training step. This subclass decodes each file once.
"""

from __future__ import annotations

import numpy as np
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import FileClient, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class CachedPairedImageDataset(PairedImageDataset):
    """``PairedImageDataset`` (same options: folder, meta_info_file or lmdb) that caches decoded images.

    .. code-block:: yaml

        type: CachedPairedImageDataset
        dataroot_gt: datasets/bundled/train/HR
        dataroot_lq: datasets/bundled/train/LR_bicubic/X4
        io_backend: {type: disk}
        gt_size: 96
        use_hflip: true
        use_rot: true

    Use it for data that fits in memory (each worker holds its own copy); ``color: y`` and mean/std
    normalisation are not supported here — use ``PairedImageDataset`` for those.
    """

    def __init__(self, opt: dict) -> None:
        if opt.get("color") == "y" or "mean" in opt or "std" in opt:
            raise ValueError("CachedPairedImageDataset does not support color: y or mean/std; use PairedImageDataset")
        super().__init__(opt)
        self._cache: dict[str, np.ndarray] = {}

    def _image(self, path: str, key: str) -> np.ndarray:
        img = self._cache.get(path)
        if img is None:
            if self.file_client is None:
                backend = dict(self.io_backend_opt)
                self.file_client = FileClient(backend.pop("type"), **backend)
            img = imfrombytes(self.file_client.get(path, key), float32=True)
            if img is None:
                raise ValueError(f"cannot decode image '{path}'; remove or replace the file")
            self._cache[path] = img
        return img

    def __getitem__(self, index: int) -> dict:
        scale = self.opt["scale"]
        gt_path, lq_path = self.paths[index]["gt_path"], self.paths[index]["lq_path"]
        img_gt, img_lq = self._image(gt_path, "gt"), self._image(lq_path, "lq")  # HWC, BGR, [0, 1]
        if self.opt["phase"] == "train":
            img_gt, img_lq = paired_random_crop(img_gt, img_lq, self.opt["gt_size"], scale, gt_path)
            # The crops are views of the cached images and BasicSR's augment flips in place (cv2.flip(img,
            # 1, img)): copy first, or every flip would scramble the cache for all later crops.
            img_gt, img_lq = augment([img_gt.copy(), img_lq.copy()], self.opt["use_hflip"], self.opt["use_rot"])
        else:
            img_gt = img_gt[0 : img_lq.shape[0] * scale, 0 : img_lq.shape[1] * scale, :]
        img_gt, img_lq = img2tensor([np.ascontiguousarray(img_gt), np.ascontiguousarray(img_lq)], bgr2rgb=True)
        return {"lq": img_lq, "gt": img_gt, "lq_path": lq_path, "gt_path": gt_path}
