"""Test helpers (not fixtures): tiny options, teacher checkpoints, subprocess runs, sample comparisons."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import kit  # noqa: F401  (compat + registries)

# isort: split
import torch
import yaml

from kit.options import finalize

REPO = Path(__file__).resolve().parent.parent
DEVICE = os.environ.get("KIT_TEST_DEVICE", "cpu")


def build(opt: dict, root: Path):
    """Build the model of an options dict in-process (no distributed), experiments under ``root``."""
    from kit.registry import build_model

    opt = finalize(copy.deepcopy(opt), is_train=True, root=root)
    opt.update(dist=False, rank=0, world_size=1, num_gpu=0)
    return build_model(opt)


def tiny_options(bundled_root: Path, name: str, **overrides) -> dict:
    """A KitSRModel options dict on the bundled photos (x4) with a tiny network: seconds per run."""
    opt = {
        "name": name,
        "model_type": "KitSRModel",
        "scale": 4,
        "num_gpu": 0,
        "manual_seed": 0,
        "datasets": {
            "train": {
                "name": "bundled_train",
                "type": "CachedPairedImageDataset",
                "dataroot_gt": str(bundled_root / "train/HR"),
                "dataroot_lq": str(bundled_root / "train/LR_bicubic/X4"),
                "io_backend": {"type": "disk"},
                "gt_size": 32,
                "use_hflip": True,
                "use_rot": True,
                "num_worker_per_gpu": 0,
                "batch_size_per_gpu": 2,
                "dataset_enlarge_ratio": 1,
            },
            "val": {
                "name": "bundled_val",
                "type": "CachedPairedImageDataset",
                "dataroot_gt": str(bundled_root / "val/HR"),
                "dataroot_lq": str(bundled_root / "val/LR_bicubic/X4"),
                "io_backend": {"type": "disk"},
            },
        },
        "network_g": {
            "type": "SRVGGNetCompact",
            "num_in_ch": 3,
            "num_out_ch": 3,
            "num_feat": 8,
            "num_conv": 2,
            "upscale": 4,
        },
        "path": {},
        "train": {
            "ema_decay": 0.9,
            "optim_g": {"type": "Adam", "lr": 1e-3},
            "scheduler": {"type": "MultiStepLR", "milestones": [1000], "gamma": 0.5},
            "total_iter": 8,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
        },
        "val": {
            "val_freq": 4,
            "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 4, "test_y_channel": True}},
        },
        "logger": {"print_freq": 2, "save_checkpoint_freq": 4, "use_tb_logger": False},
    }
    for key, value in overrides.items():
        node = opt
        parts = key.split(":")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return opt


def write_options(path: Path, opt: dict) -> Path:
    path.write_text(yaml.safe_dump(opt, sort_keys=False), encoding="utf-8")
    return path


def tiny_teacher_checkpoint(path: Path, num_feat: int = 16) -> tuple[dict, Path]:
    """A random tiny BasicSR EDSR x4 teacher saved in BasicSR's layout; returns (network options, path)."""
    from basicsr.archs import build_network

    net_opt = {
        "type": "EDSR",
        "num_in_ch": 3,
        "num_out_ch": 3,
        "num_feat": num_feat,
        "num_block": 2,
        "upscale": 4,
        "img_range": 1.0,
        "rgb_mean": [0.5, 0.5, 0.5],
    }
    torch.manual_seed(123)
    net = build_network(dict(net_opt))
    torch.save({"params_ema": net.state_dict(), "params": net.state_dict()}, path)
    return net_opt, path


def distill_options(bundled_root: Path, name: str, teacher_opt: dict, teacher_ckpt: Path, **overrides) -> dict:
    """Tiny DistillModel options: SRVGG student (8 ch) and one feature pair into the EDSR teacher (16 ch)."""
    opt = tiny_options(bundled_root, name, **overrides)
    opt["model_type"] = "DistillModel"
    opt["network_t"] = teacher_opt
    opt["path"]["pretrain_network_t"] = str(teacher_ckpt)
    opt["train"].setdefault(
        "distill",
        {
            "output": {"loss": {"type": "L1Loss", "loss_weight": 1.0}},
            "mid": {
                "student": "body.2",
                "teacher": "body.1",
                "connector": {"type": "ConvConnector", "in_channels": 8, "out_channels": teacher_opt["num_feat"]},
                "loss": {"type": "L2Loss", "loss_weight": 1.0},
            },
        },
    )
    return opt


def use_tiny_pool(opt: dict, root: Path) -> None:
    """Point ``train.recipes.pool`` (if any) at one random 16-px image under ``root``: labelled in memory, no cache."""
    pool = (opt["train"].get("recipes") or {}).get("pool")
    if pool is None:
        return
    import cv2
    import numpy as np

    folder = root / "pool"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "a.png"), np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8))
    pool.update(sources=[], folders=[str(folder)], cache_root=None)


def run_train(args: list[str], cwd: Path, env_extra: dict | None = None, timeout: int = 300):
    """Run train.py in a subprocess (cwd chosen by the test); returns the CompletedProcess."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    """A TCP port free on localhost now (for torchrun/gloo rendezvous; fixed ports clash between test runs)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_torchrun(opt_file: Path, cwd: Path, nproc: int = 2) -> str:
    """``torchrun --nproc_per_node=N train.py -opt FILE --launcher pytorch`` on the CPU; returns the log."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        f"--master_port={port}",
        str(REPO / "train.py"),
        "-opt",
        str(opt_file),
        "--launcher",
        "pytorch",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    return log


def start_train(args: list[str], cwd: Path) -> subprocess.Popen:
    """``train.py`` started in the background (one thread, no GPU); stderr kept for the test."""
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, str(REPO / "train.py"), *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until ``marker`` exists while ``proc`` still runs; an AssertionError (with its stderr) otherwise."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"train.py ended before {marker} appeared: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{marker} did not appear within {timeout} s")
        time.sleep(0.005)


def kill_when(args: list[str], cwd: Path, marker: Path, timeout: float = 240) -> None:
    """Start train.py and SIGKILL it as soon as ``marker`` exists (a run killed part-way)."""
    proc = start_train(args, cwd)
    try:
        wait_for(marker, proc, timeout)
    finally:
        proc.kill()
        proc.wait()


def same_seed_samples(a, b, indices):
    """Yield ``(index, a[index], b[index])``, each item drawn after ``set_random_seed(index)``; assert equal LQ/GT.

    Two datasets that consume the random stream alike give the same crops and augmentations this way.
    """
    from basicsr.utils import set_random_seed

    for index in indices:
        set_random_seed(index)
        x = a[index]
        set_random_seed(index)
        y = b[index]
        assert torch.equal(x["lq"], y["lq"]) and torch.equal(x["gt"], y["gt"]), index
        yield index, x, y
