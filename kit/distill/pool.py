"""Teacher-labelled input pool: many more distinct student inputs than the ground truth covers (DUKD at scale).

A teacher can label any low-resolution input, with or without a ground truth. This recipe runs the teacher
once over a pool of inputs and, every step, adds a batch of random crops of them with the teacher's image as
the only target:

.. code-block:: yaml

    train:
      recipes:
        pool:
          sources: [hr, zoom_out]     # hr: the training GT photos as inputs (zoom-in, DUKD); zoom_out: the
                                      # training LR photos downscaled by the scale; neither has a GT at x scale
          folders: []                 # more input images, any photos (GT-free): every file is an input
          max_side: 384               # inputs larger than this are downscaled first (bounds the teacher's cost)
          weight: 1.0                 # loss weight of the pool term
          loss: {type: L1Loss, loss_weight: 1.0}
          batch: null                 # crops per step (default: the training batch size)
          flips: true                 # random flips/transposes of the crop and its label, alike
          every: 1                    # add the term every N iterations
          cache_root: datasets/teacher_cache   # labels stored once per teacher and pool (null: memory only)

Zhang et al. 2023 (DUKD, arXiv 2309.14162) label zoomed-in and zoomed-out crops of the training images per
step; here the teacher labels each pool image once (tiled, at full resolution), so a step costs one more
student forward and backward and no teacher forward. The labels of flipped crops are the flipped labels
(the teacher's output is close to flip-equivariant, not exactly, as with ``train.teacher_cache``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kit.registry import OptionsKeyError, build_loss

SOURCES = ("hr", "zoom_out")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LOG_EVERY_S = 30.0
_KEYS = ("sources", "folders", "max_side", "weight", "loss", "batch", "flips", "every", "cache_root")


def _images_in(folder: str | os.PathLike) -> list[Path]:
    path = Path(folder)
    if not path.is_dir():
        raise OptionsKeyError(f"train:recipes:pool:folders: '{folder}' is not a folder; give folders of images")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise OptionsKeyError(f"train:recipes:pool:folders: '{folder}' holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _read_rgb(path: Path) -> torch.Tensor:
    from kit.images import read_image

    img = read_image(path)  # (H, W, 3) RGB float32 in [0, 1]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]  # (1, 3, H, W)


def _downscale(x: torch.Tensor, factor: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    size = (max(round(h / factor), 1), max(round(w / factor), 1))
    out = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    return (out.clamp(0, 1) * 255).round() / 255  # quantised like an 8-bit LR file


class TeacherPool:
    """Inputs labelled once by the teacher, sampled as an extra batch every step (options in the module doc).

    Args:
        opt: The ``train.recipes.pool`` mapping.
        scale: The upscaling factor of student and teacher.
    """

    def __init__(self, opt: dict, scale: int) -> None:
        unknown = set(opt) - set(_KEYS)
        if unknown:
            raise OptionsKeyError(f"train:recipes:pool: unknown key(s) {sorted(unknown)}; it takes {', '.join(_KEYS)}")
        self.sources = list(opt.get("sources", ["hr", "zoom_out"]))
        bad = [s for s in self.sources if s not in SOURCES]
        if bad:
            raise OptionsKeyError(f"train:recipes:pool:sources {bad}: choose from {', '.join(SOURCES)}")
        self.folders = [str(f) for f in opt.get("folders") or []]
        if not self.sources and not self.folders:
            raise OptionsKeyError("train:recipes:pool: no inputs; give sources (hr, zoom_out) and/or folders")
        self.max_side = int(opt.get("max_side", 384))
        self.weight = float(opt.get("weight", 1.0))
        self.loss = build_loss(opt.get("loss", {"type": "L1Loss", "loss_weight": 1.0}), "pool:loss")
        self.batch = None if opt.get("batch") is None else int(opt["batch"])
        self.flips = bool(opt.get("flips", True))
        self.every = max(int(opt.get("every", 1)), 1)
        self.cache_root = opt.get("cache_root", "datasets/teacher_cache")
        self.scale = int(scale)
        self.inputs: list[torch.Tensor] = []  # (3, h, w) uint8
        self.labels: list[torch.Tensor] = []  # (3, s·h, s·w) float16

    def due(self, current_iter: int) -> bool:
        return current_iter % self.every == 0

    # ------------------------------------------------------------ the inputs
    def pool_inputs(self, gt_paths: Sequence[str], lq_paths: Sequence[str]) -> list[tuple[str, torch.Tensor]]:
        """``(name, (1, 3, h, w) in [0, 1])`` of every pool input, before labelling."""
        items: list[tuple[str, Path, float]] = []  # (name, file, extra downscale)
        if "hr" in self.sources:
            items += [(f"hr/{Path(p).stem}", Path(p), 1.0) for p in gt_paths]
        if "zoom_out" in self.sources:
            items += [(f"zoom_out/{Path(p).stem}", Path(p), float(self.scale)) for p in lq_paths]
        for i, folder in enumerate(self.folders):
            items += [(f"folder{i}/{p.stem}", p, 1.0) for p in _images_in(folder)]
        out = []
        for name, path, factor in items:
            x = _read_rgb(path)
            factor = max(factor, max(x.shape[-2:]) / self.max_side)
            out.append((name, _downscale(x, factor) if factor > 1 else x))
        return out

    def prepare(
        self,
        label: Callable[[torch.Tensor], torch.Tensor],
        gt_paths: Sequence[str],
        lq_paths: Sequence[str],
        key: str,
        root: Path,
        min_side: int,
    ) -> None:
        """Label every pool input with ``label`` (the frozen teacher(s)), or read the labels of an earlier run.

        Args:
            label: ``(1, 3, h, w) -> (1, 3, s·h, s·w)``, e.g. the teachers' tiled forward.
            gt_paths: The training GT files (source ``hr``).
            lq_paths: The training LQ files (source ``zoom_out``).
            key: Identifies the teacher(s) (options and checkpoint hashes): part of the label cache's key.
            root: What a relative ``cache_root`` is resolved against.
            min_side: Inputs with a side below this (the LR crop size) are left out.
        """
        logger = logging.getLogger("basicsr")
        inputs = [(n, x) for n, x in self.pool_inputs(gt_paths, lq_paths) if min(x.shape[-2:]) >= min_side]
        if not inputs:
            raise OptionsKeyError(f"train:recipes:pool: no input is at least {min_side} px on each side")
        digest = hashlib.sha256(key.encode())
        for name, x in inputs:
            digest.update(name.encode())
            digest.update((x * 255).round().to(torch.uint8).numpy().tobytes())
        folder = None
        if self.cache_root is not None:
            base = Path(os.path.expanduser(str(self.cache_root)))
            folder = (base if base.is_absolute() else root / base) / f"pool-{digest.hexdigest()[:20]}"
        labels = self._read(folder, len(inputs)) if folder is not None else None
        if labels is None:
            labels = self._label_all(label, inputs, logger)
            if folder is not None:
                self._write(folder, inputs, labels)
        else:
            logger.info(f"Teacher pool: reusing the labels of {len(inputs)} inputs in {folder}")
        self.inputs = [(x[0] * 255).round().to(torch.uint8) for _, x in inputs]
        self.labels = labels
        for (name, x), y in zip(inputs, labels):
            if tuple(y.shape[-2:]) != (x.shape[-2] * self.scale, x.shape[-1] * self.scale):
                raise ValueError(f"teacher pool: label of '{name}' is {tuple(y.shape)}, not x{self.scale} its input")
        pixels = sum(x.shape[-1] * x.shape[-2] for x in self.inputs)
        logger.info(f"Teacher pool: {len(self.inputs)} inputs, {pixels / 1e6:.2f} M LR pixels")

    @staticmethod
    def _label_all(label: Callable, inputs: list[tuple[str, torch.Tensor]], logger: logging.Logger) -> list:
        from tqdm import tqdm

        total = sum(x.shape[-1] * x.shape[-2] for _, x in inputs)
        logger.info(f"Teacher pool: the teacher labels {len(inputs)} inputs ({total / 1e6:.2f} M LR pixels), once")
        labels, done, start, last = [], 0, time.time(), time.time()
        with torch.no_grad():
            for name, x in tqdm(inputs, desc="teacher pool", unit="image", disable=None):
                labels.append(label(x).float().clamp(0, 1)[0].half().cpu())
                done += x.shape[-1] * x.shape[-2]
                if time.time() - last > LOG_EVERY_S and done < total:  # the log file's progress line
                    last = time.time()
                    eta = (last - start) / done * (total - done)
                    logger.info(f"Teacher pool: {len(labels)}/{len(inputs)} ({name}), ETA {eta / 60:.1f} min")
        logger.info(f"Teacher pool: labelled in {time.time() - start:.0f} s")
        return labels

    @staticmethod
    def _read(folder: Path, count: int) -> list[torch.Tensor] | None:
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            return None
        files = json.loads(manifest.read_text())["files"]
        if len(files) != count:
            return None
        return [torch.from_numpy(np.load(folder / f)) for f in files]

    @staticmethod
    def _write(folder: Path, inputs: list[tuple[str, torch.Tensor]], labels: list[torch.Tensor]) -> None:
        tmp = folder.parent / f"{folder.name}.partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            files = []
            for i, y in enumerate(labels):
                files.append(f"{i:04d}.npy")
                np.save(tmp / files[-1], y.numpy())
            names = [n for n, _ in inputs]
            (tmp / "manifest.json").write_text(json.dumps({"files": files, "inputs": names}, indent=1))
            if folder.exists():  # another run finished the same labels first
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # ---------------------------------------------------------- every step
    def sample(self, batch: int, patch: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` random ``patch``-px crops and their labels: (N, 3, p, p) and (N, 3, s·p, s·p), float32.

        Images are drawn in proportion to their area (every LR pixel equally likely), from torch's global RNG.
        """
        if not self.inputs:
            raise RuntimeError("TeacherPool.sample before prepare(): the pool has no labelled inputs")
        n = self.batch or batch
        s = self.scale
        areas = torch.tensor([float(x.shape[-1] * x.shape[-2]) for x in self.inputs])
        picks = torch.multinomial(areas, n, replacement=True)
        xs, ys = [], []
        for i in picks.tolist():
            x, y = self.inputs[i], self.labels[i]
            top = int(torch.randint(0, x.shape[-2] - patch + 1, ()).item())
            left = int(torch.randint(0, x.shape[-1] - patch + 1, ()).item())
            xc = x[:, top : top + patch, left : left + patch].float() / 255
            yc = y[:, s * top : s * (top + patch), s * left : s * (left + patch)].float()
            if self.flips:
                for dims in ((-1,), (-2,)):
                    if torch.rand(()) < 0.5:
                        xc, yc = xc.flip(dims), yc.flip(dims)
                if torch.rand(()) < 0.5:
                    xc, yc = xc.transpose(-1, -2), yc.transpose(-1, -2)
            xs.append(xc)
            ys.append(yc)
        return torch.stack(xs).contiguous().to(device), torch.stack(ys).contiguous().to(device)
