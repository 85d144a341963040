"""Exact resume: a run SIGKILLed mid-epoch and continued with --auto_resume ends with the uninterrupted run's weights.

BasicSR's crops and flips draw from Python's ``random``; the resume state holds every random stream (Python,
NumPy, torch) and torch's state at the epoch's data iterator, so crops, flips, the data order and the student's
updates continue exactly. Compared: ``params`` and ``params_ema`` of the final checkpoint, max abs 0.0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, distill_options, kill_when, tiny_options, tiny_teacher_checkpoint, write_options

# 13 training photos, batch 2: 6 batches per epoch; the state at iter 3 is mid-epoch, the run ends in epoch 1
ITERS = {"train:total_iter": 10, "logger:save_checkpoint_freq": 3, "val:val_freq": 100, "logger:print_freq": 1}


def _options(kind: str, bundled: Path, name: str, tmp: Path) -> dict:
    if kind == "sr":
        opt = tiny_options(bundled, name, **ITERS)
    else:
        teacher_opt, teacher = tiny_teacher_checkpoint(tmp / "teacher.pth")
        opt = distill_options(bundled, name, teacher_opt, teacher, **ITERS)
    train = opt["datasets"]["train"]
    assert train["use_hflip"] and train["use_rot"] and train["gt_size"] == 32  # random crops and flips on
    return opt


@pytest.mark.parametrize("kind", ["sr", "distill"])
def test_sigkill_mid_epoch_then_auto_resume_is_the_uninterrupted_run(
    kind: str, bundled_root: Path, tmp_path: Path, exp_name: str, warm
) -> None:
    whole, cut = f"{exp_name}_whole", f"{exp_name}_cut"
    a = write_options(tmp_path / "a.yml", _options(kind, bundled_root, whole, tmp_path))
    b = write_options(tmp_path / "b.yml", _options(kind, bundled_root, cut, tmp_path))
    result = warm.run("train.py", ["-opt", str(a)])
    assert result.returncode == 0, result.stderr[-3000:]

    exp = REPO / "experiments" / cut
    kill_when(["-opt", str(b)], cwd=REPO, marker=exp / "training_states/3.state")
    assert not (exp / "models/net_g_latest.pth").exists()
    for later in (6, 9):  # had the kill come a little later: resume from iter 3 all the same (mid-epoch)
        (exp / f"training_states/{later}.state").unlink(missing_ok=True)
        (exp / f"models/net_g_{later}.pth").unlink(missing_ok=True)
    result = warm.run("train.py", ["-opt", str(b), "--auto_resume"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "iter 3 (3 into the epoch), with its random streams" in result.stderr

    final_a = torch.load(REPO / "experiments" / whole / "models/net_g_latest.pth", weights_only=True)
    final_b = torch.load(exp / "models/net_g_latest.pth", weights_only=True)
    for key in ("params", "params_ema"):
        worst = max(float((final_a[key][k] - final_b[key][k]).abs().max()) for k in final_a[key])
        assert worst == 0.0, f"{key}: max abs difference {worst}"
    if kind == "distill":  # the connectors continue too
        state_a = torch.load(REPO / "experiments" / whole / "training_states/10.state", weights_only=True)
        state_b = torch.load(exp / "training_states/10.state", weights_only=True)
        for k, v in state_a["connectors"].items():
            assert torch.equal(v, state_b["connectors"][k]), k
