"""Offline teacher outputs: run the teacher(s) once over the training images and read their images from disk.

Output-only distillation needs the teacher's image for every training crop. A large teacher (HAT, SwinIR,
RRDBNet) costs more per step than the small student it teaches, so this runs it once per training image,
at full resolution (tiled), and the dataset crops the cached image exactly where it crops the ground truth:

.. code-block:: yaml

    train:
      teacher_cache:                    # or `teacher_cache: true` for these defaults
        root: datasets/teacher_cache    # relative to the repository root
        tile: 256                       # LR tile size of the teacher's inference; null = whole images
        overlap: 32                     # LR pixels shared by neighbouring tiles (cross-faded)

The cache is keyed by a SHA-256 of every teacher's checkpoint file and options, the LQ files' contents and
the tiling: a changed teacher or data gives a new folder and the old one is never read again. A folder is
built under a temporary name and renamed when complete, so an interrupted build is never used. Each image is
stored as ``<teacher name>/<LQ file stem>.npy``: float16, ``H×W×3`` RGB, not clamped, memory-mapped when read.

Two things differ from the per-step teacher: the teacher sees the whole image around a crop (more context
than the crop alone), and its output is rounded to float16 (relative error below 1e-3). It serves output
distillation and the GT/teacher mix only: feature pairs read the teacher's features of the very crop, so
they need the teacher's forward each step, and an on-the-fly degradation (``DegradedImageDataset``) makes a
new LQ every sample, which no cache can hold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from kit.checkpoint import sha256_file
from kit.data.cached_dataset import teacher_image_file
from kit.files import staged_folder
from kit.registry import OptionsKeyError

CACHE_FORMAT = 1
DEFAULT_ROOT = "datasets/teacher_cache"
_KEYS = ("root", "tile", "overlap")
SUPPORTED_DATASETS = ("CachedPairedImageDataset", "LQFolderDataset")  # fixed LQ files, crops at the GT's position
LOG_EVERY_S = 30.0  # a progress line with ETA in the log (tqdm's bar shows only on a terminal)


def cache_options(value: Any) -> dict[str, Any] | None:
    """``train.teacher_cache`` as ``{root, tile, overlap}`` (defaults filled), or ``None`` when it is off."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise OptionsKeyError(f"train:teacher_cache must be true or a mapping with {', '.join(_KEYS)}; got {value!r}")
    unknown = set(value) - set(_KEYS)
    if unknown:
        raise OptionsKeyError(f"train:teacher_cache: unknown key(s) {sorted(unknown)}; it takes {', '.join(_KEYS)}")
    spec = {"root": DEFAULT_ROOT, "tile": 256, "overlap": 32} | dict(value)
    tile, overlap = spec["tile"], spec["overlap"]
    if tile is not None and (not isinstance(tile, int) or tile < 16):
        raise OptionsKeyError(f"train:teacher_cache:tile must be an integer >= 16 or null (whole images); got {tile!r}")
    if not isinstance(overlap, int) or overlap < 0 or (tile is not None and overlap >= tile):
        raise OptionsKeyError(f"train:teacher_cache:overlap must be an integer in [0, tile); got {overlap!r}")
    return spec


def cache_enabled(opt: Mapping[str, Any]) -> bool:
    """Whether the options ask for a teacher cache (``train.teacher_cache`` of a ``DistillModel``)."""
    return (
        opt.get("model_type") == "DistillModel"
        and cache_options((opt.get("train") or {}).get("teacher_cache")) is not None
    )


def resolve_cache(opt: Mapping[str, Any]) -> dict[str, Any] | None:
    """``train.teacher_cache`` checked once at start-up: its ``{root, tile, overlap}``, or ``None`` when off.

    Raises:
        OptionsKeyError: bad keys, or options a cache of teacher images cannot serve (see
            :func:`check_cache_usable`).
    """
    if not cache_enabled(opt):
        return None
    check_cache_usable(opt)
    return cache_options(opt["train"]["teacher_cache"])


def check_cache_usable(opt: Mapping[str, Any]) -> None:
    """Refuse, at start-up, option combinations that a cache of teacher images cannot serve."""
    distill = (opt.get("train") or {}).get("distill") or {}
    pairs = sorted(name for name, entry in distill.items() if name != "output" and entry is not None)
    if pairs:
        raise OptionsKeyError(
            f"train:teacher_cache serves output distillation only, but train:distill has feature pair(s) {pairs}: "
            "a pair needs the teacher's features of each crop, so the teacher runs every step anyway; "
            "remove teacher_cache or the pairs"
        )
    train = opt["datasets"]["train"]
    if train.get("type") not in SUPPORTED_DATASETS:
        raise OptionsKeyError(
            f"train:teacher_cache needs datasets:train:type {' or '.join(SUPPORTED_DATASETS)} (fixed LQ images), "
            f"not {train.get('type')}; an on-the-fly degradation makes new LQ images every sample"
        )
    backend = (train.get("io_backend") or {}).get("type", "disk")
    if backend != "disk":
        raise OptionsKeyError(
            f"train:teacher_cache reads the LQ image files, but datasets:train:io_backend is {backend}; "
            "use the image folders (io_backend: {type: disk}) with the cache"
        )


def cache_key(entries: Mapping[str, Mapping[str, Any]], lq_paths: list[str], spec: Mapping[str, Any]) -> str:
    """Key of the cache: teachers (options + checkpoint bytes), LQ files (name + bytes) and tiling."""
    from kit.teachers import check_teacher_files

    parts: dict[str, Any] = {"format": CACHE_FORMAT, "tile": spec["tile"], "overlap": spec["overlap"]}
    check_teacher_files(entries, "train:teacher_cache: ")
    parts["teachers"] = {
        name: {
            "network": e["network"],
            "param_key": e.get("param_key"),
            "checkpoint": sha256_file(e["checkpoint"]) if e.get("checkpoint") else None,
        }
        for name, e in entries.items()
    }
    parts["lq"] = [(Path(p).name, sha256_file(p)) for p in lq_paths]
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_file(folder: Path, teacher: str, lq_path: str) -> Path:
    """Where the image of ``teacher`` for the LQ file ``lq_path`` is stored in the cache ``folder``."""
    return teacher_image_file(folder / teacher, lq_path)


def _rgb_tensor(lq_path: str, device: torch.device) -> torch.Tensor:
    from kit.images import read_image

    img = read_image(lq_path)  # (H, W, 3) RGB float32 in [0, 1]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(device)  # (1, 3, H, W)


def cache_folder(opt: Mapping[str, Any], lq_paths: list[str], root: Path) -> Path:
    """Where the cache of these options and LQ files lives (``<train.teacher_cache.root>/<key>``)."""
    from kit.teachers import teacher_entries

    return _folder(cache_options(opt["train"].get("teacher_cache")), teacher_entries(opt), lq_paths, root)


def _folder(spec: Mapping[str, Any], entries: Mapping[str, Any], lq_paths: list[str], root: Path) -> Path:
    base = Path(os.path.expanduser(spec["root"]))
    return (base if base.is_absolute() else root / base) / cache_key(entries, lq_paths, spec)


def build_teacher_cache(
    opt: Mapping[str, Any],
    lq_paths: list[str],
    root: Path,
    device: torch.device | str = "cpu",
    teachers: Mapping[str, Any] | None = None,
) -> Path:
    """Run the options' teacher(s) over ``lq_paths`` and store their images; reuse a complete cache.

    Args:
        opt: Finalized options (teachers, ``scale``, ``train.teacher_cache``).
        lq_paths: The training LQ files, in the dataset's order.
        root: The repository root that a relative ``train.teacher_cache.root`` is resolved against.
        device: Where the teachers run.
        teachers: The options' teachers already loaded (``{name: LoadedTeacher}``, as the training run hands
            them on); loaded here from the options when ``None``.

    Returns:
        The cache folder (``<root>/<key>``), holding one sub-folder per teacher and ``manifest.json``.
    """
    from kit.teachers import load_teachers, teacher_entries

    logger = logging.getLogger("basicsr")
    spec = cache_options(opt["train"].get("teacher_cache"))
    entries = teacher_entries(opt)
    folder = _folder(spec, entries, lq_paths, root)
    logger.info(
        f"Teacher cache: root {folder.parent} (train.teacher_cache.root {spec['root']!r}); folder {folder.name}"
    )
    if (folder / "manifest.json").is_file():
        logger.info(f"Teacher cache: reusing {folder} ({len(lq_paths)} images per teacher)")
        return folder
    if teachers is None:
        teachers = load_teachers(entries, scale=opt.get("scale"))
    _write_cache(folder, spec, entries, teachers, lq_paths, int(opt.get("scale", 1)), device)
    return folder


def _write_cache(
    folder: Path,
    spec: Mapping[str, Any],
    entries: Mapping[str, Any],
    teachers: Mapping[str, Any],
    lq_paths: list[str],
    scale: int,
    device: torch.device | str,
) -> None:
    """Run every teacher over every LQ file into a temporary folder, then rename it to ``folder``."""
    from kit.infer.tiled import tiled_forward

    logger = logging.getLogger("basicsr")
    tile = spec["tile"] or 1 << 30  # tiled_forward runs whole images when the tile is larger than them
    overlap = spec["overlap"] if spec["tile"] else 0
    feather = min(8, overlap)
    logger.info(f"Teacher cache: running {len(teachers)} teacher(s) over {len(lq_paths)} LQ images into {folder}")
    nets = {name: t.net.to(device) for name, t in teachers.items()}
    start = last_log = time.time()
    with staged_folder(folder, if_exists="keep") as tmp:  # kept: another process finished the same cache first
        for name in teachers:
            (tmp / name).mkdir(parents=True)
        for done, lq_path in enumerate(tqdm(lq_paths, desc="teacher cache", unit="image", disable=None), 1):
            lq = _rgb_tensor(lq_path, torch.device(device))
            for name, net in nets.items():
                out = tiled_forward(net, lq, scale, tile, overlap, feather)  # (1, 3, sH, sW)
                image = out[0].permute(1, 2, 0).float().cpu().numpy().astype(np.float16)  # (sH, sW, 3) RGB
                np.save(cache_file(tmp, name, lq_path), image)
            if time.time() - last_log > LOG_EVERY_S and done < len(lq_paths):  # the log file's progress line
                last_log = time.time()
                eta = (last_log - start) / done * (len(lq_paths) - done)
                logger.info(f"Teacher cache: {done}/{len(lq_paths)} images, ETA {eta / 60:.1f} min")
        manifest = _manifest(spec, entries, teachers, lq_paths, scale, time.time() - start)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    logger.info(f"Teacher cache: {len(lq_paths) * len(nets)} images in {time.time() - start:.0f} s, stored in {folder}")


def _manifest(spec, entries, teachers, lq_paths: list[str], scale: int, seconds: float) -> dict[str, Any]:
    """What ``manifest.json`` of a complete cache records (its presence marks the cache complete)."""
    return {
        "format": CACHE_FORMAT,
        "teachers": {name: t.info.describe() for name, t in teachers.items()},
        "checkpoints": {name: e.get("checkpoint") for name, e in entries.items()},
        "scale": scale,
        "tile": spec["tile"],
        "overlap": spec["overlap"],
        "images": [Path(p).name for p in lq_paths],
        "seconds": round(seconds, 1),
    }


def teacher_folders(folder: Path, names: list[str]) -> dict[str, str]:
    """The dataset option ``teacher_outputs``: ``{teacher name: folder of its .npy images}``."""
    return {name: str(folder / name) for name in names}
