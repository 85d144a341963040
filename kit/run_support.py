"""What a training run needs around its loop: logging, DDP waits and checks, moving an old experiment aside."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from basicsr.utils import get_time_str

LOGGER_NAME = "basicsr"
WAIT_POLL_S = 2.0


class StartupBuffer(logging.Handler):
    """Keeps the log lines of a run's start-up in memory: the log file is written only once nothing failed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def startup_buffer() -> StartupBuffer | None:
    """The buffer of the current start-up (``None`` once the log file exists)."""
    return next((h for h in logging.getLogger(LOGGER_NAME).handlers if isinstance(h, StartupBuffer)), None)


def log_files() -> list[str]:
    """The log files the run's logger writes to (the experiment's, once it is open)."""
    return [h.baseFilename for h in logging.getLogger(LOGGER_NAME).handlers if isinstance(h, logging.FileHandler)]


def setup_logger(log_file: str | None, rank: int, console: bool = True) -> logging.Logger:
    """Console + file logging on rank 0 (other ranks: errors only); replaces earlier file handlers.

    Without ``log_file`` (start-up) the lines are also kept in memory; with it they are written to the file
    first. ``console=False`` keeps only warnings on the console (the file still gets everything).
    """
    from basicsr.utils import logger as basicsr_logger

    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
            handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s")
    stream = next((h for h in logger.handlers if type(h) is logging.StreamHandler), None)
    if stream is None:
        stream = logging.StreamHandler()
        stream.setFormatter(fmt)
        logger.addHandler(stream)
    stream.setLevel(logging.INFO if console else logging.WARNING)
    logger.propagate = False
    logger.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    buffer = startup_buffer()
    if buffer is not None:
        logger.removeHandler(buffer)
    if log_file and rank == 0:
        file_handler = logging.FileHandler(log_file, "w")
        file_handler.setFormatter(fmt)
        for record in buffer.records if buffer is not None else []:
            file_handler.handle(record)
        logger.addHandler(file_handler)
    elif not log_file:
        logger.addHandler(StartupBuffer())
    basicsr_logger.initialized_logger[LOGGER_NAME] = True
    return logger


def barrier(opt: dict) -> None:
    if opt.get("dist"):
        torch.distributed.barrier()


def wait_for_rank0(opt: dict, done: Path) -> None:
    """Under DDP, the other ranks wait until rank 0 has written ``done``, then all meet at a barrier.

    Polling a file instead of blocking in the barrier: a collective times out (NCCL after 10 min), and a
    teacher stage or a teacher cache can take longer. If rank 0 fails instead, torchrun stops every rank.
    """
    if opt.get("dist") and opt["rank"] != 0:
        while not done.exists():
            time.sleep(WAIT_POLL_S)
    barrier(opt)


def archive_experiment(root: Path, experiments: Path) -> Path | None:
    """Move an existing experiment folder aside (never delete it) before a fresh run reuses its name.

    Only ever a folder directly under ``experiments`` (the kit's own output folder): anything else (a path that
    leads elsewhere, a link out of it) is refused, whatever the options say.
    """
    if not root.exists() and not root.is_symlink():
        return None
    if root.is_symlink() or root.resolve().parent != experiments.resolve():
        raise RuntimeError(
            f"refusing to move '{root}' aside: only folders directly under {experiments} are archived; "
            "rename the experiment (options 'name')"
        )
    target = root.with_name(f"{root.name}_archived_{get_time_str()}")
    os.replace(root, target)
    return target


def check_ranks_agree(model: Any) -> str | None:
    """Under DDP, verify every rank holds the same trained parameters (student and connectors); raise if not.

    Buffers (BatchNorm running statistics) are left out: DDP broadcasts rank 0's at every forward, and
    rank 0's are the ones saved.
    """
    if not torch.distributed.is_initialized():
        return None
    nets = {"student": model.get_bare_model(model.net_g)}
    if hasattr(model, "connectors"):
        nets["connectors"] = model.get_bare_model(model.connectors)
    checked = []
    for label, net in nets.items():
        flat = [p.detach().double().flatten() for p in net.parameters()]
        if not flat:
            continue
        local = torch.cat(flat).to(model.device)  # NCCL gathers CUDA tensors, gloo CPU ones
        gathered = [torch.empty_like(local) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(gathered, local)
        worst = max(float((g - gathered[0]).abs().max()) for g in gathered)
        if worst != 0.0:
            raise RuntimeError(f"DDP ranks disagree on the {label} weights (max difference {worst:.3g})")
        checked.append(f"{label} ({local.numel():,d} values)")
    return f"all {torch.distributed.get_world_size()} ranks hold identical weights: {', '.join(checked)}"
