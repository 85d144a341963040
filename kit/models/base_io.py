"""What the kit's models do differently from BasicSR's ``BaseModel``: safe loading, atomic saves, any optimizer.

These are the kit's own behaviour, not compatibility shims, so they are methods of the kit's models (via this
mixin, the first base of :class:`kit.models.sr_model.KitSRModel`) instead of global patches of BasicSR:

- ``get_optimizer``: BasicSR accepts only ``Adam``; any ``torch.optim`` class by name here.
- ``model_to_device``: BasicSR passes ``device_ids=[cuda.current_device()]`` to DDP; none on the CPU here.
- ``load_network``: BasicSR unpickles with ``torch.load`` (can run code) and prints every key on a mismatch;
  here ``weights_only=True``/safetensors (:mod:`kit.checkpoint`) and one summarised error that also says what
  the weights look like (:mod:`kit.pretrained`).
- ``save_network``: BasicSR writes in place and ignores a failed write; here a temp file renamed into place,
  and a failure raises (no half-written checkpoint under the final name).
- ``save_training_state``: BasicSR's ``save`` writes the resume state from the model; here ``save`` writes the
  weights only, and the model offers its part of the state through :meth:`SafeModelIO.training_state` (restored
  by BasicSR's ``resume_training``): the run owns the format and writes the file (:mod:`kit.run.state`).
"""

from __future__ import annotations

import difflib
import os

import torch
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info

from kit.checkpoint import save_atomic
from kit.pretrained import load_weights
from kit.registry import check_arguments


class SafeModelIO:
    """Mixin for BasicSR ``BaseModel`` subclasses; see the module docstring."""

    def get_optimizer(self, optim_type: str, params, lr: float, **kwargs) -> torch.optim.Optimizer:
        """Any ``torch.optim`` optimizer by class name (``Adam``, ``AdamW``, ``SGD``, ...)."""
        cls = getattr(torch.optim, optim_type, None)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            names = [n for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type) and n[0].isupper()]
            close = difflib.get_close_matches(optim_type, names, n=3)
            raise ValueError(f"optim_g.type '{optim_type}' is not a torch.optim optimizer; closest: {', '.join(close)}")
        check_arguments(cls, {"params": params, "lr": lr, **kwargs}, "train:optim_g")
        return cls(params, lr, **kwargs)

    def model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
        """DDP with ``device_ids`` only when the model lives on a GPU."""
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
        """Safe, summarised loading of a network's weights (``params_ema`` falls back to ``params``).

        A ``path.param_key_g`` the options name must be in the checkpoint (no silent fallback); the log says
        which key was read.
        """
        net = self.get_bare_model(net)
        named = self.opt["path"].get("param_key_g")
        explicit = named is not None and param_key == named and net is self.get_bare_model(self.net_g)
        found = load_weights(net, load_path, param_key, strict=strict, explicit=explicit)
        get_root_logger().info(f"Loaded {type(net).__name__} from {load_path} [{found}; asked for {param_key}].")

    def save_network(self, net, net_label: str, current_iter, param_key="params") -> None:
        """Atomic save of one or several networks into ``models/{label}_{iter}.pth``."""
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
        """Nothing: BasicSR's ``save`` calls this; the run writes the resume state (:mod:`kit.run.state`)."""

    def training_state(self) -> dict:
        """The model's part of a resume state: optimizers, schedulers and :meth:`extra_training_state`.

        ``resume_training`` (BasicSR's, extended by subclasses) takes the same dict back.
        """
        state = {"optimizers": [o.state_dict() for o in self.optimizers]}
        state["schedulers"] = [s.state_dict() for s in self.schedulers]
        state.update(self.extra_training_state())
        return state

    def extra_training_state(self) -> dict:
        """Training-only state saved with every resume state (none here; connectors in DistillModel)."""
        return {}
