"""Does the train loader keep up? Its samples/s for 0, 1, 2… workers beside the step rates of the student and
of the distillation step, and how many workers a step rate needs.

    python -m bench loader [-opt options/distill.yml] [--workers 0 1 2] [--gt-size 96] [--batch 8]
                           [--batches 60] [--device cpu|cuda] [--step-rate 1100] [--repeat 1]

The loader is the train dataset of the options file (the shipped ``CachedPairedImageDataset`` on the bundled
photos) through BasicSR's ``build_dataloader`` with the kit's resolved options (persistent workers; pinned
memory on a GPU), as the training run builds it. Each worker count gets a fresh loader; its first batches
fill the workers' image caches (reported as the warm-up) and the next ``--batches`` are timed. The steps are
``KitSRModel``/``DistillModel.optimize_parameters`` of the same options (teacher with random weights: speed
does not depend on them) on one batch of the same size, median of ``--steps``. Loader and steps are measured
in the same run, one after the other (a worker needs the CPU the step would use, so they are not overlapped);
``--repeat`` repeats the loader rows. "Workers needed" is the fewest measured worker count whose loader
delivers at least the step's samples/s. Prints markdown tables; writes ``bench/results/loader_<device>.json``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import kit  # noqa: F401

# isort: split
import torch
from basicsr.data import build_dataloader, build_dataset

from bench.harness import median_time, write_result
from kit.data.bundled import ensure_for_options
from kit.data.loader_options import cpu_count, resolve_loader_options
from kit.data.sampler import ResumableSampler
from kit.options import REPO_ROOT, finalize, load_options


def _train_opt(opt: dict, gt_size: int, batch: int) -> dict:
    train = copy.deepcopy(opt["datasets"]["train"])
    train.update(phase="train", scale=int(opt["scale"]), gt_size=gt_size, batch_size_per_gpu=batch)
    train["dataset_enlarge_ratio"] = 10_000  # one long epoch: no epoch boundary inside a measurement
    return train


def loader_rate(train: dict, workers: int, batches: int, device: str) -> tuple[float, float]:
    """(samples/s over ``batches`` after the warm-up, warm-up seconds) of a fresh loader with ``workers``."""
    dataset_opt = dict(train, num_worker_per_gpu=workers)
    dataset = build_dataset(dataset_opt)
    run_opt = {"num_gpu": 1 if device == "cuda" else 0, "dist": False, "world_size": 1}
    resolve_loader_options(dataset_opt, dataset, run_opt)
    sampler = ResumableSampler(dataset, 1, 0, dataset_opt["dataset_enlarge_ratio"], seed=0)
    loader = build_dataloader(dataset, dataset_opt, run_opt["num_gpu"], False, sampler=sampler, seed=0)
    images = len(dataset)
    warm_batches = max(2 * images // dataset_opt["batch_size_per_gpu"] + 1, 4) * max(workers, 1)
    it = iter(loader)
    start = time.perf_counter()
    for _ in range(warm_batches):  # every worker decodes (and caches) the images it meets
        next(it)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    n = 0
    for _ in range(batches):
        batch = next(it)
        if device == "cuda":
            batch["lq"].to(device, non_blocking=True)
            batch["gt"].to(device, non_blocking=True)
        n += batch["lq"].shape[0]
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    del it, loader
    return n / seconds, warm


def step_rate(opt: dict, model_type: str, gt_size: int, batch: int, steps: int, device: str) -> float:
    """Samples/s of ``optimize_parameters`` of the options' student alone or of the distillation step."""
    from basicsr.models import build_model

    opt = copy.deepcopy(opt)
    opt["path"] = {"pretrain_network_t": None}
    if model_type == "KitSRModel":
        opt["model_type"] = "KitSRModel"
        opt.pop("network_t", None)
        for key in ("distill", "recipes"):
            opt["train"].pop(key, None)
    opt = finalize(opt, is_train=True, root=REPO_ROOT / "bench" / "out")
    opt.update(dist=False, rank=0, world_size=1, num_gpu=1 if device == "cuda" else 0)
    model = build_model(opt)
    scale = int(opt["scale"])
    lr = gt_size // scale
    model.feed_data({"lq": torch.rand(batch, 3, lr, lr), "gt": torch.rand(batch, 3, lr * scale, lr * scale)})
    counter = iter(range(1, steps + 3))
    return batch / median_time(lambda: model.optimize_parameters(next(counter)), steps, warmup=2, device=device)


def workers_needed(rates: dict[int, float], needed: float) -> str:
    """The fewest measured workers whose loader delivers ``needed`` samples/s, or a 'more than' line."""
    for workers in sorted(rates):
        if rates[workers] >= needed:
            return str(workers)
    best = max(rates.values())
    return f"> {max(rates)} (the best measured, {best:,.0f}/s, is {best / needed:.2f}× of it)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench loader", description=__doc__.splitlines()[0])
    parser.add_argument("-opt", default=str(REPO_ROOT / "options/distill.yml"))
    parser.add_argument("--workers", type=int, nargs="+", help="worker counts (default: 0 .. CPUs, at most 4)")
    parser.add_argument("--gt-size", type=int, default=None, help="GT patch (default: the options' gt_size)")
    parser.add_argument("--batch", type=int, default=None, help="batch (default: the options' batch_size_per_gpu)")
    parser.add_argument("--batches", type=int, default=60, help="timed batches per worker count")
    parser.add_argument("--steps", type=int, default=8, help="timed steps of each model (median)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--step-rate", type=float, nargs="*", default=[], help="extra step rates (samples/s)")
    parser.add_argument("--repeat", type=int, default=1, help="repeat the loader measurement")
    parser.add_argument("--no-steps", action="store_true", help="the loader alone")
    args = parser.parse_args(argv)
    opt = load_options(args.opt)
    gt_size = args.gt_size or int(opt["datasets"]["train"]["gt_size"])
    batch = args.batch or int(opt["datasets"]["train"]["batch_size_per_gpu"])
    workers_list = args.workers or list(range(0, min(cpu_count(), 4) + 1))
    resolved = finalize(copy.deepcopy(opt), is_train=True)  # dataset paths against the repo; nothing is written
    ensure_for_options(resolved)  # the bundled photos, built on first use
    train = _train_opt(resolved, gt_size, batch)
    print(
        f"device {args.device}, {cpu_count()} CPUs, {torch.get_num_threads()} torch threads; "
        f"{train['type']} gt_size {gt_size}, batch {batch}; {args.batches} timed batches per row"
    )
    rates: dict[int, list[float]] = {w: [] for w in workers_list}
    warms: dict[int, list[float]] = {w: [] for w in workers_list}
    print("| workers | loader samples/s | warm-up s (caches fill) |")
    print("|---:|---:|---:|")
    for _ in range(args.repeat):
        for workers in workers_list:
            rate, warm = loader_rate(train, workers, args.batches, args.device)
            rates[workers].append(rate)
            warms[workers].append(warm)
            print(f"| {workers} | {rate:,.0f} | {warm:.1f} |", flush=True)
    median = {w: statistics.median(v) for w, v in rates.items()}
    if args.repeat > 1:
        print("\n| workers | loader samples/s, median (min–max) over repeats |\n|---:|---:|")
        for w, v in rates.items():
            print(f"| {w} | {median[w]:,.0f} ({min(v):,.0f}–{max(v):,.0f}) |")

    needs = []
    if not args.no_steps:
        for label, model_type in (("student step", "KitSRModel"), ("distillation step", opt["model_type"])):
            r = step_rate(opt, model_type, gt_size, batch, args.steps, args.device)
            share = r / median[0] if 0 in median else None
            needs.append((f"{label} ({model_type}), measured", r, share))
    needs += [(f"given step rate {r:,.0f} samples/s", r, None) for r in args.step_rate]
    print("\n| step | samples/s | loader time ÷ step time, 0 workers | workers needed |\n|---|---:|---:|---:|")
    for label, r, share in needs:
        share_s = f"{share:.3f}" if share is not None else ""
        print(f"| {label} | {r:,.1f} | {share_s} | {workers_needed(median, r)} |")
    loader = [
        {"workers": w, "samples_s": median[w], "min": min(v), "max": max(v), "warm_s": [min(warms[w]), max(warms[w])]}
        for w, v in rates.items()
    ]
    steps = [{"step": label, "samples_s": r, "workers_needed": workers_needed(median, r)} for label, r, _ in needs]
    run = {"label": f"{args.repeat} repeats of {args.batches} batches", "loader": loader, "steps": steps}
    record = {"gt_size": gt_size, "batch": batch, "cpus": cpu_count(), "runs": [run]}
    write_result(f"loader_{args.device}", record, name="loader", argv=argv, flags=args)


if __name__ == "__main__":
    main()
