"""onnxruntime CPU latency ÷ PyTorch eager CPU latency of the default student, at several input sizes.

    python -m bench onnx [-opt options/distill.yml] [--sizes 64 128 256] [--runs 5] [--threads 1 2]

The student is ``network_g`` of the options file (RLFNStudent in ``options/distill.yml``) with random weights,
deployed (:func:`kit.archs.deploy_network`) and exported as ``export.py`` does (:func:`kit.export.export_onnx`).
Both run on this machine's CPU with the same number of threads (``torch.set_num_threads`` and onnxruntime's
``intra_op_num_threads``), once per ``--threads`` value (default: 1 and torch's default); PyTorch under
``torch.inference_mode``. On a CPU shared with other processes, PyTorch's OpenMP threads can wait on each other
far longer than they compute (seen here: 20 ms at 1 thread, 1.5 s at 2 threads, 64² input, load 4 on 2 cores);
the 1-thread row is the one to trust there. For each 1×3×S×S LR input: two warm-up
calls each, then ``--runs`` timed calls alternating PyTorch and onnxruntime (so both see the same load); the
medians and their ratio are printed and written to ``bench/results/onnx.json``. A ratio below 1 means
onnxruntime is faster. Not a test: timings vary.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision)
from bench.harness import median_ms, seed_everything, timed, write_result
from kit.archs import count_params, deploy_network
from kit.export.onnx_export import export_onnx
from kit.options import REPO_ROOT, load_options
from kit.registry import build_network
from kit.runners import OnnxRunner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench onnx", description=__doc__.splitlines()[0])
    parser.add_argument("-opt", default=str(REPO_ROOT / "options" / "distill.yml"), help="options with network_g")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="LR input sides")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per size and runtime (median)")
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 and torch's default)")
    args = parser.parse_args(argv)

    opt = load_options(args.opt)
    seed_everything(0)
    net = deploy_network(build_network(dict(opt["network_g"]), "network_g"))
    thread_counts = args.threads or sorted({1, torch.get_num_threads()})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(net, Path(tmp) / "student.onnx", (1, 3, 64, 64))

        def eager(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return net(x)

        for threads in thread_counts:
            torch.set_num_threads(threads)
            onnx = OnnxRunner(path, threads=threads)
            for s in args.sizes:
                x = torch.rand(1, 3, s, s)
                for _ in range(2):
                    eager(x), onnx(x)
                t_torch, t_onnx = [], []
                for _ in range(args.runs):
                    t_torch.append(timed(lambda x=x: eager(x))[0])
                    t_onnx.append(timed(lambda x=x, o=onnx: o(x))[0])
                rows.append((threads, s, median_ms(t_torch), median_ms(t_onnx)))

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    spec = ", ".join(f"{k}={v}" for k, v in opt["network_g"].items() if k != "type")
    print(f"{opt['network_g']['type']}({spec}): {count_params(net):,d} params, deployed, random weights")
    print(f"CPU: {os.cpu_count()} cores, load average {load}; torch {torch.__version__}, onnxruntime {_ort()}")
    print(f"median of {args.runs} alternating runs after 2 warm-ups each; same thread count for both")
    print()
    print("| threads | LR input | PyTorch eager (ms) | onnxruntime (ms) | onnxruntime / PyTorch |")
    print("|---:|---|---:|---:|---:|")
    for threads, s, a, b in rows:
        print(f"| {threads} | 1×3×{s}×{s} | {a:.1f} | {b:.1f} | {b / a:.2f} |")
    record = {
        "network": opt["network_g"],
        "params": count_params(net),
        "load_average": os.getloadavg(),
        "rows": [{"threads": t, "size": s, "torch_ms": a, "onnx_ms": b, "ratio": b / a} for t, s, a, b in rows],
    }
    write_result("onnx", record, name="onnx", argv=argv, flags=args)


def _ort() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    main()
