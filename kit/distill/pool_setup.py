"""Wiring of the teacher pool (:mod:`kit.distill.pool`) into DistillModel: its inputs, its labeller, its key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from kit.distill.pool import IMAGE_SUFFIXES, TeacherPool

TILE, OVERLAP = 128, 16  # LR tile of the labelling forward: bounds the teacher's memory on large inputs


def _files(folder: str | None, source: str, key: str) -> list[str]:
    if not folder:
        return []
    if not Path(folder).is_dir():
        raise FileNotFoundError(
            f"train:recipes:pool: source '{source}' reads datasets:train:{key} '{folder}', which is not a folder; "
            f"fix the path or remove '{source}' from the pool's sources"
        )
    return [str(p) for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]


def prepare_pool(model: Any, pool: TeacherPool) -> None:
    """Label ``pool``'s inputs with ``model``'s teacher(s) (their weighted mean image), tiled, once.

    Args:
        model: The DistillModel (``opt``, ``teacher_images``, ``teacher_target``).
        pool: The recipe to fill.
    """
    from kit.distill.teacher_cache import cache_key
    from kit.infer.tiled import tiled_forward
    from kit.options import REPO_ROOT
    from kit.teachers import teacher_entries

    opt = model.opt
    train = opt["datasets"]["train"]
    scale = int(opt.get("scale", 1))
    key = cache_key(teacher_entries(opt), [], {"tile": TILE, "overlap": OVERLAP})
    key = json.dumps({"teachers": key, "scale": scale, "max_side": pool.max_side})

    def label(x: torch.Tensor) -> torch.Tensor:
        def forward(t: torch.Tensor) -> torch.Tensor:
            return model.teacher_target(model.teacher_images(t.to(model.device))).cpu()

        return tiled_forward(forward, x, scale, TILE, OVERLAP, min(8, OVERLAP))

    patch = max(int(train.get("gt_size", 64)) // scale, 1)
    gt = _files(train.get("dataroot_gt"), "hr", "dataroot_gt") if "hr" in pool.sources else []
    lq = _files(train.get("dataroot_lq"), "zoom_out", "dataroot_lq") if "zoom_out" in pool.sources else []
    pool.prepare(label, gt, lq, key, REPO_ROOT, patch)
