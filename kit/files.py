"""Write a folder (or a file) under a temporary name and rename it into place: never a half-written result.

Every writer of a derived folder — the bundled photos, fixed degradations, the teacher pool, the teacher cache,
a submission — builds it with :func:`staged_folder`, so an interrupted build leaves nothing under the final name and
the next run starts clean.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

__all__ = ["staged_folder"]

IfExists = Literal["keep", "replace", "error"]


@contextlib.contextmanager
def staged_folder(dest: str | Path, if_exists: IfExists = "error") -> Iterator[Path]:
    """Yield an empty hidden folder beside ``dest``; on a clean exit rename it to ``dest``, on an error remove it.

    Args:
        dest: the folder to create. Its parent is created when missing; the staging folder lives in the same
            parent, so the final rename stays on one file system (atomic).
        if_exists: what to do when ``dest`` exists at the end: ``"keep"`` keeps it and drops the new content
            (another process finished the same deterministic result first), ``"replace"`` removes it first,
            ``"error"`` raises :class:`FileExistsError` naming it.

    The folder gets the permissions of any folder made under the current umask (``mkdtemp`` makes 0700).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        tmp.chmod(0o777 & ~mask)
        if dest.exists() or dest.is_symlink():
            if if_exists == "keep":
                return
            if if_exists == "error":
                raise FileExistsError(f"'{dest}' already exists; it is not overwritten (delete it or choose another)")
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            else:
                dest.unlink()
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
