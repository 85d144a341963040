"""The embedded default data: real photos shipped inside scikit-image, split into train and val.

Nothing is downloaded. The colour photos and the grayscale photos (replicated to three channels) of
``skimage/data`` are written as HR PNGs, mod-cropped to 12 so that one HR set serves ×2, ×3 and ×4, with
LR images made by MATLAB-style bicubic (``basicsr.utils.matlab_functions.imresize``), as DIV2K's
``X2/X3/X4`` folders. Validation photos never appear in training. The folder is built once, in a
temporary folder renamed into place, so an interrupted build leaves nothing half-written.

Rebuild by hand: ``kit-data --force`` (:mod:`kit.cli.data`; or ``python -m kit.data --force``).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from kit.files import staged_folder
from kit.options import REPO_ROOT

DEFAULT_ROOT = REPO_ROOT / "datasets" / "bundled"
SCALES = (2, 3, 4)
MOD = 12  # lcm of the scales: HR divisible by 2, 3 and 4

# (file in skimage/data, colour?) — validation photos are held out from training entirely.
TRAIN_PHOTOS = (
    ("astronaut.png", True),
    ("hubble_deep_field.jpg", True),
    ("ihc.png", True),
    ("motorcycle_left.png", True),
    ("motorcycle_right.png", True),
    ("retina.jpg", True),
    ("brick.png", False),
    ("camera.png", False),
    ("cell.png", False),
    ("coins.png", False),
    ("grass.png", False),
    ("gravel.png", False),
    ("moon.png", False),
)
VAL_PHOTOS = (("chelsea.png", True), ("coffee.png", True), ("rocket.jpg", True))


def skimage_data_dir() -> Path:
    """Folder of the photos bundled with scikit-image."""
    import skimage

    return Path(skimage.__file__).resolve().parent / "data"


def _read_photo(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR uint8; grayscale replicated to 3 channels
    if img is None:
        raise RuntimeError(f"cannot decode bundled photo '{path}'; reinstall scikit-image")
    return img


def _mod_crop(img: np.ndarray, mod: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % mod, : w - w % mod]


def _bicubic_down(img: np.ndarray, scale: int) -> np.ndarray:
    from basicsr.utils.matlab_functions import imresize

    lr = imresize(img.astype(np.float64) / 255.0, 1 / scale)
    return np.clip(np.round(lr * 255.0), 0, 255).astype(np.uint8)


def is_complete(root: Path = DEFAULT_ROOT) -> bool:
    """True when every HR/LR file of the split exists."""
    for split, photos in (("train", TRAIN_PHOTOS), ("val", VAL_PHOTOS)):
        for name, _ in photos:
            stem = Path(name).stem + ".png"
            if not (root / split / "HR" / stem).is_file():
                return False
            if not all((root / split / f"LR_bicubic/X{s}" / stem).is_file() for s in SCALES):
                return False
    return True


def build(root: str | os.PathLike = DEFAULT_ROOT, force: bool = False) -> Path:
    """Build the bundled train/val folders under ``root`` (idempotent; ``force`` rebuilds).

    Layout: ``{train,val}/HR/<photo>.png`` and ``{train,val}/LR_bicubic/X{2,3,4}/<photo>.png``.
    """
    root = Path(root)
    if is_complete(root) and not force:
        return root
    with staged_folder(root, if_exists="replace") as tmp:
        src = skimage_data_dir()
        for split, photos in (("train", TRAIN_PHOTOS), ("val", VAL_PHOTOS)):
            for name, _colour in photos:
                hr = _mod_crop(_read_photo(src / name), MOD)
                stem = Path(name).stem + ".png"
                (tmp / split / "HR").mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(tmp / split / "HR" / stem), hr)
                for s in SCALES:
                    out = tmp / split / f"LR_bicubic/X{s}"
                    out.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(out / stem), _bicubic_down(hr, s))
    return root


def ensure_for_options(opt: dict) -> list[Path]:
    """Build the bundled set when an options file points into it and it is missing; return what was built."""
    built = []
    for dataset in opt.get("datasets", {}).values():
        for key in ("dataroot_gt", "dataroot_lq"):
            value = dataset.get(key)
            if value is None:
                continue
            path = Path(value).resolve()
            if DEFAULT_ROOT in path.parents and not is_complete(DEFAULT_ROOT):
                built.append(build(DEFAULT_ROOT))
    return built
