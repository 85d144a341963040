"""A folder of LQ images alone (no ground truth): the inputs of distillation without GT.

The teacher's image is the student's only target (``train.distill.output``, no ``pixel_opt``), so any
folder of low-quality photos is training data: real camera JPEGs, or GT-only photos degraded once into a
fixed folder (:mod:`kit.data.fixed_degraded`), which the teacher cache can then hold.
"""

from __future__ import annotations

import difflib

import numpy as np
import torch
from basicsr.data.transforms import augment
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from kit.data.cached_dataset import open_teacher_image
from kit.data.decoded_store import DecodedImageStore
from kit.images import list_images, read_image

# Keys of the dataset itself, then the ones the kit's options and BasicSR's data loader add or read.
_OWN_KEYS = ("name", "type", "dataroot_lq", "lq_size", "use_hflip", "use_rot", "cache_gb", "teacher_outputs")
_LOADER_KEYS = (
    "phase",
    "scale",
    "io_backend",
    "batch_size_per_gpu",
    "num_worker_per_gpu",
    "dataset_enlarge_ratio",
    "use_shuffle",
    "prefetch_mode",
    "pin_memory",
    "persistent_workers",
    "num_prefetch_queue",
)


@DATASET_REGISTRY.register()
class LQFolderDataset(data.Dataset):
    """LQ images from one folder, without ground truth; training samples are random LQ crops, flipped/rotated.

    .. code-block:: yaml

        datasets:
          train:
            name: photos_lq
            type: LQFolderDataset
            dataroot_lq: datasets/gtfree_x4/train/LQ
            lq_size: 32                # LQ crop side in training (the output crop is scale × this)
            use_hflip: true
            use_rot: true
            batch_size_per_gpu: 8
            num_worker_per_gpu: 0
          val:
            name: photos_lq_val
            type: LQFolderDataset
            dataroot_lq: datasets/gtfree_x4/val/LQ   # whole images; validated against the teacher

    Samples hold ``lq`` and ``lq_path`` (no ``gt``). ``teacher_outputs: {teacher name: folder}`` (an option,
    or the attribute that ``train.teacher_cache`` sets, see :mod:`kit.teachers.cache`) adds each
    teacher's image of the sample, cropped at ``scale`` × the LQ crop's position and augmented with it, as
    ``sample["teacher"][name]``, the layout of :class:`kit.data.cached_dataset.CachedPairedImageDataset`.
    Decoded LQ images are kept in memory up to ``cache_gb`` (default 4, per data-loader worker).

    Raises:
        ValueError: an unknown option (with the closest known one), ``lq_size`` missing in training, a
            non-disk ``io_backend``.
        FileNotFoundError: the folder holds no images.
    """

    provides_gt = False  # DistillModel reads this: nothing may ask for the GT of these samples

    def __init__(self, opt: dict) -> None:
        super().__init__()
        known = _OWN_KEYS + _LOADER_KEYS
        for key in opt:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(
                    f"datasets:{opt.get('phase', '?')}: LQFolderDataset has no option '{key}'{hint}; "
                    f"it takes {', '.join(_OWN_KEYS[2:])} (it has no GT: drop dataroot_gt/gt_size)"
                )
        backend = (opt.get("io_backend") or {}).get("type", "disk")
        if backend != "disk":
            raise ValueError(f"LQFolderDataset reads image files; io_backend {backend} is not supported, use disk")
        self.opt = opt
        self.scale = int(opt.get("scale", 1))
        if "dataroot_lq" not in opt:
            raise ValueError("LQFolderDataset needs dataroot_lq (the folder of LQ images)")
        self.paths = [{"lq_path": p} for p in lq_folder_paths(opt)]
        if not self.paths:
            raise FileNotFoundError(f"dataset folder '{opt['dataroot_lq']}' holds no images; fix dataroot_lq")
        self.training = opt.get("phase", "train") == "train"
        if self.training and not isinstance(opt.get("lq_size"), int):
            size = opt.get("lq_size")
            raise ValueError(f"LQFolderDataset in training needs lq_size (an integer LQ crop side), got {size!r}")
        self.teacher_outputs: dict[str, str] = dict(opt.get("teacher_outputs") or {})
        self._teacher_maps: dict[str, np.ndarray] = {}
        self._cache = DecodedImageStore(opt.get("cache_gb"), f"datasets:{opt.get('phase', 'train')}")  # decoded LQ

    def __len__(self) -> int:
        return len(self.paths)

    def _teacher_image(self, folder: str, lq_path: str, lq_shape: tuple[int, ...]) -> np.ndarray:
        """A cached teacher image ``(sH, sW, 3)`` float16 RGB, memory-mapped; its size is checked."""
        expected = (lq_shape[0] * self.scale, lq_shape[1] * self.scale, 3)
        return open_teacher_image(self._teacher_maps, folder, lq_path, expected, "expected")

    def __getitem__(self, index: int) -> dict:
        lq_path = self.paths[index]["lq_path"]
        lq = self._cache.get(lq_path, lambda: read_image(lq_path))  # (h, w, 3) RGB float32 in [0, 1]
        if not self.training:
            return {"lq": _tensor(lq), "lq_path": lq_path}
        size, s = int(self.opt["lq_size"]), self.scale
        h, w = lq.shape[:2]
        if h < size or w < size:
            raise ValueError(f"image '{lq_path}' ({h}x{w}) is smaller than lq_size {size}; lower lq_size")
        top, left = np.random.randint(0, h - size + 1), np.random.randint(0, w - size + 1)
        # Copies: BasicSR's augment flips in place, and the crops are views of cached / memory-mapped images.
        crops = [lq[top : top + size, left : left + size].copy()]
        names = list(self.teacher_outputs)
        for name in names:
            t_img = self._teacher_image(self.teacher_outputs[name], lq_path, lq.shape)
            crops.append(np.asarray(t_img[top * s : (top + size) * s, left * s : (left + size) * s], dtype=np.float32))
        out = augment(crops, self.opt.get("use_hflip", True), self.opt.get("use_rot", True))
        out = out if isinstance(out, list) else [out]
        sample = {"lq": _tensor(out[0]), "lq_path": lq_path}
        if names:
            sample["teacher"] = {name: _tensor(img) for name, img in zip(names, out[1:], strict=True)}
        return sample


def lq_folder_paths(opt: dict) -> list[str]:
    """The LQ files of an ``LQFolderDataset``'s options, in its order (the teacher cache lists them first)."""
    return [str(p) for p in list_images(opt["dataroot_lq"])]


def _tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` RGB → ``(3, H, W)`` float32 tensor (a copy)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
