"""The one place that adapts BasicSR 1.4.2 to current torch/torchvision (and to CPU-only machines).

Each adaptation names the BasicSR behaviour it replaces; ``tests/test_compat.py`` has a test per item
that fails if it regresses. :func:`install` is idempotent and runs on ``import kit``.

1. ``basicsr.data.degradations`` imports ``torchvision.transforms.functional_tensor`` (removed in
   torchvision 0.17): alias it to ``torchvision.transforms._functional_tensor`` before importing basicsr.
2. ``basicsr.utils.dist_util.init_dist`` hard-codes NCCL and ``rank % cuda.device_count()``: use gloo
   and no ``set_device`` without a GPU (:func:`init_dist`).
3. ``Registry.get`` prints "Name X is not found, use name: X_basicsr!" then a bare KeyError: raise one
   KeyError naming the registry and the closest registered names.
4. ``SRModel.nondist_validation`` calls ``torch.cuda.empty_cache()`` each image: harmless, left alone.

What the kit does *instead of* BasicSR is not here: its models' safe loading, atomic saves, any optimizer
and CPU DDP (:mod:`kit.models.base_io`), resume from the experiment folder (:mod:`kit.run.resume`), the safe
options loader and ``--force_yml`` without ``exec`` (:mod:`kit.options`), and the training loop
(:mod:`kit.run`).
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys

import torch

_INSTALLED = False


def _alias_functional_tensor() -> None:
    """(1) Provide the module path BasicSR 1.4.2 imports from torchvision < 0.17."""
    name = "torchvision.transforms.functional_tensor"
    if name not in sys.modules:
        sys.modules[name] = importlib.import_module("torchvision.transforms._functional_tensor")


def registry_get(self, name: str, suffix: str = "basicsr"):
    """(3) Registry lookup with the closest names in the error instead of a print and a bare KeyError."""
    obj = self._obj_map.get(name) or self._obj_map.get(f"{name}_{suffix}")
    if obj is None:
        close = difflib.get_close_matches(name, list(self._obj_map), n=4, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise KeyError(f"no {self._name} named '{name}' is registered{hint}")
    return obj


def init_dist(launcher: str, backend: str | None = None) -> None:
    """(2) Start ``torch.distributed`` from torchrun's environment; gloo on CPU, NCCL on GPUs."""
    import torch.distributed as dist

    if launcher != "pytorch":
        raise ValueError(f"launcher '{launcher}' is not supported; use --launcher pytorch with torchrun")
    if "RANK" not in os.environ:
        raise RuntimeError("--launcher pytorch needs torchrun (RANK/WORLD_SIZE are not set)")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    dist.init_process_group(backend=backend or ("nccl" if torch.cuda.is_available() else "gloo"))


def install() -> None:
    """Apply every adaptation above (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    _alias_functional_tensor()
    from basicsr.utils.registry import Registry

    Registry.get = registry_get
    _INSTALLED = True
