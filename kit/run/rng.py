"""Random streams of a run, captured into a resume state and restored, so that a resumed run is an uninterrupted one.

BasicSR draws its crops and flips from Python's ``random``, degradations from NumPy, and the DataLoader draws
its iterator's base seed (the workers' seeds are ``base_seed + worker_id``) from torch's stream when an
iterator is created. BasicSR's resume re-seeds all of them at every start, so a resumed run sees other crops.
Only reading the states (never drawing) keeps an uninterrupted run's random stream as it was.

The states are plain tensors, ints and tuples, so that a resume state still loads with ``weights_only=True``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture() -> dict[str, Any]:
    """The current states of Python's ``random``, NumPy's global stream, torch's CPU and CUDA generators."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    """Set every stream back to a :func:`capture`'d state (CUDA only when the same number of GPUs is in use)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
