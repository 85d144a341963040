"""The train loader's options resolved for the machine: ``num_worker_per_gpu: auto``, pinned memory, persistent
workers and BasicSR's CUDA prefetcher.

.. code-block:: yaml

    datasets:
      train:
        num_worker_per_gpu: auto     # or an integer (BasicSR's meaning: data-loader processes per GPU)
        pin_memory: auto             # auto: on when training on a GPU
        persistent_workers: auto     # auto: on whenever there are workers
        prefetch_mode: auto          # auto (or absent): cuda on a GPU, else BasicSR's plain loader; cpu | cuda | null

``auto`` workers, per GPU (per training process under DDP):

1. On the CPU (``num_gpu: 0``): **0**. The training step runs on every core (torch's intra-op threads), so
   a worker only takes cores from it; measured here, the in-process loader costs a few percent of a CPU step
   (``python -m bench loader``).
2. On GPUs: the CPUs this process may use (``os.sched_getaffinity``) shared by the training processes of the
   node (``LOCAL_WORLD_SIZE`` under torchrun, else ``num_gpu``), minus one for the process itself, at most
   :data:`MAX_AUTO_WORKERS`;
3. and no more than the memory allows: each worker holds its own decoded-image cache (``cache_gb``, see
   :mod:`kit.data.decoded_store`) — the smaller of ``cache_gb`` and the dataset's decoded size, estimated
   from the image headers — and half of the node's available memory, shared by its training processes, is
   the budget for all of them. At least 1 on a GPU when the memory allows one.

Persistent workers keep their caches across epochs (a worker re-forked each epoch starts with an empty one);
pinned memory lets the CUDA prefetcher copy the next batch to the GPU while the step runs.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_AUTO_WORKERS = 8
MEMORY_SHARE = 0.5  # of the node's available memory, for every worker's image cache together


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available to new processes (``MemAvailable`` of ``/proc/meminfo``); None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def auto_workers(
    cpus: int, procs: int, on_gpu: bool, worker_cache_bytes: int, available_bytes: int | None
) -> tuple[int, str]:
    """Workers per training process by the rule of the module docstring; returns ``(workers, why)``.

    Args:
        cpus: CPUs of the node this process may use.
        procs: training processes sharing them (GPUs of the node).
        on_gpu: whether the step runs on a GPU.
        worker_cache_bytes: memory one worker's decoded-image cache can reach.
        available_bytes: available memory of the node (None: unknown, not limited).
    """
    if not on_gpu:
        return 0, "training on the CPU: the step uses every core, the main process loads the data"
    procs = max(int(procs), 1)
    by_cpu = min(max(cpus // procs - 1, 1), MAX_AUTO_WORKERS)
    why = f"{cpus} CPUs / {procs} process(es) - 1, at most {MAX_AUTO_WORKERS}: {by_cpu}"
    if available_bytes is None or worker_cache_bytes <= 0:
        return by_cpu, why
    budget = available_bytes * MEMORY_SHARE / procs
    by_memory = int(budget // worker_cache_bytes)
    if by_memory < by_cpu:
        return by_memory, (
            f"{why}; memory: {MEMORY_SHARE:.0%} of {available_bytes / 1e9:.1f} GB available / {procs} process(es) "
            f"holds {by_memory} worker cache(s) of {worker_cache_bytes / 1e9:.2f} GB: {by_memory} "
            "(lower cache_gb for more workers)"
        )
    return by_cpu, f"{why}; memory allows {by_memory} worker cache(s) of {worker_cache_bytes / 1e9:.2f} GB"


def decoded_size(dataset) -> int | None:
    """Bytes of every image of ``dataset`` once decoded as it caches them (from the file headers); None when
    the dataset is not one of the kit's caching datasets or its files cannot be read (lmdb)."""
    from PIL import Image

    from kit.data.cached_dataset import CachedPairedImageDataset
    from kit.data.degraded_dataset import DegradedImageDataset

    if isinstance(dataset, CachedPairedImageDataset):
        files, per_pixel = [p for pair in dataset.paths for p in (pair["gt_path"], pair["lq_path"])], 3  # uint8
    elif isinstance(dataset, DegradedImageDataset):
        files, per_pixel = [str(p) for p in dataset.paths], 3 * 4  # float32 GT
    else:
        return None
    total = 0
    try:
        for path in files:
            with Image.open(path) as img:  # reads the header only
                total += img.width * img.height * per_pixel
    except OSError:
        return None
    return total


def _tri_state(value, key: str, default: bool) -> bool:
    if value is None or value == "auto":
        return default
    if not isinstance(value, bool):
        raise ValueError(f"datasets:train:{key} must be auto, true or false, got {value!r}")
    return value


def check_loader_options(dataset_opt: dict, on_gpu: bool) -> None:
    """Raise naming the key when a loader option of the train dataset has a value the module docstring lacks."""
    workers = dataset_opt.get("num_worker_per_gpu", 0)
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"datasets:train:num_worker_per_gpu must be auto or an integer >= 0, got {workers!r}")
    pin = _tri_state(dataset_opt.get("pin_memory"), "pin_memory", on_gpu)
    _tri_state(dataset_opt.get("persistent_workers"), "persistent_workers", True)
    prefetch = dataset_opt.get("prefetch_mode", "auto")
    if prefetch not in ("auto", "cpu", "cuda", None):
        raise ValueError(f"datasets:train:prefetch_mode must be auto, cpu, cuda or null, got {prefetch!r}")
    if prefetch == "cuda" and not on_gpu:
        raise ValueError("datasets:train:prefetch_mode cuda needs a GPU (num_gpu > 0); use auto, cpu or null")
    if prefetch == "cuda" and not pin:  # its copies are non_blocking=True: asynchronous only from pinned memory
        raise ValueError("datasets:train:prefetch_mode cuda needs pin_memory: true (or auto)")


def resolve_loader_options(dataset_opt: dict, dataset, opt: dict) -> str:
    """Write the resolved ``num_worker_per_gpu``, ``pin_memory``, ``persistent_workers`` and ``prefetch_mode``
    into the train dataset's options (what BasicSR's ``build_dataloader`` and the loop read); returns a log line.

    Raises:
        ValueError: an option has a value other than those of the module docstring.
    """
    on_gpu = int(opt.get("num_gpu") or 0) > 0
    check_loader_options(dataset_opt, on_gpu)
    workers = dataset_opt.get("num_worker_per_gpu", 0)
    why = "as set"
    if workers == "auto":
        procs = int(os.environ.get("LOCAL_WORLD_SIZE", opt.get("world_size", 1) if opt.get("dist") else 1))
        procs = max(procs, int(opt.get("num_gpu") or 0), 1)
        from kit.data.decoded_store import DEFAULT_CACHE_GB

        cache_gb = dataset_opt.get("cache_gb")
        cache_bytes = int((DEFAULT_CACHE_GB if cache_gb is None else cache_gb) * 1e9)
        size = decoded_size(dataset)
        worker_cache = cache_bytes if size is None else min(cache_bytes, size)
        workers, why = auto_workers(cpu_count(), procs, on_gpu, worker_cache, available_memory())
    pin = _tri_state(dataset_opt.get("pin_memory"), "pin_memory", on_gpu)
    persistent = _tri_state(dataset_opt.get("persistent_workers"), "persistent_workers", True) and workers > 0
    prefetch = dataset_opt.get("prefetch_mode", "auto")
    if prefetch == "auto":
        prefetch = "cuda" if on_gpu else None
    dataset_opt.update(num_worker_per_gpu=workers, pin_memory=pin, persistent_workers=persistent)
    dataset_opt["prefetch_mode"] = prefetch
    return (
        f"Train loader: {workers} worker(s) per GPU ({why}), pin_memory {pin}, persistent_workers {persistent}, "
        f"prefetch {prefetch or 'none'}"
    )
