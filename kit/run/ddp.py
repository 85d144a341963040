"""A run under DDP (``torchrun``) besides training: barriers, waiting for rank 0, checking the ranks agree."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

WAIT_POLL_S = 2.0


def barrier(opt: dict) -> None:
    """Under DDP, every rank waits here for the others (nothing without DDP)."""
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
