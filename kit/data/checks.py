"""Start-up checks of the datasets named in the options: every file the loaders will read decoded once, pairs fit.

Run before anything of the experiment is written, so that a dataset the training (or validation) would fail
on, or measure wrongly, is refused with the file and the options key: validation pairs whose sizes do not
fit the scale used to give 12.80 dB without a word, and a GT smaller than ``gt_size`` failed at the first step.

What is checked is what the loaders read. BasicSR's paired datasets read *every* non-hidden file of a folder
(a ``notes.txt`` beside the images failed at a training step) and pair a GT with ``<stem><the GT's extension>``
(``0001.png`` with ``0001.jpg`` failed in an assert); an LMDB dataroot's records are those its
``meta_info.txt`` lists, each decoded here. Every image's header is held to :data:`kit.guards.MAX_IMAGE_PIXELS`
before it is decoded, and every validation image must keep pixels after the metrics' ``crop_border``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from kit.images import IMAGE_EXTENSIONS, ImageTooLarge, header_size, list_images

# the kit's own datasets list images by extension (kit.images.list_images); BasicSR's read every file
_LISTS_BY_EXTENSION = ("LQFolderDataset", "DegradedImageDataset")
_SSIM_WINDOW = 11  # BasicSR's SSIM: an 11x11 Gaussian window


# the keys each dataset type reads without a default (BasicSR's PairedImageDataset: opt['dataroot_lq'], ...)
_NEEDS = {
    "PairedImageDataset": ("dataroot_gt", "dataroot_lq", "io_backend"),
    "CachedPairedImageDataset": ("dataroot_gt", "dataroot_lq", "io_backend"),
    "DegradedImageDataset": ("dataroot_gt",),
    "LQFolderDataset": ("dataroot_lq",),
}
_NEEDS_IN_TRAINING = {"PairedImageDataset": ("gt_size",), "CachedPairedImageDataset": ("gt_size",)}


def check_dataset_keys(opt: dict) -> None:
    """Every dataset names the keys its type reads (nothing opened: before any slow work), naming key and type.

    Removing ``dataroot_lq`` from a paired dataset used to end in a bare KeyError after the teacher pool.
    """
    for phase, dataset in (opt.get("datasets") or {}).items():
        kind = dataset.get("type")
        needed = _NEEDS.get(kind, ()) + (_NEEDS_IN_TRAINING.get(kind, ()) if phase == "train" else ())
        for key in needed:
            if dataset.get(key) is None:
                hint = (
                    "; HR images only? use type: DegradedImageDataset (the LQ made from each GT by its degradations)"
                    if key == "dataroot_lq"
                    else ""
                )
                raise ValueError(f"datasets:{phase}: type {kind} needs '{key}'{hint}")


def check_folder(folder: str | None, where: str) -> int:
    """Raise naming the options key when ``folder`` is missing/empty or holds an undecodable image."""
    return len(image_sizes(folder, where))


def image_sizes(folder: str | None, where: str, every_file: bool = False) -> dict[Path, tuple[int, int]]:
    """``{file: (width, height)}`` of every image of ``folder``, each one decoded; ``{}`` for none.

    Args:
        folder: an image folder, or an LMDB (``*.lmdb``: every record its ``meta_info.txt`` lists).
        where: the options key, for messages.
        every_file: BasicSR reads the folder, taking every non-hidden file: one that is not an image is refused,
            and so are two files of one stem (pairs are matched by name).
    """
    if folder is None:
        return {}
    path = Path(folder)
    if path.suffix == ".lmdb":
        return lmdb_sizes(path, where)
    if not path.is_dir():
        raise FileNotFoundError(f"{where}: folder '{path}' does not exist; fix the path in the options")
    files = list_images(path)
    if every_file:
        _refuse_strays(path, files, where)
    if not files:
        raise FileNotFoundError(f"{where}: folder '{path}' holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return {file: decoded_size(file, file, where) for file in files}


def _refuse_strays(folder: Path, images: list[Path], where: str) -> None:
    stray = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p not in images)
    if stray:
        raise ValueError(
            f"{where}: '{folder / stray[0]}' is not an image ({len(stray)} such file(s)) and BasicSR's paired "
            "dataset reads every file of the folder; move it out (or start its name with '.')"
        )
    stems: dict[str, str] = {}
    for p in images:
        if p.stem in stems:
            raise ValueError(
                f"{where}: '{stems[p.stem]}' and '{p.name}' in '{folder}' share a name and pairs are matched by "
                "name; keep one"
            )
        stems[p.stem] = p.name


def decoded_size(source: Path | bytes, name: str | Path, where: str) -> tuple[int, int]:
    """Decode an image file (or an LMDB record's bytes) once; its size, after the header met the pixel limit."""
    try:
        size = header_size(source, name)
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()  # every pixel (verify() is not a decode: a truncated file passes it)
            return size or img.size
    except ImageTooLarge as err:
        raise ImageTooLarge(f"{where}: {err}") from None
    except Exception as err:
        raise ValueError(f"{where}: image '{name}' cannot be decoded ({err}); remove or replace it") from err


def lmdb_sizes(path: Path, where: str) -> dict[Path, tuple[int, int]]:
    """Every record an LMDB's ``meta_info.txt`` lists (``<key>.png (h,w,c) <compression>``), decoded once."""
    meta = path / "meta_info.txt"
    if not meta.is_file():
        raise FileNotFoundError(f"{where}: lmdb '{path}' has no meta_info.txt; build it with BasicSR's scripts")
    import lmdb

    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as err:
        raise ValueError(f"{where}: '{path}' is not a readable lmdb ({err}); build it with BasicSR's scripts") from None
    sizes = {}
    with env, env.begin(write=False) as txn:
        lines = meta.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, 1):
            key = line.split(" ")[0].rsplit(".", 1)[0] if line.strip() else ""
            value = txn.get(key.encode()) if key else b""
            if value is None:
                raise ValueError(f"{where}: meta_info.txt line {number} lists '{key}', which '{path}' does not hold")
            if key:
                sizes[path / key] = decoded_size(bytes(value), f"{path.name}/{key}", where)
    if not sizes:
        raise FileNotFoundError(f"{where}: lmdb '{path}' lists no records in its meta_info.txt")
    return sizes


def check_datasets(opt: dict) -> None:
    """Check every dataset of the options before any training work starts (files, pairs, sizes, metric borders)."""
    metrics = (opt.get("val") or {}).get("metrics") or {}
    for phase, dataset in opt["datasets"].items():
        where = f"datasets:{phase}"
        every = dataset.get("type") not in _LISTS_BY_EXTENSION and dataset.get("meta_info_file") is None
        gt = image_sizes(dataset.get("dataroot_gt"), f"{where}:dataroot_gt", every)
        lq = image_sizes(dataset.get("dataroot_lq"), f"{where}:dataroot_lq", every)
        scale = int(dataset.get("scale", opt.get("scale", 1)) or 1)
        train = phase == "train"
        if train:
            _check_gt_size(gt, dataset.get("gt_size"), scale, where)
        if gt and lq and dataset.get("meta_info_file") is None:
            check_pairs(gt, lq, scale, dataset.get("filename_tmpl", "{}"), where, exact=train, same_suffix=every)
        if not train:
            check_crop_border(metrics, gt or {p: (w * scale, h * scale) for p, (w, h) in lq.items()}, where)


def _check_gt_size(gt: dict[Path, tuple[int, int]], gt_size: Any, scale: int, where: str) -> None:
    if gt_size is None:
        return
    if int(gt_size) % scale:
        raise ValueError(
            f"{where}:gt_size {gt_size} is not a multiple of the scale {scale}; use e.g. "
            f"{int(gt_size) // scale * scale or scale}"
        )
    small = [(f, s) for f, s in gt.items() if min(s) < int(gt_size)]
    if small:
        f, (w, h) = small[0]
        raise ValueError(
            f"{where}: image '{f}' ({w}x{h}) is smaller than gt_size {gt_size} ({len(small)} such image(s)); "
            "lower gt_size or remove the small images"
        )


def check_crop_border(metrics: dict, sizes: dict[Path, tuple[int, int]], where: str) -> None:
    """Every ``val.metrics`` entry's ``crop_border``: a whole number >= 0 that leaves pixels of every image.

    A border of half an image or more measured an empty crop (NaN, or an error at the first validation); SSIM
    needs its 11x11 window inside what is left.
    """
    for name, spec in metrics.items():
        if not isinstance(spec, dict) or "crop_border" not in spec:
            continue
        border, key = spec["crop_border"], f"val:metrics:{name}:crop_border"
        if isinstance(border, bool) or not isinstance(border, int) or border < 0:
            raise ValueError(f"{key} must be a whole number of pixels, 0 or more, got {border!r:.40}")
        keep = _SSIM_WINDOW if "ssim" in str(spec.get("type", "")).lower() else 1
        small = [(f, s) for f, s in sizes.items() if min(s) - 2 * border < keep]
        if small:
            f, (w, h) = small[0]
            most = max((min(w, h) - keep) // 2, 0)
            raise ValueError(
                f"{key} {border} leaves no {'SSIM window' if keep > 1 else 'pixels'} of validation image "
                f"'{f.name}' ({w}x{h}, {where}); use crop_border {most} or less"
            )


def check_pairs(
    gt: dict[Path, tuple[int, int]],
    lq: dict[Path, tuple[int, int]],
    scale: int,
    tmpl: str,
    where: str,
    exact: bool,
    same_suffix: bool = False,
) -> None:
    """Every GT has its LQ (BasicSR's ``filename_tmpl`` naming) and ``GT = LQ × scale``.

    ``exact``: training crops need the exact size; validation crops the GT to ``LQ × scale``, so a GT up to
    ``scale - 1`` pixels larger (the bicubic LR of a size that is not a multiple of the scale) is accepted.
    ``same_suffix``: BasicSR's folder pairing, whose LQ is ``<template(stem)><the GT's extension>``.
    """
    by_stem = {p.stem: (p, s) for p, s in lq.items()}
    for gt_path, (gw, gh) in gt.items():
        stem = tmpl.format(gt_path.stem)
        if stem not in by_stem:
            raise FileNotFoundError(
                f"{where}: '{gt_path.name}' in dataroot_gt has no partner '{stem}.*' in dataroot_lq; "
                "pairs are matched by file name"
            )
        lq_path, (lw, lh) = by_stem[stem]
        if same_suffix and lq_path.suffix != gt_path.suffix:
            raise ValueError(
                f"{where}: '{gt_path.name}' in dataroot_gt has its LQ as '{lq_path.name}', but BasicSR pairs it with "
                f"'{stem}{gt_path.suffix}' (the GT's extension); save both sides in one format"
            )
        fits = (gw, gh) == (lw * scale, lh * scale) if exact else (gw // scale, gh // scale) == (lw, lh)
        if not fits:
            raise ValueError(
                f"{where}: '{gt_path.name}' is {gw}x{gh} but its LQ '{lq_path.name}' is {lw}x{lh}, which at scale "
                f"{scale} should be {gw // scale}x{gh // scale}; check the scale or the LQ folder"
            )
    if len(lq) != len(gt):
        extra = sorted(set(by_stem) - {tmpl.format(p.stem) for p in gt})
        raise FileNotFoundError(
            f"{where}: dataroot_lq holds {len(lq)} images, dataroot_gt {len(gt)}; unpaired LQ: {', '.join(extra[:3])}"
        )
