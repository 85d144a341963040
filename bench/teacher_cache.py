"""What train.teacher_cache saves: output-only distillation steps with the live teacher vs cached teacher images.

    python -m bench teacher_cache [--iters 10] [--device cpu|cuda]

For each teacher (the shipped EDSR 64×8 and a larger EDSR 128×16, random weights: speed does not depend on
them), on the shipped student and batch (8 × 3 × 24 × 24, ×4):
- one DistillModel step with the teacher's forward (output-KD + pixel loss) and one where the batch carries
  the teacher's images (no teacher forward), timed interleaved on the same batch, median of ``--iters``;
- building the cache over the bundled training photos (13 images, tiled as the default options), and the
  training steps after which the cache has paid for itself;
- the data side: one training sample from CachedPairedImageDataset with and without the cached image
  (memory-mapped crop + augmentation), median over the dataset.

Writes ``bench/results/teacher_cache_<device>_steps.json`` (the Δ PSNR of cached recipes is
``python -m bench recipes --recipes scratch output_kd output_kd_cached mix mix_cached``'s).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import tempfile
from pathlib import Path

import kit  # noqa: F401

# isort: split
import torch
from basicsr.archs import build_network
from basicsr.models import build_model
from basicsr.utils import set_random_seed

from bench.harness import seed_everything, timed, write_result
from kit.data import bundled
from kit.data.cached_dataset import CachedPairedImageDataset
from kit.options import REPO_ROOT, finalize, load_options
from kit.teachers.cache import build_teacher_cache, teacher_folders

TEACHERS = {"EDSR 64×8 (shipped)": (64, 8), "EDSR 128×16": (128, 16)}


def _ms(fn, device: str) -> float:
    return timed(fn, device)[0] * 1000


def _options(feat: int, blocks: int, ckpt: Path, cache_root: Path, device: str) -> dict:
    opt = load_options(REPO_ROOT / "options/distill.yml")
    opt["network_t"].update(num_feat=feat, num_block=blocks)
    opt["path"] = {"pretrain_network_t": str(ckpt), "param_key_t": "params"}
    opt["train"]["distill"] = {"output": {"loss": {"type": "L1Loss", "loss_weight": 1.0}}}
    opt["train"].pop("recipes", None)
    opt["train"]["teacher_cache"] = {"root": str(cache_root)}
    opt["name"] = "bench_teacher_cache"  # nothing is written under experiments/: the model is only stepped
    opt = finalize(opt, is_train=True, root=REPO_ROOT)
    opt.update(dist=False, rank=0, world_size=1, num_gpu=1 if device == "cuda" else 0)
    return opt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench teacher_cache", description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr-size", type=int, default=24)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    bundled.build()
    work = Path(tempfile.mkdtemp(prefix="bench_teacher_cache_"))
    seed_everything(0)
    scale = 4
    lq = torch.rand(args.batch, 3, args.lr_size, args.lr_size)
    gt = torch.rand(args.batch, 3, args.lr_size * scale, args.lr_size * scale)
    print(
        f"device {args.device}, batch {args.batch}x3x{args.lr_size}x{args.lr_size}, x{scale}, "
        f"{args.iters} timed steps each (median), {torch.get_num_threads()} threads"
    )
    print("| teacher | params | step, live teacher ms | step, cached ms | speed-up | cache build s | pays off after |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    sample_opt, rows = None, []
    for label, (feat, blocks) in TEACHERS.items():
        ckpt = work / f"edsr_{feat}x{blocks}.pth"
        opt = _options(feat, blocks, ckpt, work / "cache", args.device)
        net = build_network(copy.deepcopy(opt["network_t"]))
        torch.save({"params": net.state_dict()}, ckpt)
        params = sum(p.numel() for p in net.parameters()) / 1e6

        model = build_model(opt)
        teacher = model.teachers["teacher"]
        with torch.no_grad():
            cached = {"teacher": teacher(lq.to(model.device)).float()}
        times: dict[str, list[float]] = {"live": [], "cached": []}
        for i in range(args.iters + 2):  # two warm-up rounds
            model.feed_data({"lq": lq, "gt": gt})
            live = _ms(lambda it=i, m=model: m.optimize_parameters(it + 1), args.device)
            model.feed_data({"lq": lq, "gt": gt, "teacher": cached})
            fast = _ms(lambda it=i, m=model: m.optimize_parameters(it + 1), args.device)
            if i >= 2:
                times["live"].append(live)
                times["cached"].append(fast)
        med = {k: statistics.median(v) for k, v in times.items()}

        lq_paths = [p["lq_path"] for p in CachedPairedImageDataset(opt["datasets"]["train"]).paths]
        build_s, folder = timed(lambda o=opt, p=lq_paths: build_teacher_cache(o, p, REPO_ROOT, args.device))
        saved = med["live"] - med["cached"]
        pays = f"{build_s * 1000 / saved:.0f} steps" if saved > 0 else "never"
        print(
            f"| {label} | {params:.2f}M | {med['live']:.1f} | {med['cached']:.1f} | "
            f"{med['live'] / med['cached']:.2f}× | {build_s:.1f} | {pays} |"
        )
        rows.append(
            {"teacher": label, "params_m": params, "live_ms": med["live"], "cached_ms": med["cached"]}
            | {"speedup": med["live"] / med["cached"], "build_s": build_s, "pays_off": pays}
        )
        if sample_opt is None:
            sample_opt = (opt["datasets"]["train"], teacher_folders(folder, ["teacher"]))

    dataset_opt, folders = sample_opt
    plain = CachedPairedImageDataset(dataset_opt)
    with_cache = CachedPairedImageDataset(dict(dataset_opt, teacher_outputs=folders))
    for ds in (plain, with_cache):  # decode every image once (the datasets keep them), as in training
        for i in range(len(ds)):
            ds[i]
    per_sample: dict[str, list[float]] = {"plain": [], "cache": []}
    for _ in range(5):
        for i in range(len(plain)):
            set_random_seed(i)
            per_sample["plain"].append(_ms(lambda i=i: plain[i], "cpu"))
            set_random_seed(i)
            per_sample["cache"].append(_ms(lambda i=i: with_cache[i], "cpu"))
    a, b = (statistics.median(v) for v in per_sample.values())
    print(
        f"\none training sample (gt_size {dataset_opt['gt_size']}): {a:.2f} ms plain, {b:.2f} ms with the cached image"
    )
    shutil.rmtree(work)
    record = {"images": len(lq_paths), "rows": rows, "sample_ms": {"plain": a, "cached": b}}
    write_result(f"teacher_cache_{args.device}_steps", record, name="teacher_cache", argv=argv, flags=args)


if __name__ == "__main__":
    main()
