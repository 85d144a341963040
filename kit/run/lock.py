"""A run owns its experiment folder: an exclusive lock held from start-up to the run's end.

Two runs of one name started a second apart used to share the folder (the second moved the first's live folder
aside; both wrote ``history.jsonl``). The lock is ``experiments/.<name>.lock``, beside the folder, so that moving
an old folder aside never moves it. It is an ``fcntl.flock`` (the kernel drops it when its process dies, however
it dies) on a file holding the owner's pid: a second run of the name is refused naming that pid, and a lock file
left by a run that is gone (a pid written, no flock held) is taken over with a warning. The file is removed when
the run ends, whether it finished or failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["ExperimentLocked", "experiment_lock", "lock_path"]


class ExperimentLocked(RuntimeError):
    """Another live run holds the experiment's lock."""


def lock_path(experiments: Path, name: str) -> Path:
    """The lock file of experiment ``name`` (hidden, beside its folder under ``experiments``)."""
    return Path(experiments) / f".{name}.lock"


@contextlib.contextmanager
def experiment_lock(
    experiments: Path, name: str, warn: Callable[[str], None], enabled: bool = True
) -> Iterator[Path | None]:
    """Hold experiment ``name``'s lock for the ``with`` block (nothing when not ``enabled``: DDP ranks > 0).

    Raises:
        ExperimentLocked: a live process holds it (the message names its pid).
    """
    if not enabled:
        yield None
        return
    experiments = Path(experiments)
    made = not experiments.exists()
    path = lock_path(experiments, name)
    fd = _acquire(path, name, warn)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)  # before the flock goes: a waiting opener sees a removed file and retries
        os.close(fd)
        if made:
            with contextlib.suppress(OSError):
                experiments.rmdir()  # only when empty: a failed start leaves no folder it made


def _acquire(path: Path, name: str, warn: Callable[[str], None]) -> int:
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(
            f"'{path.parent}' is a file, not a folder: the kit keeps its experiments there; move the file away"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _pid_in(fd)
            os.close(fd)
            raise ExperimentLocked(_held_message(path, name, owner)) from None
        if not _same_file(fd, path):  # its owner removed it between our open and our flock: open the new one
            os.close(fd)
            continue
        previous = _pid_in(fd)
        if previous is not None:
            warn(
                f"experiment '{name}': took over the lock {path} of pid {previous}, a run that ended without "
                "releasing it (killed?)"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd
    raise ExperimentLocked(f"experiment '{name}': could not take the lock {path} (it keeps being replaced)")


def _held_message(path: Path, name: str, owner: int | None) -> str:
    who = f"pid {owner}" if owner is not None else "another process"
    if owner == os.getpid():
        return (
            f"experiment '{name}' is already being run by this process (does path.teacher_recipe lead back to its "
            "own options file?); give the teacher recipe an options file and name of its own"
        )
    return (
        f"experiment '{name}' is in use by a running train.py ({who}, lock {path}); wait for it to finish or stop "
        "it, or give this run another name"
    )


def _pid_in(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)
