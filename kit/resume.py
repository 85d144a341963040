"""Resume states: found in the experiment's own folder, loaded on any device, only the student re-pointed.

Replaces ``basicsr.train.load_resume_state`` (calls ``torch.cuda.current_device()``, so resume crashes
without a GPU, and looks for states relative to the cwd) and ``basicsr.utils.check_resume`` (re-points
``pretrain_network_<x>`` for every ``network_<x>``, the teacher too).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kit.checkpoint import CheckpointError, load_checkpoint


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
) -> tuple[Path | None, dict | None, list[str]]:
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
            state = load_resume_state(path)
            if state.get("iter") != int(path.stem):
                raise CheckpointError(f"'{path}' says iter {state.get('iter')!r}, its name {path.stem}")
            load_checkpoint(net)
        except CheckpointError as err:
            warnings.append(f"resume state {path.name} is not usable ({err}); trying the one before it")
            continue
        return path, state, warnings
    return None, None, warnings


def clean_partial_writes(experiments_root: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of writes that a killed run left (``.<name>.<random>.tmp``, never a checkpoint)."""
    removed = []
    for sub in ("models", "training_states"):
        folder = Path(experiments_root) / sub
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def load_resume_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a resume state on any device, without unpickling code."""
    return load_checkpoint(path)


def point_student_at_resume(opt: dict, resume_iter: int) -> None:
    """On resume, load only the student (``network_g``) from the experiment's models folder.

    The teacher keeps its own ``pretrain_network_t`` (it is frozen and never saved by the kit);
    connectors come back from the resume state itself.
    """
    opt["path"]["pretrain_network_g"] = os.path.join(opt["path"]["models"], f"net_g_{resume_iter}.pth")
    opt["path"]["param_key_g"] = "params"
    opt["path"]["strict_load_g"] = True
