"""The README's "Challenge conventions" rows: each shipped student exported as export.py does, with INT8.

    python -m bench formats                                 # the three shipped distillation options
    python -m bench formats --only distill.yml --checkpoint distill.yml=experiments/x/models/net_g_latest.pth
    python -m bench formats --sweep                         # INT8 settings on options/distill.yml's student

Rows: each options file's trained student (``experiments/<name>/models/net_g_latest.pth``, or ``--checkpoint
FILE=PATH``) goes through :func:`kit.export.export_submission` with ``--ntire-team 0 --int8`` into a temporary
folder, exactly the CLI's path, and the row is read from the manifest: params, fvcore GFLOPs and activations at
1x3x256x256 (NTIRE's counts), PSNR of the fp32 and INT8 ONNX files on the validation photos (the options' metric
and RGB border 4), onnxruntime CPU latency of both files timed in alternation at ``--size`` (median of
``--runs``). An options file without a trained checkpoint is reported as such, not faked.

``--sweep``: one fp32 export of the first options file's student, then INT8 variants side by side: calibration
method (MinMax, Entropy, Percentile), which parts stay float (none, the image path, + first/last conv), crops,
and onnxruntime threads (1 and 2) — the PSNR drop and the speedup of each against the same fp32 file.
Not a test: timings vary with the machine's load; the ratios are measured side by side in one run.
Writes ``bench/results/formats.json`` (the rows; ``--only`` replaces those rows and keeps the others) or
``bench/results/formats_sweep_<options stem>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision)
from bench.harness import RESULTS, write_result
from kit.export import SubmissionSettings, export_submission
from kit.export.int8 import Int8Settings, calibration_crops, quantize_int8, side_by_side_latency
from kit.options import REPO_ROOT, load_options

SHIPPED = ("distill.yml", "distill_repsr.yml", "distill_naf_denoise.yml")


def _checkpoints(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, _, path = pair.partition("=")
        if not path:
            raise SystemExit(f"--checkpoint wants FILE=PATH, got {pair!r}")
        out[name] = path
    return out


def _row(options: str, checkpoint: str | None, args: argparse.Namespace) -> dict:
    opt = load_options(REPO_ROOT / "options" / options)
    ckpt = Path(checkpoint) if checkpoint else REPO_ROOT / "experiments" / opt["name"] / "models" / "net_g_latest.pth"
    if not ckpt.is_file():  # the sizes do not depend on the weights; the PSNRs and INT8 do
        from kit.archs import deploy_network
        from kit.export.counts import challenge_counts
        from kit.registry import build_network

        c = challenge_counts(deploy_network(build_network(dict(opt["network_g"]), "network_g")))
        missing = str(ckpt.relative_to(REPO_ROOT)) if ckpt.is_relative_to(REPO_ROOT) else str(ckpt)
        return {
            "options": options,
            "missing": missing,
            "params": c.params,
            "gflops": c.flops / 1e9,
            "activations_m": c.activations / 1e6,
            "num_conv": c.num_conv,
            "architecture": opt["network_g"]["type"],
        }
    settings = Int8Settings(crops=args.crops, crop_size=args.crop_size, method=args.method)
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
        start = time.perf_counter()
        result = export_submission(
            opt,
            SubmissionSettings(
                checkpoint=ckpt,
                input_size=(args.size, args.size),
                out_dir=tmp,
                latency_runs=args.runs,
                ntire_team=0,
                int8=settings,
            ),
            log=lambda line: print(f"  [{options}] {line}", flush=True),
        )
        wall = time.perf_counter() - start
    m = result.manifest
    q, c = m["int8"], m["counts"]
    return {
        "options": options,
        "architecture": m["architecture"],
        "checkpoint": str(ckpt.relative_to(REPO_ROOT)) if ckpt.is_relative_to(REPO_ROOT) else ckpt.name,
        "params": c["params"],
        "gflops": c["gflops"],
        "activations_m": c["activations_m"],
        "num_conv": c["num_conv"],
        "metric": m["validation"]["metric"],
        "fp32_psnr": m["validation"]["psnr"],
        "int8_psnr": q["validation"]["psnr"],
        "drop": q["validation"]["psnr_drop_vs_fp32"],
        "fp32_psnr_rgb4": m["validation"]["rgb_border4"]["psnr"],
        "int8_psnr_rgb4": q["validation"]["rgb_border4"]["psnr"],
        "fp32_ms": q["latency"]["fp32_ms_median"],
        "int8_ms": q["latency"]["int8_ms_median"],
        "speedup": q["latency"]["speedup"],
        "latency_input": q["latency"]["input_shape"],
        "int8_mb": q["size_bytes"]["int8"] / 1e6,
        "fp32_mb": q["size_bytes"]["fp32"] / 1e6,
        "ntire_max_abs": max(ch["max_abs_error"] for ch in m["ntire"]["verified"]["checks"]),
        "export_s": wall,
    }


def rows(args: argparse.Namespace, argv: list[str] | None = None) -> None:
    given = _checkpoints(args.checkpoint)
    results = [_row(o, given.get(o), args) for o in (args.only or SHIPPED)]
    print(
        "\n| options (student) | params | GFLOPs (fvcore) @256² | activations (M) | Conv2d | PSNR fp32 | PSNR INT8 | "
        "drop | PSNR-RGB b4 fp32 / INT8 | ORT CPU fp32 | ORT CPU INT8 | speedup |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if "missing" in r:
            print(
                f"| `{r['options']}` ({r['architecture']}) | {r['params']:,d} | {r['gflops']:.2f} | "
                f"{r['activations_m']:.2f} | {r['num_conv']} | not trained here (no `{r['missing']}`) | | | | | | |"
            )
            continue
        size = "x".join(map(str, r["latency_input"][2:]))
        print(
            f"| `{r['options']}` ({r['architecture']}) | {r['params']:,d} | {r['gflops']:.2f} | "
            f"{r['activations_m']:.2f} | {r['num_conv']} | {r['fp32_psnr']:.3f} | {r['int8_psnr']:.3f} | "
            f"{r['drop']:+.3f} | {r['fp32_psnr_rgb4']:.3f} / {r['int8_psnr_rgb4']:.3f} | {r['fp32_ms']:.0f} ms | "
            f"{r['int8_ms']:.0f} ms | {r['speedup']:.2f}× @{size} |"
        )
    for r in results:
        if "missing" not in r:
            print(
                f"{r['options']}: {r['metric']}; checkpoint {r['checkpoint']}; NTIRE file max abs error "
                f"{r['ntire_max_abs']:.1e}; {r['fp32_mb']:.2f} MB -> {r['int8_mb']:.2f} MB; "
                f"export {r['export_s']:.0f} s"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    store = RESULTS / "formats.json"
    kept = json.loads(store.read_text())["rows"] if args.only and store.is_file() else []
    done = {r["options"] for r in results}
    merged = [r for r in kept if r["options"] not in done] + results
    write_result("formats", {"rows": merged}, name="formats", argv=argv, flags=args)


def sweep(args: argparse.Namespace, argv: list[str] | None = None) -> None:
    import onnx

    from kit.archs import deploy_network
    from kit.evaluation import evaluate, validation_pairs
    from kit.export.onnx_export import export_onnx
    from kit.export.onnx_rewrite import rewrite_cubic_upsampling
    from kit.runners import OnnxRunner, load_student

    options = (args.only or SHIPPED)[:1][0]
    opt = load_options(REPO_ROOT / "options" / options)
    given = _checkpoints(args.checkpoint).get(options)
    net, loaded = load_student(opt, given)
    scale = int(opt["scale"])
    y = True
    border = scale
    for spec in ((opt.get("val") or {}).get("metrics") or {}).values():
        if "psnr" in str(spec.get("type", "")):
            y, border = bool(spec.get("test_y_channel", False)), int(spec.get("crop_border", 0))
    x = __import__("numpy").random.default_rng(0).random((1, 3, args.size, args.size), dtype="float32")

    def psnr(path: Path) -> float:
        return evaluate({"m": OnnxRunner(path)}, validation_pairs(opt, scale), scale, y, border).means()["m"]["psnr"]

    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        fp32 = export_onnx(deploy_network(net).float(), Path(tmp) / "fp32.onnx", (1, 3, 64, 64))
        model = onnx.load(str(fp32))
        if rewrite_cubic_upsampling(model):  # as export.py does
            onnx.save(model, str(fp32))
        base = psnr(fp32)
        print(f"{options}: {loaded['path']}, fp32 PSNR {base:.3f} dB; latency at 1x3x{args.size}x{args.size}")
        print("\n| calibration | crops | kept float | threads | PSNR INT8 | drop | fp32 ms | INT8 ms | speedup |")
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        grid = itertools.product(("minmax", "entropy", "percentile"), ((), ("image",)))
        variants = [(m, k, args.crops) for m, k in grid] + [("minmax", ("image", "first", "last"), args.crops)]
        variants += [("minmax", ("image",), 16), ("minmax", ("image",), 256)]
        crops_cache: dict[int, list] = {}
        table = []
        for method, keep, n in variants:
            if n not in crops_cache:
                crops_cache[n] = calibration_crops(opt, scale, n, args.crop_size)[0]
            path = Path(tmp) / "int8.onnx"
            quantize_int8(fp32, path, crops_cache[n], Int8Settings(n, args.crop_size, method, keep))
            value = psnr(path)
            for threads in (1, 2) if (method, keep, n) == ("minmax", ("image",), args.crops) else (2,):
                ms32, ms8 = side_by_side_latency([fp32, path], x, args.runs, threads)
                print(
                    f"| {method} | {n} | {'+'.join(keep) or 'none'} | {threads} | {value:.3f} | {base - value:+.3f} | "
                    f"{ms32:.0f} | {ms8:.0f} | {ms32 / ms8:.2f}× |",
                    flush=True,
                )
                table.append({"method": method, "crops": n, "keep_float": list(keep), "threads": threads})
                table[-1] |= {"int8_psnr": value, "drop": base - value, "fp32_ms": ms32, "int8_ms": ms8}
    record = {"options": options, "checkpoint": str(loaded["path"]), "fp32_psnr": base, "size": args.size}
    stem = f"formats_sweep_{Path(options).stem}"
    write_result(stem, record | {"rows": table}, name="formats", argv=argv, flags=args)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench formats", description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", help=f"options files under options/ (default {' '.join(SHIPPED)})")
    p.add_argument("--checkpoint", nargs="*", default=[], help="FILE=PATH: the checkpoint of an options file")
    p.add_argument("--size", type=int, default=256, help="LR side of the latency input (default 256, NTIRE's)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per model (median; default 5)")
    p.add_argument("--crops", type=int, default=64, help="calibration crops (default 64)")
    p.add_argument("--crop-size", type=int, default=64, help="calibration crop side (default 64)")
    p.add_argument("--method", default="minmax", help="calibration method of the rows (default minmax)")
    p.add_argument("--sweep", action="store_true", help="INT8 settings side by side instead of the rows")
    p.add_argument("--json", help="also write the rows as JSON")
    args = p.parse_args(argv)
    sweep(args, argv) if args.sweep else rows(args, argv)


if __name__ == "__main__":
    main()
