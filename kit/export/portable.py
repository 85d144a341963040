"""No machine paths in a submission: paths relative to the repo root, or plain file names for paths outside it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from kit.options import REPO_ROOT

__all__ = ["portable_path", "scrub_paths"]

# an absolute POSIX path: a "/" that does not follow a word character, ".", "/" or "-", then path characters
_ABSOLUTE = re.compile(r"(?<![\w./-])/[^\s'\"<>|,;:()\[\]{}]+")


def portable_path(path: str | os.PathLike, root: Path = REPO_ROOT) -> str:
    """``path`` relative to ``root`` (POSIX separators) when inside it, else its last component."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        return p.name


def _machine_path(text: str) -> bool:
    """An absolute path whose top folder exists here (``/work/...``, ``/tmp/...``), unlike ONNX names (``/a/Conv``)."""
    top = text.lstrip("/").split("/", 1)[0]
    return bool(top) and os.path.isdir("/" + top)


def scrub_paths(obj: Any, root: Path = REPO_ROOT) -> Any:
    """A copy of a JSON-like ``obj`` in which every machine path inside a string is made :func:`portable_path`.

    A machine path is an absolute path whose top folder exists on this machine; other strings that start with
    ``/`` (ONNX node names such as ``/body/body.0/esa/Resize``) are kept.
    """
    if isinstance(obj, str):
        return _ABSOLUTE.sub(
            lambda m: portable_path(m.group(0), root) if _machine_path(m.group(0)) else m.group(0), obj
        )
    if isinstance(obj, dict):
        return {scrub_paths(k, root): scrub_paths(v, root) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_paths(v, root) for v in obj]
    return obj
