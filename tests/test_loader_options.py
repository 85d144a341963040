"""The train loader's options: ``num_worker_per_gpu: auto`` chosen as stated, pinning, persistence, prefetch."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import pytest
from basicsr.data import build_dataloader

import kit.data.loader_options as lo
from kit.data.cached_dataset import CachedPairedImageDataset
from kit.data.degraded_dataset import DegradedImageDataset
from kit.data.sampler import ResumableSampler
from tests.helpers import tiny_options

GB = 10**9


def _train_opt(bundled_root, **more) -> dict:
    return {**tiny_options(bundled_root, "d")["datasets"]["train"], "phase": "train", "scale": 4, **more}


@pytest.mark.parametrize(
    ("cpus", "procs", "on_gpu", "cache", "avail", "expected"),
    [
        (16, 1, False, 1 * GB, 64 * GB, 0),  # CPU training: the step has every core
        (2, 1, False, 0, None, 0),
        (16, 1, True, 1 * GB, 64 * GB, 8),  # 16 - 1 = 15, capped at 8
        (16, 4, True, 1 * GB, 64 * GB, 3),  # 16 / 4 - 1
        (2, 1, True, 1 * GB, 64 * GB, 1),  # 2 - 1
        (1, 1, True, 0, None, 1),  # at least one on a GPU
        (16, 1, True, 4 * GB, 20 * GB, 2),  # memory: 10 GB budget / 4 GB per worker cache
        (16, 2, True, 4 * GB, 40 * GB, 2),  # 20 GB / 2 processes / 4 GB
        (16, 1, True, 4 * GB, 6 * GB, 0),  # not even one cache fits in half the memory
        (16, 1, True, 4 * GB, None, 8),  # memory unknown: the CPU rule alone
    ],
)
def test_auto_workers_rule(cpus, procs, on_gpu, cache, avail, expected) -> None:
    workers, why = lo.auto_workers(cpus, procs, on_gpu, cache, avail)
    assert workers == expected, why
    assert why


def test_decoded_size_from_headers_equals_the_decoded_images(bundled_root) -> None:
    ds = CachedPairedImageDataset(_train_opt(bundled_root))
    for i in range(len(ds)):
        ds[i]  # decodes and caches every GT and LQ image (uint8)
    assert lo.decoded_size(ds) == ds._cache.nbytes
    degraded = DegradedImageDataset(
        _train_opt(bundled_root, type="DegradedImageDataset", degradations=[{"type": "BicubicDown", "scale": 4}])
    )
    for i in range(len(degraded)):
        degraded[i]  # float32 GT
    assert lo.decoded_size(degraded) == degraded._cache.nbytes
    assert lo.decoded_size(object()) is None


def test_resolve_on_cpu_and_on_gpu(bundled_root, monkeypatch) -> None:
    ds = CachedPairedImageDataset(_train_opt(bundled_root))
    size = lo.decoded_size(ds)
    cpu_opt = _train_opt(bundled_root, num_worker_per_gpu="auto")
    line = lo.resolve_loader_options(cpu_opt, ds, {"num_gpu": 0})
    assert (cpu_opt["num_worker_per_gpu"], cpu_opt["pin_memory"], cpu_opt["persistent_workers"]) == (0, False, False)
    assert cpu_opt["prefetch_mode"] is None and "0 worker(s)" in line

    # On a GPU node of 12 CPUs: 11 by the CPUs; the memory holds 5 caches of the dataset's decoded size
    # (smaller than cache_gb), so 5; pinned memory, persistent workers and the CUDA prefetcher.
    monkeypatch.setattr(lo, "cpu_count", lambda: 12)
    monkeypatch.setattr(lo, "available_memory", lambda: int(size * 10.5))
    gpu_opt = _train_opt(bundled_root, num_worker_per_gpu="auto")
    line = lo.resolve_loader_options(gpu_opt, ds, {"num_gpu": 1})
    assert gpu_opt["num_worker_per_gpu"] == 5, line
    assert (gpu_opt["pin_memory"], gpu_opt["persistent_workers"], gpu_opt["prefetch_mode"]) == (True, True, "cuda")
    # cache_gb below the dataset's size: that is what each worker can hold.
    small = _train_opt(bundled_root, num_worker_per_gpu="auto", cache_gb=size / 4 / 1e9)
    lo.resolve_loader_options(small, ds, {"num_gpu": 1})
    assert small["num_worker_per_gpu"] == 8  # 21 caches fit; the CPU rule decides: 12 - 1, at most 8
    # Two GPUs under torchrun on this node: the CPUs and the memory are shared.
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    ddp = _train_opt(bundled_root, num_worker_per_gpu="auto")
    lo.resolve_loader_options(ddp, ds, {"num_gpu": 1, "dist": True, "world_size": 2})
    assert ddp["num_worker_per_gpu"] == 2  # min(12 / 2 - 1 = 5, 10.5 / 2 / 2 = 2)
    # Explicit values are kept.
    fixed = _train_opt(bundled_root, num_worker_per_gpu=2, pin_memory=False, persistent_workers=False)
    fixed["prefetch_mode"] = None
    lo.resolve_loader_options(fixed, ds, {"num_gpu": 1})
    assert (fixed["num_worker_per_gpu"], fixed["pin_memory"], fixed["persistent_workers"]) == (2, False, False)
    assert fixed["prefetch_mode"] is None


@pytest.mark.parametrize(
    ("key", "value", "num_gpu", "message"),
    [
        ("num_worker_per_gpu", "many", 0, "num_worker_per_gpu must be auto or an integer"),
        ("num_worker_per_gpu", -1, 0, "num_worker_per_gpu must be auto or an integer"),
        ("pin_memory", "yes", 0, "pin_memory must be auto, true or false"),
        ("persistent_workers", 1, 0, "persistent_workers must be auto, true or false"),
        ("prefetch_mode", "gpu", 0, "prefetch_mode must be auto, cpu, cuda or null"),
        ("prefetch_mode", "cuda", 0, "prefetch_mode cuda needs a GPU"),
    ],
)
def test_bad_values_name_the_key(bundled_root, key, value, num_gpu, message) -> None:
    with pytest.raises(ValueError, match=message):
        lo.check_loader_options(_train_opt(bundled_root, **{key: value}), on_gpu=bool(num_gpu))
    with pytest.raises(ValueError, match="needs pin_memory"):
        lo.check_loader_options(_train_opt(bundled_root, prefetch_mode="cuda", pin_memory=False), on_gpu=True)


class _CountingDataset(CachedPairedImageDataset):
    """Each sample also says how many decoded images its process held before it was made."""

    def __getitem__(self, index: int) -> dict:
        held = len(self._cache.images)
        return {**super().__getitem__(index), "held": held}


@pytest.mark.parametrize("persistent", [True, False])
def test_persistent_worker_keeps_its_cache_across_epochs(bundled_root, persistent) -> None:
    """One worker: persistent (the auto default), the second epoch is served from the images it decoded in the
    first; re-forked each epoch, it starts again from an empty cache."""
    opt = _train_opt(bundled_root, num_worker_per_gpu=1, batch_size_per_gpu=13)
    if not persistent:
        opt["persistent_workers"] = False
    ds = _CountingDataset(opt)
    lo.resolve_loader_options(opt, ds, {"num_gpu": 0})
    assert opt["persistent_workers"] is persistent
    sampler = ResumableSampler(ds, 1, 0, 1, seed=0)
    loader = build_dataloader(ds, opt, 0, False, sampler=sampler, seed=0)
    assert loader.persistent_workers is persistent and loader.num_workers == 1
    held = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        held.append([int(h) for batch in loader for h in batch["held"]])
    assert held[0][0] == 0 and len(held[0]) == len(ds)
    assert min(held[1]) == (2 * len(ds) if persistent else 0)  # every GT and LQ image, or none
    assert len(ds._cache.images) == 0  # the main process never decoded: the worker did


def test_the_options_schema_takes_the_loader_keys(bundled_root) -> None:
    """auto for every loader key passes the schema of every key the kit reads (the values are checked above)."""
    from kit.schema import check_options

    opt = tiny_options(bundled_root, "d")
    opt["datasets"]["train"].update(
        num_worker_per_gpu="auto", pin_memory="auto", persistent_workers="auto", prefetch_mode="auto"
    )
    opt["train"].update(compile=True, compile_mode="max-autotune")
    check_options(opt, "test")
    opt["datasets"]["train"]["pin_memroy"] = True
    with pytest.raises(Exception, match="pin_memroy"):
        check_options(opt, "test")
