"""Distillation without ground truth, measured: Real-ESRGAN x4plus (16.7M) into a 0.8M student on LQ images alone.

    python -m bench gtfree [--teacher ../shared/teachers/RealESRGAN_x4plus.pth]
                           [--realsrset ../shared/benchmarks/RealSRSet] [--crop 96] [--iters N]
                           [--stage data teacher train eval]   # default: all four, in order

Stages (each reuses what an earlier run stored; run with ``nice -n 10`` on a shared CPU):
1. data: the bundled training/validation photos degraded ONCE (blur, MATLAB bicubic x4, noise, JPEG;
   :data:`kit.data.fixed_degraded.REALISTIC_X4`) into the LQ folders of options/distill_gtfree_realesrgan.yml.
2. teacher: Real-ESRGAN on a centre crop (``--crop`` LQ pixels, default 96) of each RealSRSet image, once,
   stored as 8-bit PNGs under bench/out/gtfree/realsrset/{lq,teacher}/ with the seconds per image.
3. train: ``train.py -opt options/distill_gtfree_realesrgan.yml`` with the teacher at ``--teacher``: no GT,
   the teacher's image is the only target, computed once per LQ image by the teacher cache.
4. eval: params, GMACs (1x3x256x256), onnxruntime CPU latency and PSNR/SSIM TO THE TEACHER on the RealSRSet
   crops, student and bicubic side by side (bicubic vs the teacher is the baseline); a comparison picture.

Writes bench/results/gtfree_realesrgan_cpu.{md,json} and bench/results/gtfree_realesrgan_compare.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import kit  # noqa: F401

# isort: split
import cv2
import numpy as np
import torch

from bench.harness import write_result
from kit.data.fixed_degraded import REALISTIC_X4, write_degraded_folder
from kit.images import list_images, read_image, write_image
from kit.options import REPO_ROOT, load_options, resolve_path

OPTIONS = REPO_ROOT / "options" / "distill_gtfree_realesrgan.yml"
OUT = REPO_ROOT / "bench" / "out" / "gtfree"
RESULTS = REPO_ROOT / "bench" / "results"
STAGES = ("data", "teacher", "train", "eval")
MAX_GT_SIZE = 256  # centre crop of each bundled photo before degrading: LQ <= 64x64 (the teacher's CPU cost)


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


def stage_data(bundled: Path) -> dict[str, Path]:
    """The fixed LQ folders the options file reads (made once; reused when the settings match)."""
    opt = load_options(OPTIONS)
    folders = {}
    for split, seed in (("train", 0), ("val", 1)):
        out = Path(resolve_path(opt["datasets"][split]["dataroot_lq"]))
        folders[split] = write_degraded_folder(bundled / split / "HR", out, REALISTIC_X4, 4, seed, MAX_GT_SIZE)
        print(f"data: {split} LQ folder {out} ({len(list_images(out))} images)", flush=True)
    return folders


def stage_teacher(teacher_ckpt: Path, realsrset: Path, crop: int) -> Path:
    """Real-ESRGAN's image of a centre crop of each RealSRSet photo, computed once (8-bit PNG)."""
    from tqdm import tqdm

    from kit.teachers.loading import load_teacher_with_info

    folder = OUT / "realsrset"
    (folder / "lq").mkdir(parents=True, exist_ok=True)
    (folder / "teacher").mkdir(parents=True, exist_ok=True)
    times_path = folder / "teacher_seconds.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    todo = [p for p in list_images(realsrset) if not (folder / "teacher" / f"{p.stem}.png").is_file()]
    if not todo:
        return folder
    net, info = load_teacher_with_info({"type": "AutoTeacher"}, teacher_ckpt, scale=4)
    print(f"teacher: {info.describe()}; {len(todo)} RealSRSet crops to label", flush=True)
    for path in tqdm(todo, desc="Real-ESRGAN on RealSRSet crops", unit="image"):
        img = read_image(path)
        h, w = img.shape[:2]
        ch, cw = min(crop, h), min(crop, w)
        top, left = (h - ch) // 2, (w - cw) // 2
        write_image(folder / "lq" / f"{path.stem}.png", np.ascontiguousarray(img[top : top + ch, left : left + cw]))
        lq = read_image(folder / "lq" / f"{path.stem}.png")  # exactly the 8-bit input every model reads
        start = time.time()
        with torch.inference_mode():
            out = net(_tensor(lq)).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        times[path.stem] = {"seconds": round(time.time() - start, 2), "lq": [ch, cw]}
        tmp = folder / "teacher" / f".{path.stem}.tmp.png"
        write_image(tmp, out)
        tmp.rename(folder / "teacher" / f"{path.stem}.png")  # a killed run leaves no half-written image
        times_path.write_text(json.dumps(times, indent=1) + "\n")
    return folder


def stage_train(teacher_ckpt: Path, iters: int | None) -> dict:
    """``train.py`` on the shipped GT-free options, the teacher pointed at ``teacher_ckpt``."""
    from kit.cli.train import parse_args
    from kit.run import run_training

    argv = ["-opt", str(OPTIONS), "--force_yml", f"path:pretrain_network_t={teacher_ckpt}"]
    if iters:
        argv += [f"train:total_iter={iters}", f"train:scheduler:periods=[{iters}]"]
    start = time.time()
    summary = run_training(parse_args(argv), root=REPO_ROOT, console=False)
    summary["wall_s"] = round(time.time() - start, 1)
    return summary


def _budget(net: torch.nn.Module) -> tuple[int, float]:
    """Params and GMACs at 1x3x256x256 (counted on the meta device: nothing runs)."""
    from kit.export.budget import count_macs

    return sum(p.numel() for p in net.parameters()), count_macs(net, (1, 3, 256, 256)) / 1e9


def _onnx_latency(net: torch.nn.Module, path: Path, size: int, runs: int) -> float:
    from kit.export.onnx_export import export_onnx, latency_ms
    from kit.runners import OnnxRunner

    export_onnx(net.eval(), path, (1, 3, size, size))
    runner = OnnxRunner(path, threads=1)  # one intra-op thread: the CPU is shared, more threads oversubscribe it
    return latency_ms(runner, torch.rand(1, 3, size, size), runs=runs, warmup=1)


def stage_eval(teacher_ckpt: Path, folder: Path, summary: dict | None, latency_size: int) -> dict:
    """PSNR/SSIM to the teacher on the RealSRSet crops; params, GMACs, latency; the comparison picture."""
    from kit.archs.deploy import deploy_network
    from kit.evaluation import evaluate
    from kit.evaluation.teacher_reference import lq_pairs, with_teacher_images
    from kit.runners import BicubicRunner, TorchRunner, load_student
    from kit.teachers.loading import load_teacher_with_info

    opt = load_options(OPTIONS)
    student, loaded = load_student(opt)
    deployed = deploy_network(student).eval()
    source = with_teacher_images(lq_pairs(folder / "lq", 4), folder / "teacher", 4)
    models = {"student": TorchRunner(deployed), "bicubic": BicubicRunner(4)}
    result = evaluate(models, source, 4, y_channel=True, crop_border=4)
    rgb = evaluate(models, source, 4, y_channel=False, crop_border=4)
    teacher, info = load_teacher_with_info({"type": "AutoTeacher"}, teacher_ckpt, scale=4)
    s_params, s_gmacs = _budget(deployed)
    t_params, t_gmacs = _budget(teacher)
    onnx_dir = OUT / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    s_ms = _onnx_latency(deployed, onnx_dir / "student.onnx", latency_size, runs=5)
    times = json.loads((folder / "teacher_seconds.json").read_text())
    means, means_rgb = result.means("teacher"), rgb.means("teacher")
    record = {
        "teacher": info.describe(),
        "student": {"network": opt["network_g"], "checkpoint": loaded},
        "data": result.data,
        "images": len(result.images()),
        "metric": result.metric_label + "; reference: the teacher's output",
        "means_to_teacher_y": means,
        "means_to_teacher_rgb": means_rgb,
        "per_image": [r.__dict__ for r in result.rows],
        "params": {"student": s_params, "teacher": t_params},
        "gmacs_256": {"student": s_gmacs, "teacher": t_gmacs},
        "onnx_latency_ms": {"student": s_ms, "size": latency_size},
        "teacher_torch_seconds_per_crop": float(np.median([v["seconds"] for v in times.values()])),
        "training": {k: summary[k] for k in ("iters", "metrics", "wall_s") if k in summary} if summary else None,
    }
    _picture(folder, models, result)
    return record


def _picture(folder: Path, models: dict, result) -> Path:
    """Input / bicubic / student / teacher crops of three RealSRSet images, PSNR-Y to the teacher, one PNG."""
    from kit.infer.compare import comparison_png, detail_box

    psnr = {(r.image, r.model): r.psnr for r in result.rows}
    rows = []
    for name in ("00003", "oldphoto6", "comic3"):
        if not (folder / "lq" / f"{name}.png").is_file():
            continue
        lq, teacher = read_image(folder / "lq" / f"{name}.png"), read_image(folder / "teacher" / f"{name}.png")
        x = _tensor(lq)
        order = sorted(models, key=lambda m: m != "bicubic")  # input / bicubic / student / teacher
        crops = {"input": lq} | {m: models[m](x)[0].clamp(0, 1).permute(1, 2, 0).numpy() for m in order}
        crops["teacher (Real-ESRGAN)"] = teacher
        tmp = OUT / f"compare_{name}.png"
        shown = {m: psnr[name, m] for m in models}
        comparison_png(tmp, crops, shown, detail_box(teacher, 4, 160), f"{name}: PSNR-Y to the teacher, border 4")
        rows.append(cv2.imread(str(tmp)))
    width = max(r.shape[1] for r in rows)
    white = (255, 255, 255)
    rows = [cv2.copyMakeBorder(r, 0, 0, 0, width - r.shape[1], cv2.BORDER_CONSTANT, value=white) for r in rows]
    out = RESULTS / "gtfree_realesrgan_compare.png"
    cv2.imwrite(str(out), np.vstack(rows))
    return out


def _markdown(r: dict) -> str:
    y, rgb = r["means_to_teacher_y"], r["means_to_teacher_rgb"]
    lat, p, g = r["onnx_latency_ms"], r["params"], r["gmacs_256"]
    size = lat["size"]
    lines = [
        "# Distillation without ground truth: Real-ESRGAN x4plus → RLFN student (CPU)",
        "",
        f"Teacher: {r['teacher']}. Student: `{json.dumps(r['student']['network'])}`.",
        f"Evaluation: {r['data']} ({r['images']} images); {r['metric']}.",
        "",
        f"| model | params | GMACs @256² | onnxruntime CPU ms @{size}² (1 thread) "
        "| PSNR-Y to teacher | SSIM-Y to teacher | PSNR-RGB to teacher |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| student (distilled, no GT) | {p['student'] / 1e6:.3f}M | {g['student']:.1f} | {lat['student']:.1f} "
        f"| {y['student']['psnr']:.3f} | {y['student']['ssim']:.4f} | {rgb['student']['psnr']:.3f} |",
        f"| bicubic (MATLAB imresize) | 0 | – | – | {y['bicubic']['psnr']:.3f} | {y['bicubic']['ssim']:.4f} "
        f"| {rgb['bicubic']['psnr']:.3f} |",
        f"| teacher (Real-ESRGAN x4plus) | {p['teacher'] / 1e6:.3f}M | {g['teacher']:.1f} | not run (PyTorch: "
        f"{r['teacher_torch_seconds_per_crop']:.0f} s per 96² crop) | (reference) | (reference) | (reference) |",
        "",
        f"Student − bicubic, to the teacher: **{y['student']['psnr'] - y['bicubic']['psnr']:+.3f} dB** PSNR-Y, "
        f"{y['student']['ssim'] - y['bicubic']['ssim']:+.4f} SSIM-Y.",
        f"Teacher in PyTorch: median {r['teacher_torch_seconds_per_crop']:.1f} s per crop on this shared CPU.",
    ]
    if r.get("training"):
        t = r["training"]
        final = t.get("metrics")
        lines.append(f"Training: {t.get('iters')} iterations in {t.get('wall_s')} s; final validation {final}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench gtfree", description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default=str(REPO_ROOT.parent / "shared/teachers/RealESRGAN_x4plus.pth"))
    p.add_argument("--realsrset", default=str(REPO_ROOT.parent / "shared/benchmarks/RealSRSet"))
    p.add_argument("--crop", type=int, default=96, help="LQ centre crop of each RealSRSet image (teacher cost)")
    p.add_argument("--iters", type=int, help="training iterations (default: the options file's)")
    p.add_argument("--latency-size", type=int, default=64, help="LQ side of the latency input (default 64)")
    p.add_argument("--stage", nargs="+", choices=STAGES, default=list(STAGES))
    args = p.parse_args(argv)
    teacher, realsrset = Path(args.teacher).resolve(), Path(args.realsrset)
    if not teacher.is_file():
        print(f"python -m bench gtfree: teacher checkpoint '{teacher}' not found; pass --teacher PATH", file=sys.stderr)
        return 2
    if "teacher" in args.stage and not realsrset.is_dir():
        print(
            f"python -m bench gtfree: RealSRSet folder '{realsrset}' not found; pass --realsrset DIR", file=sys.stderr
        )
        return 2
    from kit.data import bundled

    summary = None
    if "data" in args.stage:
        stage_data(bundled.build())
    if "teacher" in args.stage:
        stage_teacher(teacher, realsrset, args.crop)
    if "train" in args.stage:
        summary = stage_train(teacher, args.iters)
        (OUT / "train_summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
        print(f"train: {summary.get('iters')} iters in {summary['wall_s']} s; {summary.get('metrics')}", flush=True)
    if "eval" in args.stage:
        if summary is None and (OUT / "train_summary.json").is_file():
            summary = json.loads((OUT / "train_summary.json").read_text())
        record = stage_eval(teacher, OUT / "realsrset", summary, args.latency_size)
        RESULTS.mkdir(parents=True, exist_ok=True)
        write_result("gtfree_realesrgan_cpu", record, name="gtfree", argv=argv, flags=args)
        text = _markdown(record)
        (RESULTS / "gtfree_realesrgan_cpu.md").write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
