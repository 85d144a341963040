"""The training loop: BasicSR's builders, datasets and loggers, driven by a loop the kit owns.

Owning the loop (instead of patching ``basicsr.train``) is what fixes, in one readable place, the
BasicSR behaviours listed in :mod:`kit.compat`: resume without a GPU, ``--auto_resume`` from any cwd,
resume that continues mid-epoch, gloo DDP on CPU, and a teacher that is never re-pointed on resume.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from basicsr.models import build_model
from basicsr.utils import MessageLogger, get_env_info, get_time_str, set_random_seed
from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.options import dict2str

from kit import compat
from kit.data.bundled import ensure_for_options
from kit.data.checks import check_datasets
from kit.data.sampler import ResumableSampler
from kit.distill.teacher_cache import (
    build_teacher_cache,
    cache_enabled,
    cache_folder,
    check_cache_usable,
    teacher_folders,
)
from kit.options import REPO_ROOT, parse_train_options
from kit.teachers import teacher_entries

LOGGER_NAME = "basicsr"
WAIT_POLL_S = 2.0


def setup_logger(log_file: str | None, rank: int, console: bool = True) -> logging.Logger:
    """Console + file logging on rank 0 (other ranks: errors only); replaces earlier file handlers.

    ``console=False`` keeps only warnings on the console (the file still gets everything).
    """
    from basicsr.utils import logger as basicsr_logger

    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
            handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s")
    stream = next((h for h in logger.handlers if type(h) is logging.StreamHandler), None)
    if stream is None:
        stream = logging.StreamHandler()
        stream.setFormatter(fmt)
        logger.addHandler(stream)
    stream.setLevel(logging.INFO if console else logging.WARNING)
    logger.propagate = False
    logger.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    if log_file and rank == 0:
        file_handler = logging.FileHandler(log_file, "w")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    basicsr_logger.initialized_logger[LOGGER_NAME] = True
    return logger


def barrier(opt: dict) -> None:
    if opt.get("dist"):
        torch.distributed.barrier()


def wait_for_rank0(opt: dict, done: Path) -> None:
    """Under DDP, the other ranks wait until rank 0 has written ``done``, then all meet at a barrier.

    Polling a file instead of blocking in the barrier: a collective times out (NCCL after 10 min), and a
    teacher stage or a teacher cache can take longer. If rank 0 fails instead, torchrun stops every rank.
    """
    if opt.get("dist") and opt["rank"] != 0:
        while not done.exists():
            time.sleep(WAIT_POLL_S)
    barrier(opt)


def archive_experiment(root: Path) -> Path | None:
    """Move an existing experiment folder aside (never delete it) before a fresh run reuses its name."""
    if not root.exists():
        return None
    target = root.with_name(f"{root.name}_archived_{get_time_str()}")
    os.replace(root, target)
    return target


def check_ranks_agree(model: Any) -> str | None:
    """Under DDP, verify every rank holds the same trained parameters (student and connectors); raise if not.

    Buffers (BatchNorm running statistics) are left out: DDP broadcasts rank 0's at every forward, and
    rank 0's are the ones saved.
    """
    if not torch.distributed.is_initialized():
        return None
    nets = {"student": model.get_bare_model(model.net_g)}
    if hasattr(model, "connectors"):
        nets["connectors"] = model.get_bare_model(model.connectors)
    checked = []
    for label, net in nets.items():
        flat = [p.detach().double().flatten() for p in net.parameters()]
        if not flat:
            continue
        local = torch.cat(flat).to(model.device)  # NCCL gathers CUDA tensors, gloo CPU ones
        gathered = [torch.empty_like(local) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(gathered, local)
        worst = max(float((g - gathered[0]).abs().max()) for g in gathered)
        if worst != 0.0:
            raise RuntimeError(f"DDP ranks disagree on the {label} weights (max difference {worst:.3g})")
        checked.append(f"{label} ({local.numel():,d} values)")
    return f"all {torch.distributed.get_world_size()} ranks hold identical weights: {', '.join(checked)}"


def prepare_teacher(opt: dict, root: Path) -> None:
    """Stage 1 of the main job: train the teacher from ``path.teacher_recipe`` when its checkpoint is missing.

    The teacher checkpoint is reused on the next run. Under DDP rank 0 trains it while the others wait.
    """
    ckpt = opt["path"].get("pretrain_network_t")
    recipe = opt["path"].get("teacher_recipe")
    if opt.get("model_type") != "DistillModel" or not ckpt or Path(ckpt).is_file() or not recipe:
        return
    logger = logging.getLogger(LOGGER_NAME)
    recipe_path = Path(recipe) if Path(recipe).is_absolute() else root / recipe
    if opt["rank"] == 0:
        logger.info(f"==== Stage 1/2: no teacher checkpoint at {ckpt}; training the teacher from {recipe_path} ====")
        summary = run_training(["-opt", str(recipe_path), "--auto_resume"], root=root, dist=False)
        logger.info(f"==== Stage 1/2 done: teacher at {summary['latest_checkpoint']} ====")
        if not Path(ckpt).is_file():
            raise FileNotFoundError(
                f"the teacher recipe {recipe_path} finished but path.pretrain_network_t '{ckpt}' still does not "
                "exist; make pretrain_network_t point at experiments/<teacher name>/models/net_g_latest.pth"
            )
    wait_for_rank0(opt, Path(ckpt))


def prepare_teacher_cache(opt: dict, root: Path, dataset: Any) -> None:
    """With ``train.teacher_cache``: run the teacher(s) once over the training images (rank 0; cached on disk)
    and point the train ``dataset`` at their images, so that no step runs a teacher for the output target."""
    if not cache_enabled(opt):
        return
    lq_paths = [p["lq_path"] for p in dataset.paths]
    if opt["rank"] == 0:
        folder = build_teacher_cache(opt, lq_paths, root, torch.device("cuda" if opt["num_gpu"] else "cpu"))
    else:  # the other ranks: the folder rank 0 completes
        folder = cache_folder(opt, lq_paths, root)
    wait_for_rank0(opt, folder / "manifest.json")
    dataset.teacher_outputs = teacher_folders(folder, list(teacher_entries(opt)))  # read before any worker starts


def build_loaders(opt: dict) -> tuple[Any, ResumableSampler, list, int]:
    """Train loader (with a resumable sampler) and validation loaders; returns batches per epoch too."""
    train_loader, sampler, val_loaders = None, None, []
    for phase, dataset_opt in opt["datasets"].items():
        if phase == "train":
            dataset = build_dataset(dataset_opt)
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


def run_training(
    argv: list[str] | None = None, root: Path = REPO_ROOT, dist: bool | None = None, console: bool = True
) -> dict:
    """Run ``train.py`` with ``argv``; returns a summary (experiment folder, checkpoint, last metrics).

    ``console=False`` keeps the console to warnings (benchmarks); the log file is complete either way.
    """
    opt, args = parse_train_options(argv, root)

    # Distributed setup: torchrun provides RANK/WORLD_SIZE; gloo on CPU (compat item 6).
    if dist is None:
        dist = args.launcher == "pytorch"
        if dist and not torch.distributed.is_initialized():
            compat.init_dist(args.launcher)
    opt["dist"] = dist
    opt["rank"], opt["world_size"] = get_dist_info() if dist else (0, 1)
    if opt["num_gpu"] == "auto":
        opt["num_gpu"] = torch.cuda.device_count()
    if opt.get("manual_seed") is None:
        opt["manual_seed"] = random.randint(1, 10000)
    setup_logger(None, opt["rank"], console)

    # Data and teacher before anything is written: bad input fails here, not at iteration 1.
    if opt["rank"] == 0:
        ensure_for_options(opt)
    barrier(opt)
    check_datasets(opt)
    if cache_enabled(opt):
        check_cache_usable(opt)
    prepare_teacher(opt, root)
    set_random_seed(opt["manual_seed"] + opt["rank"])  # after the teacher stage, which seeds its own run

    # Resume (compat items 7, 8): states live in the experiment folder, found from any cwd.
    exp_root = Path(opt["path"]["experiments_root"])
    state_path = compat.find_resume_state(exp_root) if opt["auto_resume"] else None
    if state_path is None and opt["path"].get("resume_state"):
        state_path = Path(opt["path"]["resume_state"])
    resume_state = compat.load_resume_state(state_path) if state_path else None
    if resume_state is not None:
        compat.point_student_at_resume(opt, resume_state["iter"])
    elif opt["rank"] == 0:
        archived = archive_experiment(exp_root)
        for key in ("experiments_root", "models", "training_states", "visualization"):
            Path(opt["path"][key]).mkdir(parents=True, exist_ok=True)
        if archived:
            opt["archived_previous"] = str(archived)
    barrier(opt)
    if opt["rank"] == 0:
        shutil.copyfile(opt["opt_path"], exp_root / Path(opt["opt_path"]).name)
    logger = setup_logger(str(exp_root / f"train_{opt['name']}_{get_time_str()}.log"), opt["rank"], console)
    logger.info(get_env_info())
    logger.info(dict2str({k: v for k, v in opt.items() if k != "opt_path"}))
    if opt.get("archived_previous"):
        logger.info(f"An experiment named {opt['name']} existed: moved to {opt['archived_previous']}")
    tb_logger = None
    if opt["logger"].get("use_tb_logger") and "debug" not in opt["name"] and opt["rank"] == 0:
        from torch.utils.tensorboard import SummaryWriter

        tb_logger = SummaryWriter(log_dir=str(root / "tb_logger" / opt["name"]))

    train_loader, sampler, val_loaders, per_epoch = build_loaders(opt)
    prepare_teacher_cache(opt, root, train_loader.dataset)
    total_iters = int(opt["train"]["total_iter"])
    model = build_model(opt)

    current_iter, epoch, epoch_iter = 0, 0, 0
    if resume_state is not None:
        model.resume_training(resume_state)
        current_iter, epoch = resume_state["iter"], resume_state["epoch"]
        epoch_iter = resume_state.get("epoch_iter") or 0
        sampler.skip_next(epoch_iter * opt["datasets"]["train"]["batch_size_per_gpu"])
        logger.info(f"Resuming from {state_path}: epoch {epoch}, iter {current_iter} ({epoch_iter} into the epoch)")
    logger.info(
        f"Training {opt['name']}: {total_iters} iters, {per_epoch} per epoch "
        f"(~{math.ceil(max(total_iters - current_iter, 0) / per_epoch)} epochs left)"
    )

    msg_logger = MessageLogger(opt, current_iter, tb_logger)
    msg_logger.max_iters = total_iters + 1  # BasicSR's ETA is (max - iter - 1) * avg: negative at the last iter
    prefetch_mode = opt["datasets"]["train"].get("prefetch_mode")
    prefetcher = CUDAPrefetcher(train_loader, opt) if prefetch_mode == "cuda" else CPUPrefetcher(train_loader)
    val_freq = opt.get("val", {}).get("val_freq") if opt.get("val") else None
    save_freq = int(opt["logger"]["save_checkpoint_freq"])
    iter_time = data_time = 0.0
    validated_at = None
    start = time.time()

    while current_iter < total_iters:
        sampler.set_epoch(epoch)
        prefetcher.reset()
        tic = time.time()
        batch = prefetcher.next()
        while batch is not None and current_iter < total_iters:
            data_time = time.time() - tic
            current_iter += 1
            epoch_iter += 1
            # One step: learning rate, forward of teacher/student, losses, backward, optimizer, EMA.
            model.update_learning_rate(current_iter, warmup_iter=opt["train"].get("warmup_iter", -1))
            model.feed_data(batch)
            model.optimize_parameters(current_iter)
            iter_time = time.time() - tic
            if current_iter == 1:
                msg_logger.reset_start_time()
            if current_iter % opt["logger"]["print_freq"] == 0:
                log_vars = {"epoch": epoch, "iter": current_iter, "lrs": model.get_current_learning_rate()}
                log_vars.update(time=iter_time, data_time=data_time)
                losses = model.get_current_log()
                log_vars.update(losses)
                msg_logger(log_vars)
                model.append_history({"kind": "train", "iter": current_iter} | losses)
            model.epoch_iter = epoch_iter
            if current_iter % save_freq == 0:
                logger.info("Saving models and training states.")
                model.save(epoch, current_iter)
            if val_freq and current_iter % val_freq == 0:
                for val_loader in val_loaders:
                    model.validation(val_loader, current_iter, tb_logger, opt["val"].get("save_img", False))
                validated_at = current_iter
            tic = time.time()
            batch = prefetcher.next()
        if batch is None:  # the epoch ran out: next epoch from its start
            epoch += 1
            epoch_iter = 0

    # The end: a state at the final iter (so --auto_resume of a finished run does nothing), then 'latest'.
    model.epoch_iter = epoch_iter
    if current_iter % save_freq != 0:
        model.save(epoch, current_iter)
    model.save(epoch=-1, current_iter=-1)
    metrics: dict = {}
    if opt.get("val") is not None:
        if validated_at != current_iter:  # not when the loop just validated this very iteration
            for val_loader in val_loaders:
                model.validation(val_loader, current_iter, tb_logger, opt["val"].get("save_img", False))
        metrics = dict(getattr(model, "metric_results", {}))
    if tb_logger:
        tb_logger.close()
    agreement = check_ranks_agree(model) if opt["dist"] else None
    if agreement:
        logger.info(agreement)
    elapsed = time.time() - start
    logger.info(f"End of training {opt['name']}: {current_iter} iters in {elapsed:.0f} s; metrics {metrics}")
    if opt["rank"] == 0:
        from kit.plots import plot_history

        png = plot_history(exp_root / "history.jsonl", exp_root / "curves.png", title=opt["name"])
        if png:
            logger.info(f"Training curves: {png}")
    barrier(opt)
    return {
        "name": opt["name"],
        "experiments_root": str(exp_root),
        "latest_checkpoint": str(Path(opt["path"]["models"]) / "net_g_latest.pth"),
        "iters": current_iter,
        "seconds": elapsed,
        "metrics": metrics,
    }


def main() -> None:
    """Entry point of ``train.py``."""
    run_training()
