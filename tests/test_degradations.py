"""Degradations: each does what it says, seeded; DegradedImageDataset: random in training, fixed in validation."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import numpy as np
import pytest
import skimage.data
from basicsr.utils import set_random_seed

from kit.data.degradations import BicubicDown, GaussianBlur, GaussianNoise, MotionBlur, build_degradations
from kit.data.degraded_dataset import DegradedImageDataset
from kit.registry import OptionsKeyError
from tests.helpers import same_seed_samples


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skimage.data.astronaut()[100:196, 200:296].astype(np.float32) / 255.0  # (96, 96, 3) RGB


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_noise_has_the_requested_sigma_and_is_seeded(photo) -> None:
    flat = np.full((128, 128, 3), 0.5, np.float32)
    noisy = GaussianNoise(sigma=25)(flat, rng())
    assert abs((noisy - flat).std() * 255 - 25) < 0.5
    np.testing.assert_array_equal(GaussianNoise(25)(photo, rng(3)), GaussianNoise(25)(photo, rng(3)))
    assert not np.array_equal(GaussianNoise(25)(photo, rng(3)), GaussianNoise(25)(photo, rng(4)))
    ranged = [GaussianNoise(sigma=[5, 50])(flat, rng(s)) for s in range(2)]
    assert ranged[0].std() != ranged[1].std()


def test_blurs_remove_detail_and_keep_mean(photo) -> None:
    def detail(img):
        return np.abs(np.diff(img, axis=0)).mean() + np.abs(np.diff(img, axis=1)).mean()

    for deg in (GaussianBlur(kernel_size=11, sigma=2.0), MotionBlur(kernel_size=9, angle=30.0, direction=0.0)):
        out = deg(photo, rng())
        assert out.shape == photo.shape and out.dtype == np.float32
        assert detail(out) < 0.7 * detail(photo)
        assert abs(out.mean() - photo.mean()) < 0.01
    horizontal = MotionBlur(kernel_size=9, angle=0.0, direction=0.0)(photo, rng())
    # a horizontal streak smooths along x much more than along y
    dx = np.abs(np.diff(horizontal, axis=1)).mean() / np.abs(np.diff(photo, axis=1)).mean()
    dy = np.abs(np.diff(horizontal, axis=0)).mean() / np.abs(np.diff(photo, axis=0)).mean()
    assert dx < dy


def test_jpeg_quality_orders_the_error(photo) -> None:
    (low,) = build_degradations([{"type": "JPEG", "quality": 10}])
    (high,) = build_degradations([{"type": "JPEG", "quality": 90}])
    err_low = np.abs(low(photo, rng()) - photo).mean()
    err_high = np.abs(high(photo, rng()) - photo).mean()
    assert 0 < err_high < err_low


def test_bicubic_down_is_matlab_imresize(photo) -> None:
    from basicsr.utils.matlab_functions import imresize

    np.testing.assert_allclose(BicubicDown(4)(photo, rng()), np.clip(imresize(photo, 0.25), 0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="not divisible by scale 4"):
        BicubicDown(4)(photo[:95], rng())


def test_bad_degradation_options() -> None:
    with pytest.raises(OptionsKeyError, match="unknown type 'GaussNoise'.*closest: GaussianNoise"):
        build_degradations([{"type": "GaussNoise", "sigma": 25}])
    with pytest.raises(OptionsKeyError, match="GaussianNoise has no argument 'sgima'.*'sigma'"):
        build_degradations([{"type": "GaussianNoise", "sgima": 25}])


def _dataset(bundled_root, phase: str, scale: int = 1, degradations=None) -> DegradedImageDataset:
    opt = {
        "name": "d",
        "phase": phase,
        "scale": scale,
        "dataroot_gt": str(bundled_root / "val/HR"),
        "degradations": degradations or [{"type": "GaussianNoise", "sigma": 25}],
        "gt_size": 32,
        "use_hflip": True,
        "use_rot": True,
    }
    return DegradedImageDataset(opt)


def test_dataset_random_in_training_fixed_in_validation(bundled_root) -> None:
    val = _dataset(bundled_root, "val")
    a, b = val[0], val[0]
    assert np.array_equal(a["lq"].numpy(), b["lq"].numpy())
    assert a["lq"].shape == a["gt"].shape
    train = _dataset(bundled_root, "train")
    set_random_seed(0)  # as train.py: python, numpy and torch
    first = train[0]
    second = train[0]
    assert first["gt"].shape == (3, 32, 32)
    assert not np.array_equal(first["lq"].numpy() - first["gt"].numpy(), second["lq"].numpy() - second["gt"].numpy())
    set_random_seed(0)
    again = train[0]
    assert np.array_equal(first["lq"].numpy(), again["lq"].numpy())  # seeded by the run's global seed


def test_dataset_sr_needs_bicubic_down(bundled_root) -> None:
    with pytest.raises(ValueError, match=r"add \{type: BicubicDown, scale: 4\}"):
        _dataset(bundled_root, "val", scale=4)
    sr = _dataset(bundled_root, "val", scale=4, degradations=[{"type": "BicubicDown", "scale": 4}])
    item = sr[0]
    assert item["gt"].shape[-1] == 4 * item["lq"].shape[-1] and item["gt"].shape[-2] == 4 * item["lq"].shape[-2]


def test_dataset_cache_is_not_modified_by_augmentation(bundled_root) -> None:
    from kit.images import read_image

    train = _dataset(bundled_root, "train")
    set_random_seed(0)
    for i in range(60):  # many flipped/rotated crops of the same three images
        train[i % len(train)]
    for path, img in train._cache.images.items():
        np.testing.assert_array_equal(img, read_image(path), err_msg=path)


def test_dataset_without_cache_gives_the_same_samples(bundled_root) -> None:
    cached = _dataset(bundled_root, "train")
    uncached = DegradedImageDataset({**cached.opt, "cache_gb": 0})
    assert len(list(same_seed_samples(cached, uncached, range(len(cached))))) == len(cached)
    assert len(cached._cache.images) == len(cached) and uncached._cache.images == {}
    with pytest.raises(ValueError, match=r"datasets:train:cache_gb must be a number >= 0, got -1"):
        DegradedImageDataset({**cached.opt, "cache_gb": -1})
