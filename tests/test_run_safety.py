"""What happens around a run: interrupts, resume without a state or from a corrupt one, killed writes, divergence."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, tiny_options, write_options


def _opt(bundled: Path, name: str, tmp: Path, label: str = "o", **overrides) -> Path:
    values = {"val:val_freq": 100, "logger:print_freq": 1, **overrides}
    return write_options(tmp / f"{label}.yml", tiny_options(bundled, name, **values))


def _last(result) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_resume_state_and_exits_cleanly(
    sig: signal.Signals, bundled_root: Path, tmp_path: Path, exp_name: str, warm
) -> None:
    opt_file = _opt(bundled_root, exp_name, tmp_path, **{"train:total_iter": 100000, "logger:save_checkpoint_freq": 4})
    exp = REPO / "experiments" / exp_name
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), "-opt", str(opt_file)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    start = time.time()
    while not (exp / "training_states/4.state").exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() - start < 240
        time.sleep(0.05)
    proc.send_signal(sig)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + sig, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert f"interrupted by {sig.name} at iter" in last and "--auto_resume" in last and "Traceback" not in stderr
    it = int(last.split(" at iter ")[1].split(":")[0])
    assert it >= 4 and (exp / f"training_states/{it}.state").is_file() and (exp / f"models/net_g_{it}.pth").is_file()
    if sig == signal.SIGINT:
        result = warm.run(
            "train.py", ["-opt", str(opt_file), "--auto_resume", "--force_yml", f"train:total_iter={it + 2}"]
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"iter {it} (" in result.stderr and (exp / f"models/net_g_{it + 2}.pth").is_file()


def test_auto_resume_without_a_state_says_so(bundled_root: Path, tmp_path: Path, exp_name: str, warm) -> None:
    opt_file = _opt(bundled_root, exp_name, tmp_path, **{"train:total_iter": 2})
    result = warm.run("train.py", ["-opt", str(opt_file), "--auto_resume"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--auto_resume found no usable resume state" in result.stderr
    last = _last(result)
    assert last.split(": ", 1)[1].startswith("WARNING: End of training") or "End of training" in last
    assert "WARNING: --auto_resume found no usable resume state" in last


def test_corrupt_newest_state_falls_back_and_killed_writes_are_cleaned(
    bundled_root: Path, tmp_path: Path, exp_name: str, warm
) -> None:
    opt_file = _opt(bundled_root, exp_name, tmp_path, **{"train:total_iter": 4, "logger:save_checkpoint_freq": 2})
    assert warm.run("train.py", ["-opt", str(opt_file)]).returncode == 0
    exp = REPO / "experiments" / exp_name
    for f in [*exp.glob("models/*.pth"), *exp.glob("training_states/*.state")]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f  # not mkstemp's 0600
    (exp / "training_states/4.state").write_bytes(b"PK\x03\x04 cut short by a full disk")
    leftover = exp / "models/.net_g_6.pth.k2j4.tmp"
    leftover.write_bytes(b"half")
    result = warm.run("train.py", ["-opt", str(opt_file), "--auto_resume", "--force_yml", "train:total_iter=6"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4.state is not usable" in result.stderr and "Resuming from" in result.stderr
    assert "training_states/2.state: epoch 0, iter 2" in result.stderr
    assert "4.state is not usable" in _last(result)  # repeated in the final line
    assert not leftover.exists() and (exp / "models/net_g_6.pth").is_file()


def test_divergence_warns_in_the_final_line_and_can_stop(
    bundled_root: Path, tmp_path: Path, exp_name: str, warm
) -> None:
    wild = {"train:total_iter": 24, "train:optim_g:lr": 100.0, "val:val_freq": 24, "logger:save_checkpoint_freq": 24}
    result = warm.run("train.py", ["-opt", str(_opt(bundled_root, exp_name, tmp_path, "a", **wild))])
    assert result.returncode == 0, result.stderr[-3000:]
    last = _last(result)
    assert (
        "WARNING" in last and "below the bicubic (MATLAB imresize) baseline" in last and "the loss diverges" in last
    ), last
    calm = warm.run("train.py", ["-opt", str(_opt(bundled_root, exp_name, tmp_path, "c", **{"train:total_iter": 4}))])
    assert calm.returncode == 0 and "WARNING" not in _last(calm) and "diverge" not in calm.stderr

    stop = {**wild, "train:stop_on_divergence": True}
    result = warm.run("train.py", ["-opt", str(_opt(bundled_root, exp_name, tmp_path, "b", **stop))])
    assert result.returncode == 1
    last = _last(result)
    assert last.startswith("train.py: error:") and "stop_on_divergence" in last, last


def test_checkpoint_modes_follow_the_umask(tmp_path: Path) -> None:
    from kit.checkpoint import save_atomic

    save_atomic({"x": torch.zeros(1)}, tmp_path / "a.pth")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.pth").stat().st_mode) == 0o666 & ~mask
