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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kit.distill.recipes.base import RECIPE_REGISTRY, Recipe, Step, option_scale
from kit.files import staged_folder
from kit.images import IMAGE_EXTENSIONS, list_images, read_image
from kit.registry import OptionsKeyError, build_loss

SOURCES = ("hr", "zoom_out")
LOG_EVERY_S = 30.0
TILE, OVERLAP = 128, 16  # LR tile of the labelling forward: bounds the teacher's memory on large inputs
DEFAULT_LOSS = {"type": "L1Loss", "loss_weight": 1.0}


def _images_in(folder: str | os.PathLike) -> list[Path]:
    if not Path(folder).is_dir():
        raise OptionsKeyError(f"train:recipes:pool:folders: '{folder}' is not a folder; give folders of images")
    files = list_images(folder)
    if not files:
        raise OptionsKeyError(f"train:recipes:pool:folders: '{folder}' holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _dataset_files(folder: str | None, source: str, key: str) -> list[str]:
    """The training set's files of one source (``datasets.train.<key>``), for the pool's inputs."""
    if not folder:
        logging.getLogger("basicsr").info(
            f"Teacher pool: source '{source}' skipped: datasets:train has no {key} (e.g. HR-only data); "
            "the other sources and folders still feed the pool"
        )
        return []
    if not Path(folder).is_dir():
        raise FileNotFoundError(
            f"train:recipes:pool: source '{source}' reads datasets:train:{key} '{folder}', which is not a folder; "
            f"fix the path or remove '{source}' from the pool's sources"
        )
    return [str(p) for p in list_images(folder)]


def _read_rgb(path: Path) -> torch.Tensor:
    img = read_image(path)  # (H, W, 3) RGB float32 in [0, 1]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]  # (1, 3, H, W)


def _downscale(x: torch.Tensor, factor: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    size = (max(round(h / factor), 1), max(round(w / factor), 1))
    out = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    return (out.clamp(0, 1) * 255).round() / 255  # quantised like an 8-bit LR file


@RECIPE_REGISTRY.register("pool")
@dataclass(eq=False)
class TeacherPool(Recipe):
    """Inputs labelled once by the teacher, sampled as an extra batch every step (options in the module doc).

    The options are its fields; ``scale`` (the run's) is set by :meth:`bind`, which also labels the inputs.
    """

    order = 40

    sources: Sequence[str] = SOURCES
    folders: Sequence[str] | None = None
    max_side: int = 384
    weight: float = 1.0
    loss: dict | None = None
    batch: int | None = None
    flips: bool = True
    every: int = 1
    cache_root: str | None = "datasets/teacher_cache"
    inputs: list[torch.Tensor] = field(default_factory=list, init=False)  # (3, h, w) uint8
    labels: list[torch.Tensor] = field(default_factory=list, init=False)  # (3, s·h, s·w) float16

    def __post_init__(self) -> None:
        self.sources = list(self.sources)
        bad = [s for s in self.sources if s not in SOURCES]
        if bad:
            raise OptionsKeyError(f"train:recipes:pool:sources {bad}: choose from {', '.join(SOURCES)}")
        self.folders = [str(f) for f in self.folders or []]
        if not self.sources and not self.folders:
            raise OptionsKeyError("train:recipes:pool: no inputs; give sources (hr, zoom_out) and/or folders")
        self.max_side = int(self.max_side)
        self.weight = float(self.weight)
        self.loss = build_loss(self.loss if self.loss is not None else DEFAULT_LOSS, "pool:loss")
        self.batch = None if self.batch is None else int(self.batch)
        self.flips = bool(self.flips)
        self.every = max(int(self.every), 1)
        self.scale = 1

    def bind(self, host: Any) -> None:
        """Label the inputs with the host's teacher(s) (their weighted mean image), tiled, once.

        Args:
            host: The DistillModel (``opt``, ``device``, ``teacher_images``, ``teacher_target``), before its
                recorders attach: the labelling forwards record no features.
        """
        from kit.infer.tiled import tiled_forward
        from kit.options import REPO_ROOT
        from kit.teachers import teacher_entries
        from kit.teachers.cache import cache_key

        self.scale = scale = option_scale(host)
        train = host.opt["datasets"]["train"]
        key = cache_key(teacher_entries(host.opt), [], {"tile": TILE, "overlap": OVERLAP})
        key = json.dumps({"teachers": key, "scale": scale, "max_side": self.max_side})

        def label(x: torch.Tensor) -> torch.Tensor:
            def forward(t: torch.Tensor) -> torch.Tensor:
                return host.teacher_target(host.teacher_images(t.to(host.device))).cpu()

            return tiled_forward(forward, x, scale, TILE, OVERLAP, min(8, OVERLAP))

        patch = max(int(train.get("gt_size", 64)) // scale, 1)
        gt = _dataset_files(train.get("dataroot_gt"), "hr", "dataroot_gt") if "hr" in self.sources else []
        lq = _dataset_files(train.get("dataroot_lq"), "zoom_out", "dataroot_lq") if "zoom_out" in self.sources else []
        self.prepare(label, gt, lq, key, REPO_ROOT, patch)

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
        every = self.pool_inputs(gt_paths, lq_paths)
        inputs = [(n, x) for n, x in every if min(x.shape[-2:]) >= min_side]
        if len(inputs) < len(every):
            small = [n for n, x in every if min(x.shape[-2:]) < min_side]
            logger.info(f"Teacher pool: {len(small)} input(s) under {min_side} px skipped, e.g. {small[0]}")
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
        with staged_folder(folder, if_exists="keep") as tmp:  # kept: another run finished the same labels first
            files = []
            for i, y in enumerate(labels):
                files.append(f"{i:04d}.npy")
                np.save(tmp / files[-1], y.numpy())
            names = [n for n, _ in inputs]
            (tmp / "manifest.json").write_text(json.dumps({"files": files, "inputs": names}, indent=1))

    def terms(self, step: Step) -> dict[str, torch.Tensor]:
        """``l_pool``: crops of the pool inputs, the teacher's labels as the target (every ``every`` steps)."""
        if not self.due(step.current_iter):
            return {}
        pool_lq, pool_target = self.sample(step.lq.shape[0], step.lq.shape[-1], step.host.device)
        return {"l_pool": self.weight * self.loss(step.student(pool_lq), pool_target)}

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
