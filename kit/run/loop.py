"""The training loop, top to bottom (nanoGPT's ``train.py``): feed, step, log, save, validate.

A save writes the student's weights, then the resume state (:class:`kit.run.state.ResumeState`) with every random
stream, so that a run killed and continued with ``--auto_resume`` ends with the uninterrupted run's weights.
SIGINT/SIGTERM finish the step, save and stop (:mod:`kit.run.interrupts`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from basicsr.utils import MessageLogger

from kit.run.context import Run
from kit.run.interrupts import GracefulStop, TrainingInterrupted
from kit.run.state import ResumeState, Streams


def train_loop(run: Run) -> None:
    """From ``run.current_iter`` to ``train.total_iter``: feed, step, log, save, validate."""
    opt, model = run.opt, run.model
    total_iters = int(opt["train"]["total_iter"])
    msg_logger = start_logging(run, total_iters)
    cuda_prefetch = opt["datasets"]["train"].get("prefetch_mode") == "cuda"
    prefetcher = CUDAPrefetcher(run.train_loader, opt) if cuda_prefetch else CPUPrefetcher(run.train_loader)
    val_freq = (opt.get("val") or {}).get("val_freq")
    save_freq = int(opt["logger"]["save_checkpoint_freq"])
    resumed = run.resume_state.streams if run.resume_state is not None else None  # None: an older state
    run.resume_state = None
    run.started = time.time()

    with GracefulStop(enabled=not opt["dist"]) as stop:
        while run.current_iter < total_iters:
            start_epoch(run, prefetcher, resumed)
            resumed = None
            tic = time.time()
            batch = prefetcher.next()
            while batch is not None and run.current_iter < total_iters:
                data_time = time.time() - tic
                run.current_iter += 1
                run.epoch_iter += 1  # saved in the resume state: resume continues mid-epoch
                it = run.current_iter

                # One step: learning rate, forward of teacher/student, losses, backward, optimizer, EMA.
                model.update_learning_rate(it, warmup_iter=opt["train"].get("warmup_iter", -1))
                model.feed_data(batch)
                model.optimize_parameters(it)
                iter_time = time.time() - tic
                if it == 1:
                    msg_logger.reset_start_time()

                if it % opt["logger"]["print_freq"] == 0:
                    losses = model.get_current_log()
                    log_vars = {"epoch": run.epoch, "iter": it, "lrs": model.get_current_learning_rate()}
                    msg_logger(log_vars | {"time": iter_time, "data_time": data_time} | losses)
                    model.append_history({"kind": "train", "iter": it} | losses)
                run.warn(run.watch.loss(it, float(model.log_dict.get("l_total", 0.0))))
                if it % save_freq == 0:
                    run.logger.info("Saving models and training states.")
                    save(run)
                if val_freq and it % val_freq == 0:
                    validate(run)
                if stop.signum is not None:
                    raise interrupted(run, stop, it % save_freq != 0)
                tic = time.time()
                batch = prefetcher.next()
            if batch is None:  # the epoch ran out: next epoch from its start
                run.epoch += 1
                run.epoch_iter = 0


def start_logging(run: Run, total_iters: int) -> MessageLogger:
    """The loop's first line (iterations, epochs left) and BasicSR's message logger (losses, ETA)."""
    run.logger.info(
        f"Training {run.opt['name']}: {total_iters} iters, {run.per_epoch} per epoch "
        f"(~{math.ceil(max(total_iters - run.current_iter, 0) / run.per_epoch)} epochs left)"
    )
    msg_logger = MessageLogger(run.opt, run.current_iter, run.tb_logger)
    msg_logger.max_iters = total_iters + 1  # BasicSR's ETA is (max - iter - 1) * avg: negative at the last iter
    return msg_logger


def start_epoch(run: Run, prefetcher: Any, resumed: Streams | None) -> None:
    """The epoch's data iterator; in a resumed run's first epoch, with the interrupted run's random streams.

    Making the iterator draws its base seed from torch's stream (the workers' seeds are base seed + id), so
    it is made from the state torch was in when the interrupted run made it; then every stream (Python's
    ``random`` for BasicSR's crops and flips, NumPy, torch) is set to where the saved run stood.
    """
    run.sampler.set_epoch(run.epoch)
    if resumed is not None:
        resumed.rewind_loader()
    run.loader_rng = torch.get_rng_state()
    prefetcher.reset()
    run.loader_seed = getattr(getattr(prefetcher, "loader", None), "_base_seed", None)
    if resumed is None:
        return
    resumed.restore()
    if resumed.loader_seed not in (None, run.loader_seed):
        run.warn(
            f"the data loader's base seed is {run.loader_seed}, the saved run's {resumed.loader_seed}: "
            "this resume is not exact"
        )


def save(run: Run) -> None:
    """The student's ``net_g_<iter>.pth``, then (rank 0) the resume state: a state always finds its weights."""
    run.model.save(run.epoch, run.current_iter)  # the weights only: the run writes the state
    if run.opt["rank"] != 0:
        return
    state = ResumeState(
        epoch=run.epoch,
        current_iter=run.current_iter,
        epoch_iter=run.epoch_iter,
        model=run.model.training_state(),
        streams=Streams.capture(run.loader_rng, run.loader_seed),
        divergence=run.watch.state_dict(),
    )
    state.save(run.opt["path"]["training_states"])


def interrupted(run: Run, stop: GracefulStop, save_now: bool) -> TrainingInterrupted:
    """Save a resume state at the step just finished (unless the loop just did) and describe the stop."""
    if save_now:
        save(run)
    state = Path(run.opt["path"]["training_states"]) / f"{run.current_iter}.state"
    message = (
        f"interrupted by {stop.name} at iter {run.current_iter}: resume state saved ({state}); continue with "
        "--auto_resume"
    )
    run.logger.warning(message)
    return TrainingInterrupted(stop.signum, message)


def validate(run: Run) -> None:
    """Every validation set; each PSNR against the bicubic (or input) baseline for the divergence watch."""
    model = run.model
    for val_loader in run.val_loaders:
        model.validation(val_loader, run.current_iter, run.tb_logger, run.opt["val"].get("save_img", False))
        name = val_loader.dataset.opt["name"]
        baseline = getattr(model, "baselines", {}).get(name, {})
        what = "bicubic" if int(run.opt.get("scale", 1)) > 1 else "input"
        for metric, value in baseline.items():
            got = getattr(model, "metric_results", {}).get(metric)
            if got is not None:
                run.warn(run.watch.validation(run.current_iter, name, metric, float(got), float(value), what))
    run.validated_at = run.current_iter
