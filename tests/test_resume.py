"""Resume states (kit/run/resume.py, kit/run/state.py): found in the experiment's folder from any cwd, loaded on
the CPU, and only the student re-pointed (BasicSR re-points the teacher too)."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
from pathlib import Path

import pytest
import torch

from kit.run import resume
from kit.run.state import ResumeState


def test_resume_state_found_from_any_cwd_and_loaded_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    states = tmp_path / "exp" / "training_states"
    states.mkdir(parents=True)
    for it in (4, 12, 8):
        torch.save({"iter": it, "epoch": 0, "optimizers": [], "schedulers": []}, states / f"{it}.state")
    (states / "notes.state").write_text("x")
    monkeypatch.chdir("/")
    found = resume.find_resume_state(tmp_path / "exp")
    assert found == states / "12.state"
    assert ResumeState.load(found).current_iter == 12
    assert resume.find_resume_state(tmp_path / "none") is None


def test_resume_repoints_only_the_student() -> None:
    opt = {
        "path": {"models": "/e/models", "pretrain_network_t": "/t.pth", "param_key_g": "params_ema"},
        "network_t": {},
        "network_g": {},
    }
    resume.point_student_at_resume(opt, 40)
    assert opt["path"]["pretrain_network_g"] == "/e/models/net_g_40.pth"
    assert opt["path"]["param_key_g"] == "params"
    assert opt["path"]["pretrain_network_t"] == "/t.pth"


def _written_by_the_loop() -> dict:
    """A state with every key the run writes, in the order it writes them (the format before kit/run/state.py)."""
    return {
        "epoch": 1,
        "iter": 9,
        "epoch_iter": 3,
        "optimizers": [{"state": {}, "param_groups": []}],
        "schedulers": [{"last_epoch": 9}],
        "connectors": {"mid.weight": torch.ones(2, 2)},
        "recipes": {"mix": {"step": 9}},
        "rng": {"torch": torch.get_rng_state()},
        "loader_rng": torch.get_rng_state(),
        "loader_seed": 1234,
        "divergence": {"start": [1.0], "recent": [], "warned": False, "previous": {}},
    }


def test_resume_state_keeps_the_keys_on_disk_and_splits_the_model_part(tmp_path: Path) -> None:
    raw = _written_by_the_loop()
    state = ResumeState.from_dict(raw)
    assert (state.epoch, state.current_iter, state.epoch_iter) == (1, 9, 3)
    assert list(state.model) == ["optimizers", "schedulers", "connectors", "recipes"]  # what the model restores
    assert state.streams is not None and state.streams.loader_seed == 1234
    assert list(state.to_dict()) == list(raw)
    path = state.save(tmp_path / "training_states")
    assert path == tmp_path / "training_states/9.state"
    again = torch.load(path, weights_only=True)
    assert list(again) == list(raw) and torch.equal(again["connectors"]["mid.weight"], torch.ones(2, 2))
    assert ResumeState.load(path).divergence == raw["divergence"]


def test_an_older_state_loads_without_position_streams_or_watch() -> None:
    state = ResumeState.from_dict({"epoch": 2, "iter": 40, "optimizers": [], "schedulers": []})
    assert (state.epoch, state.current_iter, state.epoch_iter) == (2, 40, 0)
    assert state.streams is None and state.divergence == {}
    assert state.model == {"optimizers": [], "schedulers": []}


def test_restore_hands_each_part_to_its_owner() -> None:
    got = {}

    class Model:
        def resume_training(self, part: dict) -> None:
            got["model"] = part

    class Watch:
        def load_state_dict(self, part: dict) -> None:
            got["watch"] = part

    ResumeState.from_dict(_written_by_the_loop()).restore(Model(), Watch())
    assert set(got["model"]) == {"optimizers", "schedulers", "connectors", "recipes"}
    assert got["watch"]["start"] == [1.0]
