"""The start of a run, before anything is written: options, GPUs, DDP, seed, console log; every input checked."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import torch
from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.registry import MODEL_REGISTRY

from kit import compat
from kit.data.bundled import ensure_for_options
from kit.data.checks import check_dataset_keys, check_datasets
from kit.data.loader_options import check_loader_options
from kit.metrics.validation import check_metrics
from kit.models import KitSRModel
from kit.options import TrainFlags, effective_options, finalize_train_options
from kit.registry import OptionsKeyError, lookup
from kit.run.context import Run
from kit.run.ddp import barrier
from kit.run.logs import setup_logger
from kit.teachers.cache import resolve_cache


def set_up(args: TrainFlags, root: Path, dist: bool | None, console: bool) -> Run:
    """Options, distributed set-up (torchrun: RANK/WORLD_SIZE; gloo on CPU), seed, console logger."""
    effective, notes = effective_options(args.opt, args.force_yml, args.debug)  # the schedule follows total_iter
    opt = finalize_train_options(copy.deepcopy(effective), args, root)
    if dist is None:
        dist = args.launcher == "pytorch"
        if dist and not torch.distributed.is_initialized():
            compat.init_dist(args.launcher)
    opt["dist"] = dist
    opt["rank"], opt["world_size"] = get_dist_info() if dist else (0, 1)
    if opt["num_gpu"] == "auto":
        opt["num_gpu"] = torch.cuda.device_count()
    check_gpus(opt["num_gpu"])
    if opt.get("manual_seed") is None:
        opt["manual_seed"] = random.randint(1, 10000)
    run = Run(opt=opt, args=args, root=root, console=console, logger=setup_logger(None, opt["rank"], console))
    run.effective = effective
    for note in notes:
        run.logger.info(note)
    return run


def check_gpus(num_gpu: Any) -> None:
    """``num_gpu`` asks for no more GPUs than torch sees (else CUDA's own text: "Found no NVIDIA driver")."""
    if isinstance(num_gpu, bool) or not isinstance(num_gpu, int) or num_gpu < 0:
        raise OptionsKeyError(f"num_gpu must be a whole number of GPUs or 'auto', got {num_gpu!r}")
    seen = torch.cuda.device_count()
    if num_gpu > seen:
        raise OptionsKeyError(
            f"num_gpu: {num_gpu} but torch sees {seen} CUDA GPU(s) (no GPU or no driver visible); set num_gpu: "
            f"{seen} ({'the CPU' if seen == 0 else 'all of them'}) or num_gpu: auto"
        )


def check_inputs(run: Run) -> None:
    """Everything checkable without training, before anything of the experiment is written."""
    opt = run.opt
    # The checks of the options alone first (cheap), then the slow ones: the bundled photos built, every image decoded.
    check_dataset_keys(opt)
    check_loader_options(opt["datasets"].get("train") or {}, bool(opt["num_gpu"]))
    model_cls = lookup(MODEL_REGISTRY, opt.get("model_type"), "model_type")
    if not issubclass(model_cls, KitSRModel):
        raise OptionsKeyError(
            f"model_type: {opt['model_type']} is not one of the kit's models; use KitSRModel (a network alone) "
            "or DistillModel (the kit's training loop relies on their checkpoints and history)"
        )
    for note in check_metrics((opt.get("val") or {}).get("metrics") or {}):
        run.logger.info(note)
    run.cache_spec = resolve_cache(opt)
    if opt["rank"] == 0:
        ensure_for_options(opt)  # the bundled photos, built on first use
    barrier(opt)
    check_datasets(opt)
