"""NTIRE-style runtime of each shipped student: CUDA events around each whole-image forward, as NTIRE ESR's
``test_demo.py`` measures it (``cudnn.benchmark`` off, fp32, batch 1, the whole LR image, no tiling).

    python -m bench runtime [--device cuda|cpu] [--repeat 3] [--fp16] [--images DIR]

For every shipped options file with a student (``options/distill*.yml``) the deployed network (``network_g``,
re-parameterised branches fused, random weights: the runtime does not depend on them) runs over the LQ images
of the options' validation set (the bundled photos; GT images for a same-size task), or over ``--images``.
Per image: ``start.record(); model(img); end.record(); torch.cuda.synchronize()``, elapsed time in ms; one
untimed pass over the first image first (CUDA context and kernels), and ``--repeat`` timed passes over the
set. Reported: NTIRE's number (the mean over images, in ms), the median, and a 1×3×256×256 input (the size
NTIRE counts FLOPs at). On the CPU (``KIT_GPU_CHECK_DRY=1`` of ``gpu_check.sh``) wall time replaces the CUDA
events: those rows are CPU numbers, and the table says so. Writes ``bench/results/runtime_<device>.json``.
"""

from __future__ import annotations

import argparse
import statistics

import kit  # noqa: F401

# isort: split
import torch

from bench.harness import seed_everything, timed, write_result
from kit.archs import count_params, deploy_network
from kit.data.bundled import ensure_for_options
from kit.images import list_images, read_image
from kit.options import REPO_ROOT, finalize, load_options
from kit.registry import build_network

SHIPPED = ("distill.yml", "distill_repsr.yml", "distill_naf_denoise.yml")


def val_inputs(opt: dict, folder: str | None) -> list[torch.Tensor]:
    """The images a student is timed on: ``folder``, or the options' validation LQ (GT for a same-size task)."""
    if folder is None:
        val = next(v for k, v in opt["datasets"].items() if k.startswith("val"))
        folder = val.get("dataroot_lq") or val["dataroot_gt"]
    paths = list_images(folder)
    if not paths:
        raise SystemExit(f"no images in {folder}")
    return [torch.from_numpy(read_image(p).transpose(2, 0, 1).copy()).unsqueeze(0) for p in paths]  # (1, 3, H, W)


def forward_ms(net: torch.nn.Module, x: torch.Tensor, device: str) -> float:
    """Milliseconds of one ``net(x)``: CUDA events on a GPU (NTIRE's test_demo.py), wall time on the CPU."""
    return timed(lambda: net(x), device, cuda_events=True)[0] * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench runtime", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over the images")
    parser.add_argument("--fp16", action="store_true", help="half precision (NTIRE's default is fp32)")
    parser.add_argument("--images", help="a folder of input images instead of each options' validation LQ")
    parser.add_argument("--options", nargs="*", default=list(SHIPPED), help="options files under options/")
    args = parser.parse_args(argv)
    torch.backends.cudnn.benchmark = False  # as test_demo.py
    dtype = torch.float16 if args.fp16 else torch.float32
    timer = "CUDA events" if args.device == "cuda" else "wall time (CPU: not a GPU number)"
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"device {args.device} ({name}), {timer}, {'fp16' if args.fp16 else 'fp32'}, batch 1, whole images")
    print("| options | student | params (deployed) | images (sizes) | NTIRE runtime: mean ms | median ms | ms @256² |")
    print("|---|---|---:|---|---:|---:|---:|")
    rows = []
    for file in args.options:
        opt = finalize(load_options(REPO_ROOT / "options" / file), is_train=True)  # nothing is written
        ensure_for_options(opt)  # the bundled photos, built on first use
        seed_everything(0)
        net = deploy_network(build_network(dict(opt["network_g"]), "network_g")).to(args.device, dtype)
        inputs = [x.to(args.device, dtype) for x in val_inputs(opt, args.images)]
        ref = torch.rand(1, 3, 256, 256, device=args.device, dtype=dtype)
        with torch.inference_mode():
            net(inputs[0])  # untimed: context, kernels
            times = [forward_ms(net, x, args.device) for _ in range(args.repeat) for x in inputs]
            net(ref)
            ref_ms = statistics.median(forward_ms(net, ref, args.device) for _ in range(max(args.repeat, 3)))
        sizes = sorted({f"{x.shape[-1]}×{x.shape[-2]}" for x in inputs})
        shown = ", ".join(sizes[:3]) + (" …" if len(sizes) > 3 else "")
        print(
            f"| {file} | {opt['network_g']['type']} | {count_params(net) / 1e6:.3f}M | {len(inputs)} ({shown}) "
            f"| {statistics.mean(times):.2f} | {statistics.median(times):.2f} | {ref_ms:.2f} |",
            flush=True,
        )
        rows.append(
            {"options": file, "student": opt["network_g"]["type"], "params": count_params(net), "images": len(inputs)}
            | {"mean_ms": statistics.mean(times), "median_ms": statistics.median(times), "ms_256": ref_ms}
        )
        del net, inputs
        if args.device == "cuda":
            torch.cuda.empty_cache()
    record = {"device": name, "timer": timer, "dtype": "fp16" if args.fp16 else "fp32", "rows": rows}
    write_result(f"runtime_{args.device}", record, name="runtime", argv=argv, flags=args)


if __name__ == "__main__":
    main()
