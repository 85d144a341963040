"""The one place that adapts BasicSR 1.4.2 to current torch/torchvision (and to CPU-only machines).

Each adaptation names the BasicSR behaviour it replaces; ``tests/test_compat.py`` has a test per item
that fails if it regresses. :func:`install` is idempotent and runs on ``import kit``.

1. ``basicsr.data.degradations`` imports ``torchvision.transforms.functional_tensor`` (removed in
   torchvision 0.17): alias it to ``torchvision.transforms._functional_tensor`` before importing basicsr.
2. ``BaseModel.get_optimizer`` accepts only ``Adam``: accept any ``torch.optim`` class by name.
3. ``BaseModel.model_to_device`` passes ``device_ids=[cuda.current_device()]`` to DDP: on CPU pass none.
4. ``BaseModel.load_network`` unpickles with ``torch.load`` (can run code) and prints every key on a
   mismatch: load with ``weights_only=True``/safetensors and raise one summarised error.
5. ``BaseModel.save_network``/``save_training_state`` write in place and *ignore* a failed write: write
   to a temp file and rename, and raise on failure (no half-written checkpoint under the final name).
6. ``basicsr.utils.dist_util.init_dist`` hard-codes NCCL and ``rank % cuda.device_count()``: use gloo
   and no ``set_device`` without a GPU (:func:`init_dist`).
7. ``basicsr.train.load_resume_state`` calls ``torch.cuda.current_device()`` and looks for states
   relative to the cwd: :func:`find_resume_state` / :func:`load_resume_state` use the experiment
   folder under the repo root and map to the CPU.
8. ``basicsr.utils.check_resume`` re-points ``pretrain_network_<x>`` for every ``network_<x>`` (the
   teacher too): :func:`point_student_at_resume` re-points only ``network_g``.
9. ``Registry.get`` prints "Name X is not found, use name: X_basicsr!" then a bare KeyError: raise one
   KeyError naming the registry and the closest registered names.
10. ``SRModel.nondist_validation`` calls ``torch.cuda.empty_cache()`` each image: harmless, left alone.

The unsafe YAML loader and ``exec``-based ``--force_yml`` of ``basicsr.utils.options`` are not patched
but replaced: the kit never calls them (see :mod:`kit.options`).
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import torch

_INSTALLED = False


def _alias_functional_tensor() -> None:
    """(1) Provide the module path BasicSR 1.4.2 imports from torchvision < 0.17."""
    name = "torchvision.transforms.functional_tensor"
    if name not in sys.modules:
        sys.modules[name] = importlib.import_module("torchvision.transforms._functional_tensor")


def get_optimizer(self, optim_type: str, params, lr: float, **kwargs) -> torch.optim.Optimizer:
    """(2) Any ``torch.optim`` optimizer by class name (``Adam``, ``AdamW``, ``SGD``, ...)."""
    cls = getattr(torch.optim, optim_type, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        names = [n for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type) and n[0].isupper()]
        close = difflib.get_close_matches(optim_type, names, n=3)
        raise ValueError(f"optim_g.type '{optim_type}' is not a torch.optim optimizer; closest: {', '.join(close)}")
    return cls(params, lr, **kwargs)


def model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
    """(3) DDP with ``device_ids`` only when the model lives on a GPU."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    net = net.to(self.device)
    if self.opt["dist"]:
        find_unused = self.opt.get("find_unused_parameters", False)
        device_ids = [torch.cuda.current_device()] if self.device.type == "cuda" else None
        net = DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=find_unused)
    elif self.opt["num_gpu"] > 1:
        net = DataParallel(net)
    return net


def load_network(self, net, load_path: str, strict: bool = True, param_key: str | None = "params") -> None:
    """(4) Safe, summarised loading of a network's weights (``params_ema`` falls back to ``params``)."""
    from basicsr.utils import get_root_logger

    from kit.checkpoint import extract_state_dict, load_checkpoint, load_into

    net = self.get_bare_model(net)
    state = extract_state_dict(load_checkpoint(load_path), param_key)
    get_root_logger().info(f"Loading {type(net).__name__} from {load_path} [{param_key}].")
    load_into(net, state, f"checkpoint '{load_path}'", strict=strict)


def save_network(self, net, net_label: str, current_iter, param_key="params") -> None:
    """(5) Atomic save of one or several networks into ``models/{label}_{iter}.pth``."""
    from basicsr.utils.dist_util import get_dist_info

    from kit.checkpoint import save_atomic

    if get_dist_info()[0] != 0:
        return
    current_iter = "latest" if current_iter == -1 else current_iter
    nets = net if isinstance(net, list) else [net]
    keys = param_key if isinstance(param_key, list) else [param_key]
    save = {}
    for net_, key in zip(nets, keys, strict=True):
        state = self.get_bare_model(net_).state_dict()
        save[key] = {(k[7:] if k.startswith("module.") else k): v.detach().cpu() for k, v in state.items()}
    save_atomic(save, os.path.join(self.opt["path"]["models"], f"{net_label}_{current_iter}.pth"))


def save_training_state(self, epoch: int, current_iter: int) -> None:
    """(5) Atomic save of optimizers, schedulers and the model's extra training modules (connectors)."""
    from basicsr.utils.dist_util import get_dist_info

    from kit.checkpoint import save_atomic

    if current_iter == -1 or get_dist_info()[0] != 0:
        return
    state = {"epoch": epoch, "iter": current_iter, "epoch_iter": getattr(self, "epoch_iter", 0)}
    state["optimizers"] = [o.state_dict() for o in self.optimizers]
    state["schedulers"] = [s.state_dict() for s in self.schedulers]
    state.update(getattr(self, "extra_training_state", dict)())
    save_atomic(state, os.path.join(self.opt["path"]["training_states"], f"{current_iter}.state"))


def registry_get(self, name: str, suffix: str = "basicsr"):
    """(9) Registry lookup with the closest names in the error instead of a print and a bare KeyError."""
    obj = self._obj_map.get(name) or self._obj_map.get(f"{name}_{suffix}")
    if obj is None:
        close = difflib.get_close_matches(name, list(self._obj_map), n=4, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise KeyError(f"no {self._name} named '{name}' is registered{hint}")
    return obj


def init_dist(launcher: str, backend: str | None = None) -> None:
    """(6) Start ``torch.distributed`` from torchrun's environment; gloo on CPU, NCCL on GPUs."""
    import torch.distributed as dist

    if launcher != "pytorch":
        raise ValueError(f"launcher '{launcher}' is not supported; use --launcher pytorch with torchrun")
    if "RANK" not in os.environ:
        raise RuntimeError("--launcher pytorch needs torchrun (RANK/WORLD_SIZE are not set)")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    dist.init_process_group(backend=backend or ("nccl" if torch.cuda.is_available() else "gloo"))


def find_resume_state(experiments_root: str | os.PathLike) -> Path | None:
    """(7) The newest ``<iter>.state`` under the experiment's own folder (not relative to the cwd)."""
    folder = Path(experiments_root) / "training_states"
    states = [p for p in folder.glob("*.state") if p.stem.isdigit()] if folder.is_dir() else []
    return max(states, key=lambda p: int(p.stem)) if states else None


def load_resume_state(path: str | os.PathLike) -> dict[str, Any]:
    """(7) Load a resume state on any device, without unpickling code."""
    from kit.checkpoint import load_checkpoint

    return load_checkpoint(path)


def point_student_at_resume(opt: dict, resume_iter: int) -> None:
    """(8) On resume, load only the student (``network_g``) from the experiment's models folder.

    The teacher keeps its own ``pretrain_network_t`` (it is frozen and never saved by the kit);
    connectors come back from the resume state itself.
    """
    opt["path"]["pretrain_network_g"] = os.path.join(opt["path"]["models"], f"net_g_{resume_iter}.pth")
    opt["path"]["param_key_g"] = "params"
    opt["path"]["strict_load_g"] = True


def install() -> None:
    """Apply every adaptation above (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    _alias_functional_tensor()
    from basicsr.models.base_model import BaseModel
    from basicsr.utils.registry import Registry

    BaseModel.get_optimizer = get_optimizer
    BaseModel.model_to_device = model_to_device
    BaseModel.load_network = load_network
    BaseModel.save_network = save_network
    BaseModel.save_training_state = save_training_state
    Registry.get = registry_get
    _INSTALLED = True
