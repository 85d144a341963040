"""One test per BasicSR adaptation in kit/compat.py: each fails if the adaptation regresses."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import sys

import pytest
from basicsr.utils.registry import ARCH_REGISTRY

from kit import compat


def test_1_functional_tensor_alias() -> None:
    assert "torchvision.transforms.functional_tensor" in sys.modules
    import basicsr.data.degradations as deg  # imports rgb_to_grayscale from the old path

    assert callable(deg.rgb_to_grayscale)


def test_2_init_dist_requires_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        compat.init_dist("pytorch")
    with pytest.raises(ValueError, match="not supported"):
        compat.init_dist("slurm")


def test_3_registry_error_names_closest() -> None:
    with pytest.raises(KeyError, match="closest: RRDBNet"):
        ARCH_REGISTRY.get("RRDBNett")
