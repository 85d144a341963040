"""Paired LQ/GT folders (BasicSR layout and options) with decoded images kept in memory, up to a budget.

BasicSR's ``PairedImageDataset`` decodes both full images for every random crop; on the bundled photos
(up to 1411² pixels) that is a third of a CPU training step. This subclass decodes each file once and
keeps it as uint8 (what the file holds; a quarter of BasicSR's float32), converting only the crop.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import FileClient, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from kit.data.decoded_store import DecodedImageStore


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

    ``cache_gb`` (default 4) caps the decoded images kept, per data-loader worker (each holds its own copy):
    DIV2K's 800 HR + ×4 LR images are 7 GB as uint8. Images past the cap are decoded on every use, as in
    ``PairedImageDataset``, and a warning says so once. ``color: y`` and mean/std normalisation are not
    supported here — use ``PairedImageDataset`` for those.

    ``teacher_outputs: {teacher name: folder}`` (an option; the training run sets it on the train dataset's
    options when ``train.teacher_cache`` is on, see :mod:`kit.teachers.cache`) adds each teacher's
    image of the sample, cropped and augmented exactly as the GT, as ``sample["teacher"][name]``; the ``.npy`` files are
    memory-mapped, not held in memory.
    """

    def __init__(self, opt: dict) -> None:
        if opt.get("color") == "y" or "mean" in opt or "std" in opt:
            raise ValueError("CachedPairedImageDataset does not support color: y or mean/std; use PairedImageDataset")
        self._cache = DecodedImageStore(opt.get("cache_gb"), f"datasets:{opt.get('phase', 'train')}")  # uint8 BGR
        super().__init__(opt)
        self._teacher_maps: dict[str, np.ndarray] = {}
        self.teacher_outputs: dict[str, str] = dict(opt.get("teacher_outputs") or {})

    def _image(self, path: str, key: str) -> np.ndarray:
        """The decoded image ``(H, W, 3)`` uint8 BGR, from the cache when it is there."""

        def decode() -> np.ndarray:
            if self.file_client is None:
                backend = dict(self.io_backend_opt)
                self.file_client = FileClient(backend.pop("type"), **backend)
            img = imfrombytes(self.file_client.get(path, key), float32=False)
            if img is None:
                raise ValueError(f"cannot decode image '{path}'; remove or replace the file")
            return img

        return self._cache.get(path, decode)

    def _teacher_images(self, lq_path: str, gt_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Each cached teacher image of ``lq_path``: memory-mapped ``(sH, sW, 3)`` float16 RGB."""
        return {
            name: open_teacher_image(self._teacher_maps, folder, lq_path, tuple(gt_shape), "the GT is")
            for name, folder in self.teacher_outputs.items()
        }

    def __getitem__(self, index: int) -> dict:
        scale = self.opt["scale"]
        gt_path, lq_path = self.paths[index]["gt_path"], self.paths[index]["lq_path"]
        img_gt, img_lq = self._image(gt_path, "gt"), self._image(lq_path, "lq")  # (H, W, 3) uint8 BGR
        if self.opt["phase"] != "train":
            img_gt = img_gt[0 : img_lq.shape[0] * scale, 0 : img_lq.shape[1] * scale, :]
            img_gt, img_lq = img2tensor([_float(img_gt), _float(img_lq)], bgr2rgb=True)
            return {"lq": img_lq, "gt": img_gt, "lq_path": lq_path, "gt_path": gt_path}

        teachers = self._teacher_images(lq_path, img_gt.shape) if self.teacher_outputs else {}
        # The teachers' images are cropped with the GT (one random position for all) and augmented with it.
        crops, img_lq = paired_random_crop([img_gt, *teachers.values()], img_lq, self.opt["gt_size"], scale, gt_path)
        crops = crops if isinstance(crops, list) else [crops]
        # The crops are views of the cached images and BasicSR's augment flips in place (cv2.flip(img, 1,
        # img)): every image is converted (copied) first, or each flip would scramble the cache.
        t_crops = [np.ascontiguousarray(c[..., ::-1], dtype=np.float32) for c in crops[1:]]  # RGB -> BGR
        out = augment([_float(crops[0]), _float(img_lq), *t_crops], self.opt["use_hflip"], self.opt["use_rot"])
        tensors = img2tensor([np.ascontiguousarray(img) for img in out], bgr2rgb=True)
        sample = {"lq": tensors[1], "gt": tensors[0], "lq_path": lq_path, "gt_path": gt_path}
        if teachers:
            sample["teacher"] = dict(zip(teachers, tensors[2:], strict=True))
        return sample


def teacher_image_file(teacher_folder: str | os.PathLike, lq_path: str) -> Path:
    """The teacher cache's file layout, in one place: one teacher's image of the LQ file ``lq_path``.

    :mod:`kit.teachers.cache` writes these files and this dataset reads them.
    """
    return Path(teacher_folder) / f"{Path(lq_path).stem}.npy"


def open_teacher_image(
    maps: dict[str, np.ndarray], folder: str, lq_path: str, shape: tuple[int, ...], against: str
) -> np.ndarray:
    """One cached teacher image of ``lq_path``, memory-mapped once into ``maps``; missing or mis-sized: one error.

    Args:
        maps: The dataset's open memory maps (``path -> array``), filled here.
        folder: The teacher's cache folder (``teacher_outputs[name]``).
        lq_path: The LQ file whose teacher image is wanted.
        shape: The ``(sH, sW, 3)`` the image must have.
        against: How the error names that shape (``"the GT is"``, ``"expected"``).
    """
    path = str(teacher_image_file(folder, lq_path))
    img = maps.get(path)
    if img is None:
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"teacher output '{path}' for '{lq_path}' is missing; delete the cache folder "
                f"{Path(folder).parent} so that train.teacher_cache rebuilds it"
            )
        img = np.load(path, mmap_mode="r")
        if img.shape != shape:
            raise ValueError(f"teacher output '{path}' is {img.shape}, {against} {shape}; rebuild the cache")
        maps[path] = img
    return img


def _float(img: np.ndarray) -> np.ndarray:
    """uint8 → float32 in [0, 1], a new array (as BasicSR's ``imfrombytes(..., float32=True)``)."""
    return img.astype(np.float32) / 255.0


def paired_lq_paths(opt: dict) -> list[str]:
    """The LQ files of a paired dataset's options, in the order ``PairedImageDataset`` lists them.

    The same listing as BasicSR's (folder, or ``meta_info_file``), without building the dataset: the training
    run needs it before the dataset exists, to build the teacher cache the dataset then reads.
    """
    from basicsr.data.data_util import paired_paths_from_folder, paired_paths_from_meta_info_file

    folders, keys, tmpl = [opt["dataroot_lq"], opt["dataroot_gt"]], ["lq", "gt"], opt.get("filename_tmpl", "{}")
    if opt.get("meta_info_file") is not None:
        pairs = paired_paths_from_meta_info_file(folders, keys, opt["meta_info_file"], tmpl)
    else:
        pairs = paired_paths_from_folder(folders, keys, tmpl)
    return [p["lq_path"] for p in pairs]
