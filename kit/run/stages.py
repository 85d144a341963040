"""The run's stages in order (set up → check inputs → teacher first → build → loop → finish), and the two stages
that need the others: the teacher trained first (a run of its own) and the build."""

from __future__ import annotations

from pathlib import Path

from basicsr.utils import set_random_seed

from kit.options import REPO_ROOT, TrainFlags
from kit.registry import build_model
from kit.run.context import Run
from kit.run.ddp import wait_for_rank0
from kit.run.divergence import DivergenceWatch
from kit.run.experiment import open_experiment
from kit.run.finish import finish
from kit.run.loaders import attach_teacher_cache, build_loaders
from kit.run.lock import experiment_lock
from kit.run.loop import train_loop
from kit.run.resume import continue_from, find_resume
from kit.run.startup import check_inputs, set_up
from kit.teachers import check_teacher_files, load_teachers_frozen_rng, teacher_entries


def run_training(flags: TrainFlags, root: Path = REPO_ROOT, dist: bool | None = None, console: bool = True) -> dict:
    """Run ``train.py`` with ``flags``; returns a summary (experiment folder, checkpoint, last metrics).

    ``console=False`` keeps the console to warnings (benchmarks); the log file is complete either way.
    """
    run = set_up(flags, root, dist, console)
    # The run owns experiments/<name> from here to its end: a second run of the name is refused (kit.run.lock).
    with experiment_lock(run.root / "experiments", run.opt["name"], run.warn, enabled=run.opt["rank"] == 0):
        check_inputs(run)
        train_teacher(run)
        build(run)
        train_loop(run)
        return finish(run)


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
    check_pair_paths(opt)  # a typo in a pair must not wait for the teacher's training
    if opt["rank"] == 0:
        what = f"no teacher checkpoint at {ckpt}; training the teacher from {recipe_path}"
        run.logger.info(f"==== Stage 1/2: {what} ====")
        summary = run_training(TrainFlags(str(recipe_path), auto_resume=True), root=run.root, dist=False)
        run.logger.info(f"==== Stage 1/2 done: teacher at {summary['latest_checkpoint']} ====")
        if not Path(ckpt).is_file():
            raise FileNotFoundError(
                f"the teacher recipe {recipe_path} finished but path.pretrain_network_t '{ckpt}' still does not "
                "exist; make pretrain_network_t point at experiments/<teacher name>/models/net_g_latest.pth"
            )
    wait_for_rank0(opt, Path(ckpt))


def check_pair_paths(opt: dict) -> None:
    """The feature pairs' module paths, on the declared networks (random weights), before stage 1 trains the teacher.

    The model checks them again with the trained teacher (paths and shapes, a dry forward) before any other slow work.
    """
    from kit.distill.pairs.recorder import FeatureRecorder
    from kit.distill.pairs.wiring import parse_distill
    from kit.registry import build_network

    distill = opt["train"].get("distill") or {}
    teacher_type = (opt.get("network_t") or {}).get("type")
    if "auto" in distill or teacher_type in (None, "AutoTeacher"):  # found by the model / built from the checkpoint
        return
    _, pairs = parse_distill(distill, ["teacher"])
    if not pairs:
        return
    student = build_network(dict(opt["network_g"]), "network_g")
    teacher = build_network(dict(opt["network_t"]), "network_t")
    for pair in pairs:
        FeatureRecorder(student, {pair.name: pair.student}, pair.source, role="student")
        FeatureRecorder(teacher, {pair.name: pair.teacher}, pair.source, role="teacher")


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
        continue_from(run, run.resume_state)
