"""Staging folders of killed exports (``submissions/.<name>.partial-*``): owned by a pid, removed once it is gone.

An export builds its submission in such a folder and renames it into place; a SIGKILL leaves it behind. The next
export removes every staging folder whose owner process no longer runs (a live concurrent export keeps its own).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

OWNER_FILE = ".owner_pid"
GRACE_S = 10.0  # a folder without an owner file this young may be one that another export just made


def claim(folder: Path) -> None:
    """Record the current process as the owner of the staging ``folder``."""
    (folder / OWNER_FILE).write_text(str(os.getpid()), encoding="ascii")


def clean_stale(out_dir: Path) -> list[Path]:
    """Remove the staging folders of ``out_dir`` whose owner is gone; returns them."""
    removed = []
    for folder in sorted(out_dir.glob(".*.partial-*")) if out_dir.is_dir() else []:
        if folder.is_dir() and not _owned_by_live_process(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _owned_by_live_process(folder: Path) -> bool:
    owner = folder / OWNER_FILE
    try:
        pid = int(owner.read_text(encoding="ascii"))
    except (OSError, ValueError):
        return time.time() - folder.stat().st_mtime < GRACE_S
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
