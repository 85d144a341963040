"""Shared fixtures: the bundled photos and unique experiment names (helpers are in tests/helpers.py)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import kit  # noqa: F401  (compat + registries)

# isort: split
import pytest

from kit.data import bundled
from tests.helpers import REPO


@pytest.fixture(scope="session")
def bundled_root() -> Path:
    """The bundled photo dataset (built once per machine, like a first run of the main job)."""
    return bundled.build()


@pytest.fixture
def exp_name():
    """A unique experiment name under the repo's experiments/ (removed afterwards, archives included)."""
    name = f"test_{uuid.uuid4().hex[:8]}"
    yield name
    for folder in (REPO / "experiments").glob(f"{name}*"):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def warm(tmp_path_factory: pytest.TempPathFactory):
    """Runs of train.py/export.py, each in its own process forked from one warm process (tests/warm_runner.py)."""
    from tests.warm_runner import WarmRunner

    runner = WarmRunner(tmp_path_factory.mktemp("warm"))
    yield runner
    runner.close()
