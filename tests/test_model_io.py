"""The kit's models instead of BasicSR's BaseModel (kit/models/base_io.py): any optimizer, CPU DDP, safe loading,
atomic saves. Each test fails if the kit falls back to BasicSR's behaviour."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import os
import pickle
from pathlib import Path

import pytest
import torch
from basicsr.models.base_model import BaseModel

from kit.checkpoint import CheckpointError
from kit.models import KitSRModel
from kit.models.base_io import SafeModelIO
from tests.helpers import free_port


class _Model(SafeModelIO, BaseModel):
    def __init__(self, tmp: Path, dist: bool = False) -> None:
        super().__init__(
            {"num_gpu": 0, "is_train": True, "dist": dist, "path": {"models": str(tmp), "training_states": str(tmp)}}
        )


def test_kit_models_use_the_safe_io() -> None:
    for name in ("get_optimizer", "model_to_device", "load_network", "save_network", "save_training_state"):
        assert getattr(KitSRModel, name) is getattr(SafeModelIO, name), name
        assert getattr(BaseModel, name) is not getattr(SafeModelIO, name), f"BaseModel.{name} is patched globally"


def test_any_torch_optimizer(tmp_path: Path) -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = _Model(tmp_path).get_optimizer("AdamW", params, 1e-3, weight_decay=0.1)
    assert isinstance(opt, torch.optim.AdamW)
    with pytest.raises(ValueError, match="closest: Adam"):
        _Model(tmp_path).get_optimizer("Adamm", params, 1e-3)


def test_ddp_on_cpu_without_device_ids(tmp_path: Path) -> None:
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(free_port())
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        net = _Model(tmp_path, dist=True).model_to_device(torch.nn.Linear(2, 2))
        assert isinstance(net, torch.nn.parallel.DistributedDataParallel)
        assert net.device_ids is None
    finally:
        dist.destroy_process_group()


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['KIT_EVIL_MARKER']}",))


def test_load_network_is_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ran"
    monkeypatch.setenv("KIT_EVIL_MARKER", str(marker))
    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        pickle.dump({"params": _Evil()}, f)
    with pytest.raises(CheckpointError, match="refused"):
        _Model(tmp_path).load_network(torch.nn.Linear(2, 2), str(bad))
    assert not marker.exists()
    # and a wrong checkpoint gives one summarised error
    good = tmp_path / "other.pth"
    torch.save({"params": torch.nn.Conv2d(1, 1, 1).state_dict()}, good)
    with pytest.raises(CheckpointError, match="2 with another shape"):
        _Model(tmp_path).load_network(torch.nn.Linear(2, 2), str(good))


def test_saves_are_atomic_and_failures_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _Model(tmp_path)
    net = torch.nn.Linear(2, 2)
    model.save_network(net, "net_g", 4)
    first = (tmp_path / "net_g_4.pth").read_bytes()

    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with torch.no_grad():
        net.weight.add_(1)
    with pytest.raises(OSError, match="disk full"):
        model.save_network(net, "net_g", 4)
    assert (tmp_path / "net_g_4.pth").read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
