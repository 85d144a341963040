"""Resume states (kit/resume.py): found in the experiment's folder from any cwd, loaded on the CPU, and only the
student re-pointed (BasicSR re-points the teacher too)."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
from pathlib import Path

import pytest
import torch

from kit import resume


def test_resume_state_found_from_any_cwd_and_loaded_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    states = tmp_path / "exp" / "training_states"
    states.mkdir(parents=True)
    for it in (4, 12, 8):
        torch.save({"iter": it, "epoch": 0, "optimizers": [], "schedulers": []}, states / f"{it}.state")
    (states / "notes.state").write_text("x")
    monkeypatch.chdir("/")
    found = resume.find_resume_state(tmp_path / "exp")
    assert found == states / "12.state"
    assert resume.load_resume_state(found)["iter"] == 12
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
