"""CachedPairedImageDataset: the same samples as BasicSR's PairedImageDataset, and a cache that never changes."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import copy

import numpy as np
import torch
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils import set_random_seed

from kit.data.cached_dataset import CachedPairedImageDataset


def _opt(bundled_root, phase: str) -> dict:
    return {
        "name": "d",
        "phase": phase,
        "scale": 4,
        "dataroot_gt": str(bundled_root / "train/HR"),
        "dataroot_lq": str(bundled_root / "train/LR_bicubic/X4"),
        "io_backend": {"type": "disk"},
        "gt_size": 32,
        "use_hflip": True,
        "use_rot": True,
    }


def test_same_samples_as_basicsr(bundled_root) -> None:
    for phase in ("train", "val"):
        ours, theirs = (
            CachedPairedImageDataset(_opt(bundled_root, phase)),
            PairedImageDataset(_opt(bundled_root, phase)),
        )
        for index in (0, 5, 12):
            set_random_seed(index)
            a = ours[index]
            set_random_seed(index)
            b = theirs[index]
            assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"]), (phase, index)


def test_cache_is_not_modified_by_augmentation(bundled_root) -> None:
    ds = CachedPairedImageDataset(_opt(bundled_root, "train"))
    set_random_seed(0)
    for i in range(200):  # many flipped/rotated crops of the same images
        ds[i % len(ds)]
    fresh = CachedPairedImageDataset(_opt(bundled_root, "train"))
    for path, img in ds._cache.items():
        key = "gt" if "/HR/" in path else "lq"
        np.testing.assert_array_equal(img, fresh._image(path, key), err_msg=path)
    assert _opt(bundled_root, "train")["io_backend"] == {"type": "disk"}


def test_options_dict_not_mutated(bundled_root) -> None:
    opt = _opt(bundled_root, "val")
    before = copy.deepcopy(opt)
    CachedPairedImageDataset(opt)[0]
    assert opt == before
