"""Image files: reading, writing and pairing them (used by the datasets, evaluation, the teacher cache and export).

Convention: images in memory are **RGB, float32 in [0, 1], HWC** numpy arrays. :func:`read_image` converts
8-bit (/255) and 16-bit (/65535) files, grayscale (replicated to 3 channels) and images with alpha (dropped,
with a warning); EXIF orientation is ignored (files are read as stored, ``cv2.IMREAD_UNCHANGED``).
:func:`write_image` rounds back to 8 (or 16) bits as ``basicsr.utils.tensor2img`` does.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from basicsr.utils import get_root_logger
from PIL import Image

from kit.guards import MAX_IMAGE_PIXELS

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "ImageTooLarge",
    "check_pixels",
    "header_size",
    "list_images",
    "mod_crop",
    "pair_folders",
    "read_image",
    "write_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_SCALE_SUFFIX = re.compile(r"^(?P<base>.+?)[_-]?x(?P<scale>\d+)$", re.IGNORECASE)  # 0001x4, img_x2, IMG-X3
_MAX_LISTED = 20


class ImageTooLarge(ValueError):
    """An image whose header declares more than :data:`~kit.guards.MAX_IMAGE_PIXELS` pixels (a decompression bomb?)."""


def check_pixels(name: str | Path, width: int, height: int) -> None:
    """Refuse ``width × height`` above :data:`~kit.guards.MAX_IMAGE_PIXELS`, naming the image, before it is decoded."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(
            f"image '{name}' declares {width}x{height} pixels, more than the kit decodes ({MAX_IMAGE_PIXELS:,}, e.g. "
            "8192x8192; kit.guards): a decompression bomb, or an image to cut into tiles first"
        )


def header_size(source: str | Path | bytes, name: str | Path | None = None) -> tuple[int, int] | None:
    """``(width, height)`` read from the image's header (nothing decoded), checked by :func:`check_pixels`.

    Args:
        source: an image file, or its bytes (an LMDB record).
        name: what to call it in a message (default: ``source`` when it is a path).

    Returns:
        The size, or ``None`` when PIL does not recognise the format (the decoder then says what it is).
    """
    name = name if name is not None else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                size = img.size
    except Image.DecompressionBombError as err:  # PIL's own limit (twice its MAX_IMAGE_PIXELS), above the kit's
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{int(found.group(1)):,}" if found else "more than 178,956,970"
        raise ImageTooLarge(
            f"image '{name}' declares {pixels} pixels, more than the kit decodes ({MAX_IMAGE_PIXELS:,}, e.g. "
            "8192x8192; kit.guards): a decompression bomb, or an image to cut into tiles first"
        ) from None
    except Exception:  # not a format PIL knows (or a broken header): left to the decoder's own message
        return None
    check_pixels(name, *size)
    return size


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB float32 in [0, 1], ``(H, W, 3)``.

    Args:
        path: Image file (any format OpenCV decodes: PNG, JPEG, BMP, TIFF, WebP, ...).

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1]. Grayscale is replicated to 3 channels; 16-bit files are divided by
        65535; an alpha channel is dropped (logged as a warning); float files are returned as stored.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file cannot be decoded as an image, or has an unsupported sample type.
        ImageTooLarge: Its header declares more than :data:`~kit.guards.MAX_IMAGE_PIXELS` pixels (nothing decoded).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file '{path}' does not exist")
    header_size(path)  # the pixel limit, before a byte is decoded
    data = np.fromfile(str(path), dtype=np.uint8)  # imdecode also works with non-ASCII paths
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError(f"cannot decode '{path}' as an image (corrupt, empty, or not an image format OpenCV reads)")
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.0
    elif img.dtype in (np.float32, np.float64):
        img = img.astype(np.float32)
    else:
        raise ValueError(f"'{path}': unsupported sample type {img.dtype}; expected 8-bit, 16-bit or float")
    if img.ndim == 2:
        img = img[..., None]
    channels = img.shape[2]
    if channels in (2, 4):
        get_root_logger().warning(f"'{path}' has an alpha channel; it is dropped (not composited)")
        img = img[..., : channels - 1]
    if img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if img.shape[2] != 3:
        raise ValueError(f"'{path}' has {channels} channels; expected 1 (gray), 2, 3 (colour) or 4 (with alpha)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, rgb: np.ndarray, bits: int = 8) -> Path:
    """Write an RGB image, rounding as ``tensor2img`` does (clamp to [0, 1], scale, round half to even).

    Args:
        path: Output file; the extension chooses the format; parent folders are created.
        rgb: ``(H, W, 3)`` or ``(H, W)`` float in [0, 1], or uint8 (written as is when ``bits == 8``).
        bits: 8, or 16 (PNG/TIFF only).

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if rgb.ndim not in (2, 3) or (rgb.ndim == 3 and rgb.shape[2] not in (1, 3)):
        raise ValueError(f"write_image expects (H, W, 3) or (H, W) RGB, got shape {rgb.shape}")
    if rgb.dtype == np.uint8 and bits == 8:
        out = rgb
    else:
        x = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
        peak, dtype = (255.0, np.uint8) if bits == 8 else (65535.0, np.uint16)
        out = (np.clip(x, 0.0, 1.0) * np.float32(peak)).round().astype(dtype)
    if out.ndim == 3 and out.shape[2] == 3:
        out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix or ".png", out)
    if not ok:
        raise ValueError(f"cannot encode '{path}' as {path.suffix or '(no extension)'} with {bits} bits")
    buf.tofile(str(path))
    return path


def mod_crop(img: np.ndarray, scale: int) -> tuple[np.ndarray, bool]:
    """Crop the bottom/right so that height and width are multiples of ``scale`` (as BasicSR's ``mod_crop``).

    Args:
        img: ``(H, W, ...)`` image.
        scale: The SR scale.

    Returns:
        The (possibly) cropped view, and whether anything was cropped.
    """
    h, w = img.shape[:2]
    hc, wc = h - h % scale, w - w % scale
    return img[:hc, :wc, ...], (hc, wc) != (h, w)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension, hidden files skipped), sorted by name.

    Raises:
        NotADirectoryError: ``folder`` does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"image folder '{folder}' does not exist")
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def pair_folders(lq_dir: str | Path, gt_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """Pair the images of an LQ folder with those of a GT folder by file stem.

    An LQ stem matches a GT stem when equal, or when it is the GT stem followed by a scale suffix as in
    BasicSR/DIV2K folders: ``0001x4.png`` (also ``0001_x4``, ``0001-x4``) pairs with ``0001.png``. Extensions
    may differ. Every file must be paired.

    Args:
        lq_dir: Folder of degraded inputs.
        gt_dir: Folder of ground truths.

    Returns:
        ``(name, lq_path, gt_path)`` sorted by name, ``name`` being the GT stem.

    Raises:
        ValueError: Some files are unmatched (both sides listed), a folder has no images, or two files claim
            the same name.
    """
    lq_files, gt_files = list_images(lq_dir), list_images(gt_dir)
    if not lq_files or not gt_files:
        empty = lq_dir if not lq_files else gt_dir
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in '{empty}'")
    gt_by_stem: dict[str, Path] = {}
    for p in gt_files:
        if p.stem in gt_by_stem:
            raise ValueError(f"two GT files share the name '{p.stem}': {gt_by_stem[p.stem].name}, {p.name}")
        gt_by_stem[p.stem] = p
    pairs: dict[str, tuple[Path, Path]] = {}
    unmatched_lq = []
    for p in lq_files:
        stem = p.stem
        m = _SCALE_SUFFIX.match(stem)
        if stem not in gt_by_stem and m and m.group("base") in gt_by_stem:
            stem = m.group("base")
        if stem not in gt_by_stem:
            unmatched_lq.append(p.name)
        elif stem in pairs:
            raise ValueError(f"two LQ files match GT '{gt_by_stem[stem].name}': {pairs[stem][0].name}, {p.name}")
        else:
            pairs[stem] = (p, gt_by_stem[stem])
    unmatched_gt = [p.name for s, p in gt_by_stem.items() if s not in pairs]
    if unmatched_lq or unmatched_gt:
        raise ValueError(
            f"cannot pair '{lq_dir}' with '{gt_dir}' by file name (LQ 'NAME.ext' or 'NAMEx4.ext' vs GT 'NAME.ext'):\n"
            f"  LQ without GT ({len(unmatched_lq)}): {_listing(unmatched_lq) or '-'}\n"
            f"  GT without LQ ({len(unmatched_gt)}): {_listing(unmatched_gt) or '-'}"
        )
    return [(name, lq, gt) for name, (lq, gt) in sorted(pairs.items())]
