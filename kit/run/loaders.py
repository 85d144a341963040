"""The run's data: the train loader (with a resumable sampler), the validation loaders, the teacher cache.

BasicSR's ``build_dataset``/``build_dataloader`` do the work; the sampler is the kit's, so that a resumed run
continues the epoch's data order where the saved run stood (:class:`kit.data.sampler.ResumableSampler`).
"""

from __future__ import annotations

from typing import Any

import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.utils import get_root_logger

from kit.data.cached_dataset import paired_lq_paths
from kit.data.loader_options import resolve_loader_options
from kit.data.lq_folder import lq_folder_paths
from kit.data.sampler import ResumableSampler
from kit.run.context import Run
from kit.run.ddp import wait_for_rank0
from kit.teachers.cache import build_teacher_cache, cache_folder, teacher_folders


def attach_teacher_cache(run: Run) -> None:
    """With ``train.teacher_cache``: the teachers run once over the training images (rank 0; cached on disk),
    and the train dataset's options point at their images, so that no step runs a teacher for its target."""
    if run.cache_spec is None:
        return
    opt = run.opt
    train_opt = opt["datasets"]["train"]
    lq_only = train_opt.get("type") == "LQFolderDataset"
    lq_paths = lq_folder_paths(train_opt) if lq_only else paired_lq_paths(train_opt)
    if opt["rank"] == 0:
        device = torch.device("cuda" if opt["num_gpu"] else "cpu")
        folder = build_teacher_cache(opt, lq_paths, run.root, device, teachers=run.teachers)
    else:  # the other ranks: the folder rank 0 completes
        folder = cache_folder(opt, lq_paths, run.root)
    wait_for_rank0(opt, folder / "manifest.json")
    train_opt["teacher_outputs"] = teacher_folders(folder, list(run.teachers))


def build_loaders(opt: dict) -> tuple[Any, ResumableSampler, list, int]:
    """Train loader (with a resumable sampler) and validation loaders; returns batches per epoch too."""
    train_loader, sampler, val_loaders = None, None, []
    for phase, dataset_opt in opt["datasets"].items():
        if phase == "train":
            dataset = build_dataset(dataset_opt)
            get_root_logger().info(resolve_loader_options(dataset_opt, dataset, opt))  # workers: auto, pinning
            ratio = dataset_opt.get("dataset_enlarge_ratio", 1)
            sampler = ResumableSampler(dataset, opt["world_size"], opt["rank"], ratio, seed=opt["manual_seed"])
            train_loader = build_dataloader(
                dataset, dataset_opt, opt["num_gpu"], opt["dist"], sampler=sampler, seed=opt["manual_seed"]
            )
        elif phase.split("_")[0] == "val":
            dataset = build_dataset(dataset_opt)
            val_loaders.append(build_dataloader(dataset, dataset_opt, opt["num_gpu"], opt["dist"], None))
        else:
            raise ValueError(f"datasets: phase '{phase}' is not recognised; use 'train' or 'val' / 'val_<name>'")
    if train_loader is None:
        raise ValueError("datasets: a 'train' dataset is required")
    per_epoch = len(train_loader)
    if per_epoch == 0:
        raise ValueError("datasets:train: fewer samples than batch_size_per_gpu; raise dataset_enlarge_ratio")
    return train_loader, sampler, val_loaders, per_epoch
