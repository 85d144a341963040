"""Resume: the state to continue from found in the experiment's own folder, only the student re-pointed, the run
continued where the state left it (the state's format: :mod:`kit.run.state`).

Replaces ``basicsr.train.load_resume_state`` (calls ``torch.cuda.current_device()``, so resume crashes
without a GPU, and looks for states relative to the cwd) and ``basicsr.utils.check_resume`` (re-points
``pretrain_network_<x>`` for every ``network_<x>``, the teacher too).
"""

from __future__ import annotations

import os
from pathlib import Path

from kit.checkpoint import CheckpointError, load_checkpoint
from kit.run.context import Run
from kit.run.state import ResumeState


def find_resume_state(experiments_root: str | os.PathLike) -> Path | None:
    """The newest ``<iter>.state`` under the experiment's own folder (not relative to the cwd)."""
    states = resume_candidates(experiments_root)
    return states[0] if states else None


def resume_candidates(experiments_root: str | os.PathLike) -> list[Path]:
    """Every ``<iter>.state`` of the experiment, newest first."""
    folder = Path(experiments_root) / "training_states"
    states = [p for p in folder.glob("*.state") if p.stem.isdigit()] if folder.is_dir() else []
    return sorted(states, key=lambda p: int(p.stem), reverse=True)


def load_newest_usable(
    experiments_root: str | os.PathLike, models: str | os.PathLike
) -> tuple[Path | None, ResumeState | None, list[str]]:
    """The newest resume state that loads, with its ``net_g_<iter>.pth``; a corrupt one falls back to the previous.

    A run killed while the disk filled, or a file damaged later, must not stop ``--auto_resume``: the state
    before it is as good a place to continue from (the training repeats a few iterations).

    Returns:
        ``(path, state, warnings)``; ``(None, None, warnings)`` when no state is usable (or there is none).
    """
    warnings = []
    for path in resume_candidates(experiments_root):
        net = Path(models) / f"net_g_{path.stem}.pth"
        try:
            raw = load_checkpoint(path)
            if raw.get("iter") != int(path.stem):
                raise CheckpointError(f"'{path}' says iter {raw.get('iter')!r}, its name {path.stem}")
            load_checkpoint(net)
            state = ResumeState.from_dict(raw)
        except CheckpointError as err:
            warnings.append(f"resume state {path.name} is not usable ({err}); trying the one before it")
            continue
        return path, state, warnings
    return None, None, warnings


def point_student_at_resume(opt: dict, resume_iter: int) -> None:
    """On resume, load only the student (``network_g``) from the experiment's models folder.

    The teacher keeps its own ``pretrain_network_t`` (it is frozen and never saved by the kit);
    connectors come back from the resume state itself.
    """
    opt["path"]["pretrain_network_g"] = os.path.join(opt["path"]["models"], f"net_g_{resume_iter}.pth")
    opt["path"]["param_key_g"] = "params"
    opt["path"]["strict_load_g"] = True


def find_resume(run: Run) -> None:
    """The resume state to continue from (read only): ``--auto_resume``'s newest usable one, or path.resume_state."""
    opt = run.opt
    run.exp_root = Path(opt["path"]["experiments_root"])
    if opt["auto_resume"]:
        run.state_path, run.resume_state, warnings = load_newest_usable(run.exp_root, opt["path"]["models"])
        for warning in warnings:
            run.warn(warning)
        if run.state_path is None:
            run.warn(
                f"--auto_resume found no usable resume state in {run.exp_root / 'training_states'}; starting at iter 0"
            )
    if run.state_path is None and opt["path"].get("resume_state"):
        run.state_path = Path(opt["path"]["resume_state"])
        run.resume_state = ResumeState.load(run.state_path)
    if run.resume_state is not None:
        point_student_at_resume(opt, run.resume_state.current_iter)


def continue_from(run: Run, state: ResumeState) -> None:
    """Put the built run where ``state`` left it: the model's part, the watch, the progress, the epoch's data."""
    state.restore(run.model, run.watch)
    run.current_iter, run.epoch, run.epoch_iter = state.current_iter, state.epoch, state.epoch_iter
    run.sampler.skip_next(run.epoch_iter * run.opt["datasets"]["train"]["batch_size_per_gpu"])
    exact = "with its random streams" if state.streams is not None else "without random streams (an older state)"
    run.logger.info(
        f"Resuming from {run.state_path}: epoch {run.epoch}, iter {run.current_iter} "
        f"({run.epoch_iter} into the epoch), {exact}"
    )
