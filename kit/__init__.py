"""Distillation kit for size-capped image-restoration challenges, built on BasicSR.

Importing ``kit`` adapts BasicSR 1.4.2 to current torch (:mod:`kit.compat`) and registers the kit's
architectures, losses, datasets, metrics and models into BasicSR's registries (:func:`install`).

Under one of the kit's own command lines (``train.py``, ``export.py``, ``kit-eval``, ``kit-fit``, ...) the import
stays light and the command calls :func:`install` once its arguments are parsed: ``--help`` and a usage error
answer at once instead of after torch's import (seconds); ``tests/test_help.py`` checks that torch stays out.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kit import guards

guards.apply()  # before OpenCV and onnxruntime load: the pixel limit, no writes outside the repo

__version__ = "0.1.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("train.py", "export.py")  # at the repository's top
COMMANDS = (
    "kit-eval",
    "kit-fit",
    "kit-data",
    "kit-inspect",
    "kit-prune",
)  # pyproject's console scripts whose main() calls install()


def command_line() -> bool:
    """Whether the program running is one of the kit's command lines (each parses, then calls :func:`install`)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is None:
        return False
    if program.name in SCRIPTS:
        return program.resolve() == REPO_ROOT / program.name
    return program.name in COMMANDS


def install() -> None:
    """Adapt BasicSR to current torch and register the kit's classes (idempotent)."""
    from kit import compat

    compat.install()
    from kit import archs, data, distill, losses, metrics, models, quant, teachers  # noqa: F401  (registration)


if not command_line():
    install()
