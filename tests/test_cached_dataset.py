"""CachedPairedImageDataset: the same samples as BasicSR's PairedImageDataset, and a cache that never changes."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import copy
import logging

import numpy as np
import pytest
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils import set_random_seed

from kit.data.cached_dataset import CachedPairedImageDataset
from tests.helpers import same_seed_samples, tiny_options


def _opt(bundled_root, phase: str) -> dict:
    """The tiny training set of the tests' options (bundled photos, ×4, 32-px GT crops) as ``phase``."""
    return {**tiny_options(bundled_root, "d")["datasets"]["train"], "phase": phase, "scale": 4}


def test_same_samples_as_basicsr(bundled_root) -> None:
    for phase in ("train", "val"):
        ours, theirs = (
            CachedPairedImageDataset(_opt(bundled_root, phase)),
            PairedImageDataset(_opt(bundled_root, phase)),
        )
        assert len(list(same_seed_samples(ours, theirs, (0, 5, 12)))) == 3, phase


def test_cache_is_not_modified_by_augmentation(bundled_root) -> None:
    ds = CachedPairedImageDataset(_opt(bundled_root, "train"))
    set_random_seed(0)
    for i in range(200):  # many flipped/rotated crops of the same images
        ds[i % len(ds)]
    fresh = CachedPairedImageDataset(_opt(bundled_root, "train"))
    for path, img in ds._cache.images.items():
        key = "gt" if "/HR/" in path else "lq"
        np.testing.assert_array_equal(img, fresh._image(path, key), err_msg=path)
    assert _opt(bundled_root, "train")["io_backend"] == {"type": "disk"}


def test_options_dict_not_mutated(bundled_root) -> None:
    opt = _opt(bundled_root, "val")
    before = copy.deepcopy(opt)
    CachedPairedImageDataset(opt)[0]
    assert opt == before


def test_cache_keeps_uint8_within_its_budget(bundled_root) -> None:
    """Decoded images are kept as uint8 up to cache_gb; past it they are decoded each time, samples unchanged."""
    full = CachedPairedImageDataset(_opt(bundled_root, "train"))
    for i in range(len(full)):
        full[i]
    sizes = {path: img.nbytes for path, img in full._cache.images.items()}
    assert all(img.dtype == np.uint8 for img in full._cache.images.values())
    assert len(sizes) == 2 * len(full) and full._cache.nbytes == sum(sizes.values())

    budget = sum(sorted(sizes.values())[:3]) / 1e9  # room for a few images only
    capped = CachedPairedImageDataset({**_opt(bundled_root, "train"), "cache_gb": budget})
    reference = PairedImageDataset(_opt(bundled_root, "train"))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("basicsr")  # BasicSR's logger does not propagate to the root (caplog)
    logger.addHandler(handler)
    try:
        assert len(list(same_seed_samples(capped, reference, list(range(len(capped))) * 2))) == 2 * len(capped)
    finally:
        logger.removeHandler(handler)
    assert 0 < capped._cache.nbytes <= budget * 1e9 and len(capped._cache.images) < len(sizes)
    warnings = [r.getMessage() for r in records if "cache_gb cap" in r.getMessage()]
    assert len(warnings) == 1  # once, not per image


def test_bad_cache_budget(bundled_root) -> None:
    with pytest.raises(ValueError, match=r"datasets:train:cache_gb must be a number >= 0, got '4GB'"):
        CachedPairedImageDataset({**_opt(bundled_root, "train"), "cache_gb": "4GB"})
