"""Resume states: found in the experiment's own folder, loaded on any device, only the student re-pointed.

Replaces ``basicsr.train.load_resume_state`` (calls ``torch.cuda.current_device()``, so resume crashes
without a GPU, and looks for states relative to the cwd) and ``basicsr.utils.check_resume`` (re-points
``pretrain_network_<x>`` for every ``network_<x>``, the teacher too).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kit.checkpoint import load_checkpoint


def find_resume_state(experiments_root: str | os.PathLike) -> Path | None:
    """The newest ``<iter>.state`` under the experiment's own folder (not relative to the cwd)."""
    folder = Path(experiments_root) / "training_states"
    states = [p for p in folder.glob("*.state") if p.stem.isdigit()] if folder.is_dir() else []
    return max(states, key=lambda p: int(p.stem)) if states else None


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
