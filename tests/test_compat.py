"""One test per BasicSR adaptation in kit/compat.py: each fails if the adaptation regresses."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from basicsr.models.base_model import BaseModel
from basicsr.utils.registry import ARCH_REGISTRY

from kit import compat
from kit.checkpoint import CheckpointError


class _Model(BaseModel):
    def __init__(self, tmp: Path, dist: bool = False) -> None:
        super().__init__(
            {"num_gpu": 0, "is_train": True, "dist": dist, "path": {"models": str(tmp), "training_states": str(tmp)}}
        )


def test_1_functional_tensor_alias() -> None:
    assert "torchvision.transforms.functional_tensor" in sys.modules
    import basicsr.data.degradations as deg  # imports rgb_to_grayscale from the old path

    assert callable(deg.rgb_to_grayscale)


def test_2_any_torch_optimizer(tmp_path: Path) -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = _Model(tmp_path).get_optimizer("AdamW", params, 1e-3, weight_decay=0.1)
    assert isinstance(opt, torch.optim.AdamW)
    with pytest.raises(ValueError, match="closest: Adam"):
        _Model(tmp_path).get_optimizer("Adamm", params, 1e-3)


def test_3_ddp_on_cpu_without_device_ids(tmp_path: Path) -> None:
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
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


def test_4_load_network_is_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_5_saves_are_atomic_and_failures_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_6_init_dist_requires_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        compat.init_dist("pytorch")
    with pytest.raises(ValueError, match="not supported"):
        compat.init_dist("slurm")


def test_7_resume_state_found_from_any_cwd_and_loaded_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    states = tmp_path / "exp" / "training_states"
    states.mkdir(parents=True)
    for it in (4, 12, 8):
        torch.save({"iter": it, "epoch": 0, "optimizers": [], "schedulers": []}, states / f"{it}.state")
    (states / "notes.state").write_text("x")
    monkeypatch.chdir("/")
    found = compat.find_resume_state(tmp_path / "exp")
    assert found == states / "12.state"
    assert compat.load_resume_state(found)["iter"] == 12
    assert compat.find_resume_state(tmp_path / "none") is None


def test_8_resume_repoints_only_the_student() -> None:
    opt = {
        "path": {"models": "/e/models", "pretrain_network_t": "/t.pth", "param_key_g": "params_ema"},
        "network_t": {},
        "network_g": {},
    }
    compat.point_student_at_resume(opt, 40)
    assert opt["path"]["pretrain_network_g"] == "/e/models/net_g_40.pth"
    assert opt["path"]["param_key_g"] == "params"
    assert opt["path"]["pretrain_network_t"] == "/t.pth"


def test_9_registry_error_names_closest() -> None:
    with pytest.raises(KeyError, match="closest: RRDBNet"):
        ARCH_REGISTRY.get("RRDBNett")
