"""The training run in stages: set up → check inputs → teacher first → build → loop → finish.

Each stage is a function of one :class:`Run`, which holds what the stages before it made; :func:`train_loop`
is the loop alone, top to bottom (nanoGPT's ``train.py``). BasicSR's builders, datasets and loggers do the
work; owning the loop (instead of patching ``basicsr.train``) is what fixes, in one readable place, resume
without a GPU, ``--auto_resume`` from any cwd, resume that continues mid-epoch with the same random streams,
gloo DDP on CPU, a teacher that is never re-pointed on resume, and a failed start that touches nothing.

A walk of ``train.py -opt options/distill.yml`` (the main job)::

    set_up            options (kit.options, checked against kit.schema), GPUs, DDP, seed, console logger
                      (the log is kept in memory until the experiment folder exists)
    check_inputs      bundled data built if missing, datasets (folders, pairs, sizes), val.metrics, model_type,
                      teacher cache
    train_teacher     path.teacher_recipe trained first when path.pretrain_network_t is missing (a Run of its own)
    build             resume state (read only; a corrupt newest one falls back); teachers loaded once; the model
                      (its constructor checks, the pairs' dry forward); teacher cache; loaders; and only then,
                      when everything that can fail at start-up has passed, the experiment folder (old one moved
                      aside, or the resumed one cleaned of killed writes) and the log file
    train_loop        feed, step, log, save (with the random streams), validate; SIGINT/SIGTERM save and stop
    finish            final state + net_g_latest, final validation, DDP weight check, curves.png, final line
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from basicsr.utils import MessageLogger, get_env_info, get_root_logger, get_time_str, set_random_seed
from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.options import dict2str
from basicsr.utils.registry import MODEL_REGISTRY

from kit import compat, rng
from kit.data.bundled import ensure_for_options
from kit.data.cached_dataset import paired_lq_paths
from kit.data.checks import check_datasets
from kit.data.loader_options import check_loader_options, resolve_loader_options
from kit.data.lq_folder import lq_folder_paths
from kit.data.sampler import ResumableSampler
from kit.distill.teacher_cache import build_teacher_cache, cache_folder, resolve_cache, teacher_folders
from kit.divergence import DivergenceWatch
from kit.interrupts import GracefulStop, TrainingInterrupted
from kit.metrics.validation import check_metrics
from kit.options import REPO_ROOT, parse_train_options
from kit.registry import OptionsKeyError, build_model, lookup
from kit.resume import clean_partial_writes, load_newest_usable, load_resume_state, point_student_at_resume
from kit.run_support import archive_experiment, barrier, check_ranks_agree, setup_logger, wait_for_rank0
from kit.teachers import check_teacher_files, load_teachers_frozen_rng, teacher_entries

# Re-exported for callers of the pipeline's helpers (tests, benchmarks).
__all__ = ["Run", "main", "run_training", "setup_logger"]


@dataclass
class Run:
    """One training run, filled stage by stage (options first; the model and the progress last)."""

    opt: dict
    args: argparse.Namespace
    root: Path
    console: bool = True
    logger: logging.Logger | None = None
    cache_spec: dict | None = None  # train.teacher_cache, checked; None when off
    exp_root: Path | None = None
    state_path: Path | None = None
    resume_state: dict | None = None
    teachers: dict | None = None  # {name: LoadedTeacher}, loaded once (DistillModel)
    tb_logger: Any = None
    train_loader: Any = None
    sampler: ResumableSampler | None = None
    val_loaders: list = field(default_factory=list)
    per_epoch: int = 0
    model: Any = None
    current_iter: int = 0
    epoch: int = 0
    epoch_iter: int = 0
    validated_at: int | None = None
    started: float = 0.0  # time.time() when the loop began
    loader_rng: Any = None  # torch's RNG state when this epoch's data iterator was made (it draws the base seed)
    loader_seed: int | None = None  # that iterator's base seed (worker i seeds torch with base seed + i)
    watch: DivergenceWatch | None = None
    notes: list[str] = field(default_factory=list)  # repeated in the final line (no resume state, divergence)

    @property
    def distill(self) -> bool:
        return self.opt.get("model_type") == "DistillModel"


def run_training(
    argv: list[str] | None = None, root: Path = REPO_ROOT, dist: bool | None = None, console: bool = True
) -> dict:
    """Run ``train.py`` with ``argv``; returns a summary (experiment folder, checkpoint, last metrics).

    ``console=False`` keeps the console to warnings (benchmarks); the log file is complete either way.
    """
    run = set_up(argv, root, dist, console)
    check_inputs(run)
    train_teacher(run)
    build(run)
    train_loop(run)
    return finish(run)


# --------------------------------------------------------------------------- stages
def set_up(argv: list[str] | None, root: Path, dist: bool | None, console: bool) -> Run:
    """Options, distributed set-up (torchrun: RANK/WORLD_SIZE; gloo on CPU), seed, console logger."""
    opt, args = parse_train_options(argv, root)
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
    return Run(opt=opt, args=args, root=root, console=console, logger=setup_logger(None, opt["rank"], console))


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
    if opt["rank"] == 0:
        ensure_for_options(opt)  # the bundled photos, built on first use
    barrier(opt)
    check_datasets(opt)
    check_loader_options(opt["datasets"].get("train") or {}, bool(opt["num_gpu"]))
    model_cls = lookup(MODEL_REGISTRY, opt.get("model_type"), "model_type")
    from kit.models import KitSRModel

    if not issubclass(model_cls, KitSRModel):
        raise OptionsKeyError(
            f"model_type: {opt['model_type']} is not one of the kit's models; use KitSRModel (a network alone) "
            "or DistillModel (the kit's training loop relies on their checkpoints and history)"
        )
    for note in check_metrics((opt.get("val") or {}).get("metrics") or {}):
        run.logger.info(note)
    run.cache_spec = resolve_cache(opt)


def train_teacher(run: Run) -> None:
    """Stage 1 of the main job: train the teacher from ``path.teacher_recipe`` when its checkpoint is missing.

    The teacher checkpoint is reused on the next run. Under DDP rank 0 trains it while the others wait.
    """
    opt = run.opt
    ckpt = opt["path"].get("pretrain_network_t")
    recipe = opt["path"].get("teacher_recipe")
    if not run.distill or not ckpt or Path(ckpt).is_file() or not recipe:
        return
    recipe_path = Path(recipe) if Path(recipe).is_absolute() else run.root / recipe
    if opt["rank"] == 0:
        what = f"no teacher checkpoint at {ckpt}; training the teacher from {recipe_path}"
        run.logger.info(f"==== Stage 1/2: {what} ====")
        summary = run_training(["-opt", str(recipe_path), "--auto_resume"], root=run.root, dist=False)
        run.logger.info(f"==== Stage 1/2 done: teacher at {summary['latest_checkpoint']} ====")
        if not Path(ckpt).is_file():
            raise FileNotFoundError(
                f"the teacher recipe {recipe_path} finished but path.pretrain_network_t '{ckpt}' still does not "
                "exist; make pretrain_network_t point at experiments/<teacher name>/models/net_g_latest.pth"
            )
    wait_for_rank0(opt, Path(ckpt))


def build(run: Run) -> None:
    """Resume state, teachers, model, teacher cache, loaders; then (nothing failed) the experiment folder."""
    opt = run.opt
    if run.distill:  # after the teacher stage (which may have made it), named before anything is loaded
        check_teacher_files(teacher_entries(opt))
    find_resume(run)
    set_random_seed(opt["manual_seed"] + opt["rank"])  # after the teacher stage, which seeds its own run
    if run.distill:
        run.teachers = load_teachers_frozen_rng(opt)  # once: the cache and the model share them
    # The model before the folder: its constructor checks (type: rule, losses, recipes) and the pairs' dry
    # forward are start-up errors too, and must not find an old experiment already moved aside.
    run.model = build_model(opt, **({"teachers": run.teachers} if run.distill else {}))
    attach_teacher_cache(run)
    run.train_loader, run.sampler, run.val_loaders, run.per_epoch = build_loaders(opt)
    run.teachers = None  # the model holds them now
    open_experiment(run)
    run.watch = DivergenceWatch(stop=bool(opt["train"].get("stop_on_divergence", False)))
    if run.resume_state is not None:
        state = run.resume_state
        run.model.resume_training(state)
        run.watch.load_state_dict(state.get("divergence", {}))
        run.current_iter, run.epoch, run.epoch_iter = state["iter"], state["epoch"], state.get("epoch_iter") or 0
        run.sampler.skip_next(run.epoch_iter * opt["datasets"]["train"]["batch_size_per_gpu"])
        exact = "with its random streams" if "rng" in state else "without random streams (an older state)"
        run.logger.info(
            f"Resuming from {run.state_path}: epoch {run.epoch}, iter {run.current_iter} "
            f"({run.epoch_iter} into the epoch), {exact}"
        )


def find_resume(run: Run) -> None:
    """The resume state to continue from (read only): ``--auto_resume``'s newest usable one, or path.resume_state."""
    opt = run.opt
    run.exp_root = Path(opt["path"]["experiments_root"])
    if opt["auto_resume"]:
        run.state_path, run.resume_state, warnings = load_newest_usable(run.exp_root, opt["path"]["models"])
        for warning in warnings:
            run.logger.warning(warning)
            run.notes.append(warning)
        if run.state_path is None:
            note = (
                f"--auto_resume found no usable resume state in {run.exp_root / 'training_states'}; starting at iter 0"
            )
            run.logger.warning(note)
            run.notes.append(note)
    if run.state_path is None and opt["path"].get("resume_state"):
        run.state_path = Path(opt["path"]["resume_state"])
        run.resume_state = load_resume_state(run.state_path)
    if run.resume_state is not None:
        point_student_at_resume(opt, run.resume_state["iter"])


def open_experiment(run: Run) -> None:
    """The first write of the run: a fresh folder (an old one moved aside) or the resumed one; the log file."""
    opt = run.opt
    archived, cleaned = None, []
    if opt["rank"] == 0:
        if run.resume_state is not None:
            cleaned = clean_partial_writes(run.exp_root)
        else:
            archived = archive_experiment(run.exp_root, run.root / "experiments")
            for key in ("experiments_root", "models", "training_states", "visualization"):
                Path(opt["path"][key]).mkdir(parents=True, exist_ok=True)
    barrier(opt)
    if opt["rank"] == 0:
        shutil.copyfile(opt["opt_path"], run.exp_root / Path(opt["opt_path"]).name)
    log_file = str(run.exp_root / f"train_{opt['name']}_{get_time_str()}.log")
    run.logger = setup_logger(log_file, opt["rank"], run.console)  # the start-up lines kept in memory go first
    run.logger.info(get_env_info())
    run.logger.info(dict2str({k: v for k, v in opt.items() if k != "opt_path"}))
    if archived:
        run.logger.info(f"An experiment named {opt['name']} existed: moved to {archived}")
    if cleaned:
        run.logger.info(f"Removed {len(cleaned)} temporary file(s) of writes a killed run left: {cleaned[0].name}, ...")
    if opt["logger"].get("use_tb_logger") and "debug" not in opt["name"] and opt["rank"] == 0:
        from torch.utils.tensorboard import SummaryWriter

        run.tb_logger = SummaryWriter(log_dir=str(run.root / "tb_logger" / opt["name"]))


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


# --------------------------------------------------------------------------- the loop
def train_loop(run: Run) -> None:
    """From ``run.current_iter`` to ``train.total_iter``: feed, step, log, save, validate."""
    opt, model = run.opt, run.model
    total_iters = int(opt["train"]["total_iter"])
    run.logger.info(
        f"Training {opt['name']}: {total_iters} iters, {run.per_epoch} per epoch "
        f"(~{math.ceil(max(total_iters - run.current_iter, 0) / run.per_epoch)} epochs left)"
    )
    msg_logger = MessageLogger(opt, run.current_iter, run.tb_logger)
    msg_logger.max_iters = total_iters + 1  # BasicSR's ETA is (max - iter - 1) * avg: negative at the last iter
    cuda_prefetch = opt["datasets"]["train"].get("prefetch_mode") == "cuda"
    prefetcher = CUDAPrefetcher(run.train_loader, opt) if cuda_prefetch else CPUPrefetcher(run.train_loader)
    val_freq = (opt.get("val") or {}).get("val_freq")
    save_freq = int(opt["logger"]["save_checkpoint_freq"])
    model.run_state = lambda: saved_run_state(run)  # in every resume state: random streams, divergence watch
    resumed = run.resume_state if run.resume_state is not None and "rng" in run.resume_state else None
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
                run.epoch_iter += 1
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
                warn(run, run.watch.loss(it, float(model.log_dict.get("l_total", 0.0))))
                model.epoch_iter = run.epoch_iter  # saved in the resume state: resume continues mid-epoch
                if it % save_freq == 0:
                    run.logger.info("Saving models and training states.")
                    model.save(run.epoch, it)
                if val_freq and it % val_freq == 0:
                    validate(run)
                if stop.signum is not None:
                    raise interrupted(run, stop, it % save_freq != 0)
                tic = time.time()
                batch = prefetcher.next()
            if batch is None:  # the epoch ran out: next epoch from its start
                run.epoch += 1
                run.epoch_iter = 0


def start_epoch(run: Run, prefetcher: Any, resumed: dict | None) -> None:
    """The epoch's data iterator; in a resumed run's first epoch, with the interrupted run's random streams.

    Making the iterator draws its base seed from torch's stream (the workers' seeds are base seed + id), so
    it is made from the state torch was in when the interrupted run made it; then every stream (Python's
    ``random`` for BasicSR's crops and flips, NumPy, torch) is set to where the saved run stood.
    """
    run.sampler.set_epoch(run.epoch)
    if resumed is not None:
        torch.set_rng_state(resumed["loader_rng"])
    run.loader_rng = torch.get_rng_state()
    prefetcher.reset()
    run.loader_seed = getattr(getattr(prefetcher, "loader", None), "_base_seed", None)
    if resumed is None:
        return
    rng.restore(resumed["rng"])
    if resumed.get("loader_seed") not in (None, run.loader_seed):
        warn(
            run,
            f"the data loader's base seed is {run.loader_seed}, the saved run's {resumed['loader_seed']}: "
            "this resume is not exact",
        )


def saved_run_state(run: Run) -> dict:
    """What the loop adds to a resume state: every random stream now, and at this epoch's iterator, the watch."""
    return {
        "rng": rng.capture(),
        "loader_rng": run.loader_rng,
        "loader_seed": run.loader_seed,
        "divergence": run.watch.state_dict(),
    }


def interrupted(run: Run, stop: GracefulStop, save: bool) -> TrainingInterrupted:
    """Save a resume state at the step just finished (unless the loop just did) and describe the stop."""
    if save:
        run.model.save(run.epoch, run.current_iter)
    state = Path(run.opt["path"]["training_states"]) / f"{run.current_iter}.state"
    message = (
        f"interrupted by {stop.name} at iter {run.current_iter}: resume state saved ({state}); continue with "
        "--auto_resume"
    )
    run.logger.warning(message)
    return TrainingInterrupted(stop.signum, message)


def warn(run: Run, message: str | None) -> None:
    if message:
        run.logger.warning(message)
        run.notes.append(message)


def validate(run: Run) -> None:
    model = run.model
    for val_loader in run.val_loaders:
        model.validation(val_loader, run.current_iter, run.tb_logger, run.opt["val"].get("save_img", False))
        name = val_loader.dataset.opt["name"]
        baseline = getattr(model, "baselines", {}).get(name, {})
        what = "bicubic" if int(run.opt.get("scale", 1)) > 1 else "input"
        for metric, value in baseline.items():
            got = getattr(model, "metric_results", {}).get(metric)
            if got is not None:
                warn(run, run.watch.validation(run.current_iter, name, metric, float(got), float(value), what))
    run.validated_at = run.current_iter


# --------------------------------------------------------------------------- the end
def finish(run: Run) -> dict:
    """A state at the final iter (so --auto_resume of a finished run does nothing), 'latest', the last
    validation, the DDP weight check and the curves; returns the run's summary."""
    opt, model = run.opt, run.model
    model.epoch_iter = run.epoch_iter
    if run.current_iter % int(opt["logger"]["save_checkpoint_freq"]) != 0:
        model.save(run.epoch, run.current_iter)
    model.save(epoch=-1, current_iter=-1)
    metrics: dict = {}
    if opt.get("val") is not None:
        if run.validated_at != run.current_iter:  # not when the loop just validated this very iteration
            validate(run)
        metrics = dict(getattr(model, "metric_results", {}))
    if run.tb_logger:
        run.tb_logger.close()
    agreement = check_ranks_agree(model) if opt["dist"] else None
    if agreement:
        run.logger.info(agreement)
    seconds = time.time() - run.started
    if opt["rank"] == 0:
        from kit.plots import plot_history

        png = plot_history(run.exp_root / "history.jsonl", run.exp_root / "curves.png", title=opt["name"])
        if png:
            run.logger.info(f"Training curves: {png}")
    barrier(opt)
    end = f"End of training {opt['name']}: {run.current_iter} iters in {seconds:.0f} s; metrics {metrics}"
    if run.notes:
        run.logger.warning(f"{end}; WARNING: {' | '.join(run.notes)}")
    else:
        run.logger.info(end)
    return {
        "name": opt["name"],
        "experiments_root": str(run.exp_root),
        "latest_checkpoint": str(Path(opt["path"]["models"]) / "net_g_latest.pth"),
        "iters": run.current_iter,
        "seconds": seconds,
        "metrics": metrics,
        "notes": list(run.notes),
    }


def main() -> None:
    """Entry point of ``train.py``: one line on an error (see :mod:`kit.cli.train`)."""
    from kit.cli.train import main as cli_main

    raise SystemExit(cli_main())
