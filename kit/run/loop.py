"""The training loop, top to bottom (nanoGPT's ``train.py``): feed, step, log, save, validate.

A save writes the student's weights, then the resume state (:class:`kit.run.state.ResumeState`) with every random
stream, so that a run killed and continued with ``--auto_resume`` ends with the uninterrupted run's weights.
SIGINT/SIGTERM finish the step, save and stop (:mod:`kit.run.interrupts`).
"""

from __future__ import annotations

import logging
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
    pace = Pace(run.current_iter, total_iters)

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

                if it % opt["logger"]["print_freq"] == 0 or it == total_iters:  # the last one: curves.png has losses
                    losses = model.get_current_log()
                    log_vars = {"epoch": run.epoch, "iter": it, "lrs": model.get_current_learning_rate()}
                    msg_logger(log_vars | {"time": iter_time, "data_time": data_time} | losses)
                    model.append_history({"kind": "train", "iter": it} | losses)
                    pace.logged()
                else:
                    pace.report(it, run.logger)
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


PROGRESS_EVERY_S = 30.0  # a progress line at least this often between BasicSR's log lines


class Pace:
    """Progress lines with an ETA between BasicSR's log lines (``print_freq``): after the first step, then after
    every ``PROGRESS_EVERY_S`` seconds without a line; so a slow run is never silent for long."""

    def __init__(self, start_iter: int, total: int) -> None:
        self.start_iter, self.total = start_iter, total
        self.started = self.last = time.time()
        self.first = True

    def logged(self) -> None:
        """BasicSR's line (with its own ETA) was just written."""
        self.last, self.first = time.time(), False

    def report(self, it: int, logger: logging.Logger) -> None:
        """Log ``iter it/total, s/iter, ETA`` when it is due."""
        now = time.time()
        if not self.first and now - self.last < PROGRESS_EVERY_S:
            return
        self.last, self.first = now, False
        per_iter = (now - self.started) / max(it - self.start_iter, 1)
        eta = per_iter * (self.total - it)
        logger.info(
            f"iter {it}/{self.total} ({100 * it / self.total:.0f}%): {per_iter:.2f} s/iter, ETA {eta / 60:.1f} min"
        )


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
        what = "bicubic (MATLAB imresize)" if int(run.opt.get("scale", 1)) > 1 else "input"
        if run.validated_at is None:  # once a run: the dashed lines of curves.png (what the student has to beat)
            record_references(run, val_loader, {what: baseline})
        for metric, value in baseline.items():
            got = getattr(model, "metric_results", {}).get(metric)
            if got is not None:
                run.warn(run.watch.validation(run.current_iter, name, metric, float(got), float(value), what))
    run.validated_at = run.current_iter


def record_references(run: Run, val_loader: Any, known: dict[str, dict]) -> None:
    """Append the references of a validation set to the history: ``known`` (bicubic's metrics, measured by the
    validation) and, when distilling, the teacher's own metrics to the GT (one pass of the teacher, once a run)."""
    model, name = run.model, val_loader.dataset.opt["name"]
    references = {what: values for what, values in known.items() if values}
    if run.distill and run.opt["rank"] == 0:
        from kit.metrics.validation import ValidationMetrics

        metrics = ValidationMetrics(run.opt["val"].get("metrics") or {})
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the loader draws a seed: the run's stream stays
            for data in val_loader:
                if "gt" not in data:  # GT-free: the teacher is the reference itself
                    metrics = None
                    break
                model.feed_data(data)
                image = model.comparison_images(model.lq.float())["teacher"]  # (1, 3, sH, sW), clamped
                metrics.update(Path(data["lq_path"][0]).stem, image, model.gt.float())
        for attr in ("lq", "gt"):  # as the validation leaves the model: no batch held
            if hasattr(model, attr):
                delattr(model, attr)
        if metrics is not None:
            references["teacher"] = metrics.means()
    for what, values in references.items():
        record = {"kind": "reference", "iter": run.current_iter, "dataset": name, "what": what}
        model.append_history(record | {m: float(v) for m, v in values.items()})
