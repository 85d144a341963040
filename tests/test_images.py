"""Image reading/writing/pairing: each bad input gives its clear error; comparison pictures."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision, registers the kit)

# isort: split
from kit.images import list_images, mod_crop, pair_folders, read_image, write_image
from kit.infer.compare import comparison_png, pick_crop_box, upscale_nearest


@pytest.fixture
def kit_log(caplog: pytest.LogCaptureFixture):
    """Capture BasicSR's root logger (it does not propagate to the root)."""
    logger = logging.getLogger("basicsr")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.WARNING)
    yield caplog
    logger.removeHandler(caplog.handler)


def _rgb(h: int = 12, w: int = 17) -> np.ndarray:
    return np.ascontiguousarray(skimage.data.chelsea()[100 : 100 + h, 200 : 200 + w])  # real RGB uint8


def test_colour_png_is_rgb_in_unit_range(tmp_path: Path) -> None:
    rgb = _rgb()
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    img = read_image(tmp_path / "c.png")
    assert img.dtype == np.float32 and img.shape == (12, 17, 3)
    np.testing.assert_array_equal(img, rgb.astype(np.float32) / 255)


def test_grayscale_becomes_three_channels(tmp_path: Path) -> None:
    gray = skimage.data.camera()[:9, :11]
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    img = read_image(tmp_path / "g.png")
    assert img.shape == (9, 11, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], gray.astype(np.float32) / 255)


def test_rgba_drops_alpha_with_a_warning(tmp_path: Path, kit_log: pytest.LogCaptureFixture) -> None:
    rgb = _rgb()
    alpha = np.full(rgb.shape[:2] + (1,), 7, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), np.concatenate([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha], axis=2))
    img = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(img, rgb.astype(np.float32) / 255)
    assert "a.png" in kit_log.text and "alpha" in kit_log.text


def test_16bit_png_scaled_from_65535(tmp_path: Path) -> None:
    values = np.array([[0, 257, 1000], [32768, 65534, 65535]], np.uint16)
    bgr = np.stack([values, values // 2, values // 3], axis=2)
    cv2.imwrite(str(tmp_path / "d.png"), bgr)
    img = read_image(tmp_path / "d.png")
    np.testing.assert_allclose(img[..., 2], values / 65535.0, rtol=0, atol=1e-7)  # R is the file's third channel
    np.testing.assert_allclose(img[..., 0], (values // 3) / 65535.0, rtol=0, atol=1e-7)
    assert float(img.max()) == 1.0


def test_undecodable_and_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"this is not a PNG")
    with pytest.raises(ValueError, match="broken.png"):
        read_image(tmp_path / "broken.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        read_image(tmp_path / "nowhere.png")


@pytest.mark.parametrize("ext", [".png", ".bmp"])
def test_write_read_round_trip(tmp_path: Path, ext: str) -> None:
    rgb = _rgb()
    f = rgb.astype(np.float32) / 255
    path = write_image(tmp_path / "sub" / f"x{ext}", f + 0.4 / 255)  # rounds back to the same integers
    np.testing.assert_array_equal(read_image(path), f)
    path16 = write_image(tmp_path / "x16.png", f, bits=16)
    assert cv2.imread(str(path16), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    np.testing.assert_allclose(read_image(path16), f, atol=1e-6)


def test_mod_crop_reports_cropping() -> None:
    img = np.zeros((13, 16, 3))
    cropped, did = mod_crop(img, 4)
    assert cropped.shape == (12, 16, 3) and did
    same, did = mod_crop(np.zeros((12, 16, 3)), 4)
    assert same.shape == (12, 16, 3) and not did


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        cv2.imwrite(str(folder / n), np.zeros((4, 4, 3), np.uint8))


def test_list_images_filters_and_sorts(tmp_path: Path) -> None:
    _touch(tmp_path, "b.png", "a.JPG", ".hidden.png")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    with pytest.raises(NotADirectoryError, match="missing"):
        list_images(tmp_path / "missing")


def test_pair_folders_matches_basicsr_lr_names(tmp_path: Path) -> None:
    _touch(tmp_path / "lq", "0001x4.png", "0002x4.png", "baby.png")
    _touch(tmp_path / "gt", "0001.png", "0002.png", "baby.png")
    pairs = pair_folders(tmp_path / "lq", tmp_path / "gt")
    assert [(n, lq.name, gt.name) for n, lq, gt in pairs] == [
        ("0001", "0001x4.png", "0001.png"),
        ("0002", "0002x4.png", "0002.png"),
        ("baby", "baby.png", "baby.png"),
    ]


def test_pair_folders_lists_unmatched_on_both_sides(tmp_path: Path) -> None:
    _touch(tmp_path / "lq", "0001x4.png", "0003x4.png", "stray_lq.png")
    _touch(tmp_path / "gt", "0001.png", "0002.png", "stray_gt.png")
    with pytest.raises(ValueError) as info:
        pair_folders(tmp_path / "lq", tmp_path / "gt")
    lq_line, gt_line = str(info.value).splitlines()[1:3]
    assert "0003x4.png" in lq_line and "stray_lq.png" in lq_line and "0001" not in lq_line
    assert "0002.png" in gt_line and "stray_gt.png" in gt_line and "0001" not in gt_line


def test_pick_crop_box_finds_the_textured_region() -> None:
    img = np.full((40, 60, 3), 0.5, np.float32)
    img[20:36, 30:46] = np.random.default_rng(0).random((16, 16, 3))  # texture only there
    box = pick_crop_box(img, 16)
    assert box == (20, 30, 16, 16)
    assert pick_crop_box(img, 16) == box  # deterministic
    top, left, _, _ = pick_crop_box(img, 16, align=4)
    assert top % 4 == 0 and left % 4 == 0


def test_comparison_png(tmp_path: Path) -> None:
    gt = _rgb(32, 48)
    lq = gt[::4, ::4]
    assert upscale_nearest(lq, 4).shape == gt.shape
    crops = {"LQ": lq, "bicubic": gt // 2, "student": gt.astype(np.float32) / 255, "GT": gt}
    box = pick_crop_box(gt, 16, align=4)
    path = comparison_png(tmp_path / "cmp" / "x.png", crops, {"bicubic": 21.5, "student": 30.25}, box, "PSNR Y")
    pic = cv2.imread(str(path))
    assert pic is not None and pic.shape[1] > pic.shape[0] * 2  # four panels side by side
    fewer = cv2.imread(str(comparison_png(tmp_path / "y.png", {"GT": gt}, None, box)))
    assert fewer.shape[1] < pic.shape[1]
    with pytest.raises(ValueError, match="'odd' is 5x5"):
        comparison_png(tmp_path / "z.png", {"GT": gt, "odd": gt[:5, :5]})
    with pytest.raises(ValueError, match="outside"):
        comparison_png(tmp_path / "z.png", {"GT": gt}, box=(20, 40, 16, 16))
