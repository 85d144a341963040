"""Image pairs to evaluate on: a folder pair, GT with the training degradation, the options' val set."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.images import list_images, mod_crop, pair_folders, read_image
from kit.options import resolve_path


@dataclass
class ImagePair:
    """One evaluation image: LQ input and GT, RGB float32 HWC in [0, 1]; ``note`` says what was changed.

    ``gt`` is ``None`` for an LQ-only image; ``refs`` holds other references by name (e.g. ``"teacher"``: the
    teacher's image read from a folder), each measured against like the GT.
    """

    name: str
    lq: np.ndarray
    gt: np.ndarray | None
    note: str = ""
    refs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class PairSource:
    """Named, lazily loaded image pairs (one image pair in memory at a time)."""

    description: str
    loaders: list[tuple[str, Callable[[], ImagePair]]]

    def __iter__(self) -> Iterator[ImagePair]:
        for _, load in self.loaders:
            yield load()

    def __len__(self) -> int:
        return len(self.loaders)


def _crop_note(before: tuple[int, ...], after: tuple[int, ...], scale: int) -> str:
    return f"GT mod-cropped from {before[0]}x{before[1]} to {after[0]}x{after[1]} (multiple of scale {scale})"


def folder_pairs(lq_dir: str | os.PathLike, gt_dir: str | os.PathLike, scale: int) -> PairSource:
    """Pairs from an LQ folder and a GT folder matched by file name (``0001x4.png`` ↔ ``0001.png`` too).

    The GT is mod-cropped to a multiple of ``scale`` (as BasicSR) and must then be exactly ``scale`` × the LQ.

    Raises:
        ValueError: unmatched names (both sides listed), an empty folder; when loading, an undecodable file
            (named) or sizes that do not agree with ``scale``.
    """
    triples = pair_folders(lq_dir, gt_dir)

    def loader(name: str, lq_path: Path, gt_path: Path) -> Callable[[], ImagePair]:
        def load() -> ImagePair:
            lq, gt = read_image(lq_path), read_image(gt_path)
            cropped, changed = mod_crop(gt, scale)
            lh, lw = lq.shape[:2]
            if cropped.shape[:2] != (lh * scale, lw * scale):
                raise ValueError(
                    f"'{lq_path}' is {lh}x{lw}, so its x{scale} output is {lh * scale}x{lw * scale}, but GT "
                    f"'{gt_path}' is {gt.shape[0]}x{gt.shape[1]} ({cropped.shape[0]}x{cropped.shape[1]} mod-cropped); "
                    "check --scale and that the folders hold matching images"
                )
            note = _crop_note(gt.shape, cropped.shape, scale) if changed else ""
            return ImagePair(name, lq, np.ascontiguousarray(cropped), note)

        return load

    return PairSource(f"LQ '{lq_dir}' + GT '{gt_dir}'", [(n, loader(n, lq, gt)) for n, lq, gt in triples])


def degraded_pairs(
    gt_dir: str | os.PathLike, degradations: list[dict], scale: int, seed: int = 0, label: str = ""
) -> PairSource:
    """GT images with LQ made by ``degradations`` (as ``DegradedImageDataset`` validation: one fixed draw each).

    Image ``i`` (sorted by name) is mod-cropped to ``scale`` and degraded with ``np.random.default_rng([seed, i])``,
    the generator ``DegradedImageDataset`` uses for validation, so the same folder gives the same LQ.

    Args:
        gt_dir: Folder of GT images.
        degradations: Options-style list, e.g. ``[{type: GaussianNoise, sigma: 25}]``; must downscale by ``scale``.
        scale: The model's scale.
        seed: Seed of the draws.
        label: How the degradation is described in reports.
    """
    from kit.data.degradations import BicubicDown, apply_degradations, build_degradations

    files = list_images(gt_dir)
    if not files:
        raise ValueError(f"no images in GT folder '{gt_dir}'")
    degs = build_degradations(degradations)
    factor = int(np.prod([d.scale for d in degs if isinstance(d, BicubicDown)] or [1]))
    if factor != scale:
        raise ValueError(
            f"the degradations {degradations} downscale by {factor} but the scale is {scale}; "
            f"add {{type: BicubicDown, scale: {scale}}} or fix the scale"
        )

    def loader(index: int, path: Path) -> Callable[[], ImagePair]:
        def load() -> ImagePair:
            gt = read_image(path)
            cropped, changed = mod_crop(gt, scale)
            cropped = np.ascontiguousarray(cropped)
            lq = apply_degradations(cropped.copy(), degs, np.random.default_rng([seed, index]))
            return ImagePair(path.stem, lq, cropped, _crop_note(gt.shape, cropped.shape, scale) if changed else "")

        return load

    what = label or json.dumps(degradations)
    return PairSource(
        f"GT '{gt_dir}', LQ made by {what} (seed {seed})", [(p.stem, loader(i, p)) for i, p in enumerate(files)]
    )


def dataset_options(opt: Mapping[str, Any] | None, phase: str) -> dict | None:
    """The options' first ``datasets`` entry for ``phase`` (``train``, ``val``: the key equals or starts with it)."""
    for key, ds in ((opt or {}).get("datasets") or {}).items():
        if (key == phase or key.startswith(phase)) and isinstance(ds, dict):
            return ds
    return None


def training_degradation(opt: Mapping[str, Any] | None, scale: int) -> tuple[list[dict], int, str]:
    """The degradation that made the training LQ: ``(specs, seed, description)``.

    A ``DegradedImageDataset`` training set gives its ``degradations`` and ``seed``; any other (paired folders,
    such as DIV2K's bicubic LR) gives MATLAB bicubic ×``scale`` (``BicubicDown``), seed 0.

    Raises:
        ValueError: scale 1 without a ``DegradedImageDataset``: there is no degradation to reproduce.
    """
    train = dataset_options(opt, "train")
    if train is not None and train.get("type") == "DegradedImageDataset":
        specs = [dict(s) for s in train.get("degradations") or []]
        return specs, int(train.get("seed", 0)), f"the training degradations {json.dumps(specs)}"
    if scale > 1:
        return [{"type": "BicubicDown", "scale": scale}], 0, f"MATLAB bicubic x{scale} (as the training LR)"
    raise ValueError(
        "GT-only evaluation needs a degradation, but the options' training dataset is not a DegradedImageDataset "
        "and the scale is 1; pass --lq DIR too, or use options with a DegradedImageDataset"
    )


def _ensure_bundled(*paths: str) -> None:
    from kit.data import bundled

    root = bundled.DEFAULT_ROOT.resolve()
    if any(root in Path(p).resolve().parents for p in paths) and not bundled.is_complete(bundled.DEFAULT_ROOT):
        bundled.build()


def bundled_pairs(scale: int, opt: Mapping[str, Any] | None = None) -> PairSource:
    """The bundled val photos (built on first use): ``LR_bicubic/X<scale>`` + ``HR``, or GT-only with the
    options' training degradation when that is a ``DegradedImageDataset`` (or the scale has no LR folder)."""
    from kit.data import bundled

    root = bundled.build()
    train = dataset_options(opt, "train")
    if (train is None or train.get("type") != "DegradedImageDataset") and scale in bundled.SCALES:
        return folder_pairs(root / "val" / "LR_bicubic" / f"X{scale}", root / "val" / "HR", scale)
    specs, seed, label = training_degradation(opt, scale)
    return degraded_pairs(root / "val" / "HR", specs, scale, seed, label)


def validation_pairs(opt: Mapping[str, Any], scale: int) -> PairSource:
    """The options' ``val`` dataset (paired folders or a ``DegradedImageDataset``), else :func:`bundled_pairs`."""
    val = dataset_options(opt, "val")
    if val is not None and val.get("dataroot_gt"):
        gt = resolve_path(val["dataroot_gt"])
        if val.get("type") == "DegradedImageDataset":
            _ensure_bundled(gt)
            specs = [dict(s) for s in val.get("degradations") or []]
            return degraded_pairs(
                gt, specs, scale, int(val.get("seed", 0)), f"the val degradations {json.dumps(specs)}"
            )
        if val.get("dataroot_lq"):
            lq = resolve_path(val["dataroot_lq"])
            _ensure_bundled(gt, lq)
            source = folder_pairs(lq, gt, scale)
            source.description = f"val dataset '{val.get('name', 'val')}': {source.description}"
            return source
    return bundled_pairs(scale, opt)
