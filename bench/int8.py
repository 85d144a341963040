"""INT8 three ways: fp32, today's post-training quantisation (PTQ) and the quantisation-aware fine-tuned network.

    python -m bench int8 --row span options/student_span.yml $WEIGHTS/spanx4_ch48.safetensors \\
        options/qat_span.yml experiments/qat_span_x4/models/net_g_latest.pth --sets bundled,Set5,Set14
    python -m bench int8 --row rlfn options/distill.yml experiments/distill_rlfn_x4/models/net_g_latest.pth

A row is ``NAME OPTIONS CHECKPOINT [QAT_OPTIONS QAT_CHECKPOINT]``: the fp32 network (``network_g`` of OPTIONS
with CHECKPOINT), fused and exported as ``export.py`` does; PTQ = that file through
:func:`kit.export.int8.quantize_int8` with the export's defaults (MinMax, 64 crops of 64 px of the training LR,
the image path in float); QAT = the ``QATStudent`` checkpoint's own QDQ export (:mod:`kit.quant.qdq`). Each ONNX
file is scored in onnxruntime on the bundled validation photos (``bundled``) and on ``--sets`` of
``--benchmarks`` (Set5, Set14, BSD68: ``<set>/LR_bicubic/X<scale>`` against ``<set>/HR``), PSNR on Y with a
border of the scale (the papers' convention); drops are against the fp32 file. Latency: the three files timed
in alternation in one process on a ``1x3xSxS`` input (median of ``--runs``), at each onnxruntime thread count of
``--threads``. Fine-tuning steps and time are read from the QAT experiment's log (``End of training``). Rows
accumulate in ``bench/results/int8.json`` by name. Not a test: timings vary with the machine's load; the ratios
are measured side by side in one run.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from bench.harness import read_result, write_result

DEFAULT_SETS = "bundled,Set5"


def _export_fp32(opt: dict, checkpoint: str, path: Path, size: int):
    import onnx

    from kit.archs import deploy_network
    from kit.export.onnx_export import export_onnx
    from kit.export.onnx_rewrite import rewrite_cubic_upsampling
    from kit.runners import load_student

    net, _ = load_student(opt, checkpoint)
    export_onnx(deploy_network(net).float().cpu(), path, (1, 3, size, size))
    model = onnx.load(str(path))
    if rewrite_cubic_upsampling(model):
        onnx.save(model, str(path))
    return net


def set_pairs(name: str, opt: dict | None, scale: int, benchmarks: Path):
    """The image pairs of ``bundled`` (``opt``'s validation set, else the bundled val photos) or of a test set."""
    from kit.evaluation import bundled_pairs, validation_pairs
    from kit.evaluation.sources import folder_pairs

    if name == "bundled":
        return validation_pairs(opt, scale) if opt is not None else bundled_pairs(scale)
    return folder_pairs(benchmarks / name / "LR_bicubic" / f"X{scale}", benchmarks / name / "HR", scale)


def _fine_tuning(qat_opt: dict) -> dict:
    """Steps and wall time of the QAT run, from its newest training log."""
    from kit.options import REPO_ROOT

    logs = sorted((REPO_ROOT / "experiments" / qat_opt["name"]).glob("train_*.log"))
    for log in reversed(logs):
        m = re.search(r"End of training \S+: (\d+) iters in ([^;]+);", log.read_text(errors="replace"))
        if m:
            return {"steps": int(m.group(1)), "time": m.group(2).strip(), "log": log.name}
    return {"steps": None, "time": None, "log": None}


def _files(args: argparse.Namespace, row: list[str], tmp: Path) -> tuple[dict, dict, dict | None]:
    """The row's ONNX files ``{label: path}``, its options, and the QAT options (or ``None``)."""
    from kit.export.int8 import Int8Settings, calibration_crops, quantize_int8
    from kit.options import load_options
    from kit.quant.qdq import export_qdq
    from kit.runners import load_student

    opt = load_options(row[1])
    scale = int(opt["scale"])
    files = {"fp32": tmp / "fp32.onnx", "ptq": tmp / "ptq.onnx"}
    _export_fp32(opt, row[2], files["fp32"], args.size)
    settings = Int8Settings()
    crops, _ = calibration_crops(opt, scale, settings.crops, settings.crop_size, settings.seed)
    quantize_int8(files["fp32"], files["ptq"], crops, settings)
    qat_opt = None
    if len(row) == 5:
        qat_opt = load_options(row[3])
        qat, _ = load_student(qat_opt, row[4])
        files["qat"] = tmp / "qat.onnx"
        export_qdq(qat, files["qat"], (1, 3, args.size, args.size))
    return files, opt, qat_opt


def measure_row(args: argparse.Namespace, row: list[str]) -> dict:
    """One row: PSNR of each file on each set, drops vs fp32, side-by-side latency, QAT steps and time."""
    import numpy as np

    from kit.evaluation import evaluate
    from kit.export.int8 import side_by_side_latency
    from kit.runners import OnnxRunner

    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        files, opt, qat_opt = _files(args, row, Path(tmp))
        scale = int(opt["scale"])
        runners = {label: OnnxRunner(path) for label, path in files.items()}
        psnr = {}
        for name in ["bundled", *[s for s in args.sets.split(",") if s and s != "bundled"]]:
            start = time.perf_counter()
            result = evaluate(runners, set_pairs(name, opt, scale, Path(args.benchmarks)), scale, True, scale)
            psnr[name] = {label: result.means()[label]["psnr"] for label in files}
            print(
                f"  [{row[0]}] {name}: "
                + ", ".join(f"{k} {v:.3f}" for k, v in psnr[name].items())
                + f" ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
        latency = []
        for threads in args.threads:
            ms = dict(zip(files, side_by_side_latency(list(files.values()), x, args.runs, threads)))
            speedup = {k: ms["fp32"] / v for k, v in ms.items() if k != "fp32"}
            latency.append({"threads": threads, "ms": ms, "speedup": speedup})
    drops = {s: {k: v["fp32"] - v[k] for k in v if k != "fp32"} for s, v in psnr.items()}
    record = {"name": row[0], "options": row[1], "checkpoint": row[2], "psnr": psnr, "drop": drops}
    record["latency"] = latency
    record["metric"] = f"PSNR on Y (BT.601), border {scale}"
    if qat_opt is not None:
        record |= {"qat_options": row[3], "qat_checkpoint": row[4], "fine_tuning": _fine_tuning(qat_opt)}
    return record


def markdown(record: dict, page: Path | None = None) -> str:
    """The table of ``bench/results/int8.json``: per row and set, fp32 / PTQ / QAT PSNR, drops and speed."""
    lines = [
        "| network | set | PSNR fp32 | PTQ (drop) | QAT (drop) | ORT CPU fp32 | PTQ | QAT | QAT fine-tuning |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in record["rows"]:
        tune = r.get("fine_tuning") or {}
        for k, (name, p) in enumerate(r["psnr"].items()):
            d = r["drop"][name]
            qat = f"{p['qat']:.3f} ({d['qat']:+.3f})" if "qat" in p else "—"
            speed = ["", "", ""]
            if k < len(r["latency"]):  # one thread count a line: the first rows of the network
                t = r["latency"][k]
                threads = f", {t['threads']} thread{'s' if t['threads'] != 1 else ''}" if t["threads"] else ""
                speed = [f"{t['ms']['fp32']:.0f} ms{threads}"] + [
                    f"{t['ms'][k2]:.0f} ms ({t['speedup'][k2]:.2f}×)" if k2 in t["ms"] else "—" for k2 in ("ptq", "qat")
                ]
            steps = "" if k else (f"{tune['steps']} steps, {tune['time']}" if tune.get("steps") else "—")
            head = [f"`{r['name']}`" if k == 0 else "", name]
            body = [f"{p['fp32']:.3f}", f"{p['ptq']:.3f} ({d['ptq']:+.3f})", qat]
            lines.append("| " + " | ".join(head + body + speed + [steps]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench int8", description=__doc__.split("\n")[0])
    p.add_argument(
        "--row",
        nargs="+",
        action="append",
        required=True,
        metavar="ARG",
        help="NAME OPTIONS CHECKPOINT [QAT_OPTIONS QAT_CHECKPOINT] (repeatable)",
    )
    p.add_argument(
        "--sets", default=DEFAULT_SETS, help=f"comma-separated of bundled, Set5, Set14, BSD68 ({DEFAULT_SETS})"
    )
    p.add_argument("--benchmarks", default="../shared/benchmarks", help="folder of the test sets")
    p.add_argument("--size", type=int, default=256, help="LR side of the latency input (default 256)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per file (median; default 5)")
    p.add_argument(
        "--threads",
        default="1,2",
        help="comma-separated onnxruntime thread counts to time at, 0 = onnxruntime's default (default 1,2)",
    )
    args = p.parse_args(argv)
    args.threads = [int(t) or None for t in args.threads.split(",") if t]
    for row in args.row:
        if len(row) not in (3, 5):
            raise SystemExit(f"--row wants NAME OPTIONS CHECKPOINT [QAT_OPTIONS QAT_CHECKPOINT], got {row}")
    try:
        rows = {r["name"]: r for r in read_result("int8")["rows"]}
    except FileNotFoundError:
        rows = {}
    for row in args.row:
        rows[row[0]] = measure_row(args, row)
        write_result("int8", {"rows": list(rows.values())}, name="int8", argv=argv, flags=args)
    print(markdown({"rows": list(rows.values())}))


if __name__ == "__main__":
    main()
