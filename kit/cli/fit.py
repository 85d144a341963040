"""``kit-fit``: the configurations of a student family that fit a challenge's caps, largest first, and one to use.

Usage::

    kit-fit --family SPANStudent --max-params 5000000                      # x4, sizes at a 1x3x256x256 LR input
    kit-fit --family RLFNStudent --max-params 1e6 --max-gmacs 60 --input-size 256x256 --latency 5 --latency-size 128x128
    kit-fit --family NAFStudent --max-params 5e6 --max-gmacs 200 --scale 1 --latency 0   # no timing
    python -m kit.cli.fit ...                                               # the same

For each configuration of the family's grid (:data:`kit.archs.sizing.FAMILIES`): parameters of the deployed
network (Σ numel, re-parameterisable branches fused), GMACs at ``--input-size`` (fvcore, as
``export.py``), and for the ``--latency`` largest ones the onnxruntime CPU latency of the exported ONNX model
(random weights; median of ``--runs`` at ``--latency-size``). Prints the table, the rule, and the ``network_g``
entry of the recommended configuration (never one over a cap). Exit status 2 when nothing fits.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import kit
from kit.cli.argtypes import count, size

if TYPE_CHECKING:
    from kit.archs.sizing import Candidate

__all__ = ["build_parser", "main", "measure_latency", "network_g_yaml"]

# kit.archs.sizing.FAMILIES' names (tests/test_help.py checks them): the parser imports no torch.
FAMILY_NAMES = ("NAFStudent", "RLFNStudent", "RepSRStudent", "SPANStudent")
EXAMPLES = """examples:
  kit-fit --family SPANStudent --max-params 5e6                          # the largest SPAN under 5M
  kit-fit --family SPANStudent --max-params 2e5 --width-step 1           # every width: the NTIRE baseline's 28 too
  kit-fit --family RLFNStudent --max-params 1e6 --max-gmacs 60 --widths 28,32,40 --latency 0
"""


def _widths(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of widths, e.g. 28,32,48") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"'{text}': widths must be positive whole numbers")
    return values


def build_parser() -> argparse.ArgumentParser:
    """``kit-fit``'s flags."""
    p = argparse.ArgumentParser(
        prog="kit-fit",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--family", required=True, choices=FAMILY_NAMES, help="the student family (registered class)")
    p.add_argument("--max-params", type=count, default=5_000_000, help="inclusive cap on deployed params (5e6)")
    p.add_argument("--max-gmacs", type=float, help="inclusive cap on GMACs at --input-size (default: none)")
    p.add_argument("--input-size", type=size, default=(256, 256), help="reference LR input HxW (default 256x256)")
    p.add_argument("--scale", type=int, help="upscaling factor (default: 4 for SR families, 1 for NAFStudent)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--width-step", type=int, help="search the family's width range in this step (1: every width)")
    w.add_argument("--widths", type=_widths, help="search these widths only, e.g. 28,32,48")
    p.add_argument("--top", type=int, default=10, help="rows listed (default 10; 0: all that fit)")
    p.add_argument("--latency", type=int, default=3, help="time the N largest fitting configurations (default 3)")
    p.add_argument("--latency-size", type=size, default=(64, 64), help="input HxW of the timing (default 64x64)")
    p.add_argument("--runs", type=int, default=3, help="timed onnxruntime runs per configuration (median)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (default: its own choice)")
    return p


def measure_latency(candidate: Candidate, size: tuple[int, int], runs: int, threads: int = 0) -> float:
    """onnxruntime CPU latency (ms, median of ``runs``) of the configuration exported to ONNX with random weights."""
    import onnxruntime as ort
    import torch

    from kit.archs.sizing import build_deployed
    from kit.export.onnx_export import export_onnx, latency_ms

    torch.manual_seed(0)
    net = build_deployed(candidate.family, candidate.arguments, device="cpu")
    channels = candidate.input_shape[1]
    x = torch.rand(1, channels, *size)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(net, Path(tmp) / "model.onnx", (1, channels, *size))
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return latency_ms(lambda _: session.run(None, feed), x, runs=runs, warmup=1)


def network_g_yaml(candidate: Candidate) -> str:
    """The ``network_g`` entry as options-file YAML (one key a line, lists inline)."""
    import yaml

    lines = ["network_g:"]
    for key, value in candidate.network_g().items():
        lines.append(f"  {key}: {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    return "\n".join(lines)


def _table(rows: list[Candidate], family: str, shape: str, latency_shape: str) -> str:
    keys = [k for k in rows[0].arguments if k != "scale"]
    header = ["#", *keys, "params (deployed)", f"GMACs @{shape}", f"ORT CPU ms @{latency_shape}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for i, c in enumerate(rows, 1):
        ms = f"{c.latency_ms:.1f}" if c.latency_ms is not None else "–"
        values = [str(c.arguments[k]) for k in keys]
        lines.append("| " + " | ".join([str(i), *values, f"{c.params:,d}", f"{c.gmacs:.2f}", ms]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Search, print the table and the recommended ``network_g``; 2 when nothing fits or the input is bad."""
    args = build_parser().parse_args(argv)
    kit.install()  # compat + registries, once the arguments are parsed
    from kit.archs.sizing import FAMILIES, RULE, fitting, recommend

    family = FAMILIES[args.family]
    scale = args.scale if args.scale is not None else family.default_scale
    input_shape = (1, 3, *args.input_size)
    shape = "x".join(map(str, input_shape))
    try:
        widths = args.widths or (family.stepped(args.width_step) if args.width_step else family.widths)
        fits, sized = fitting(args.family, scale, input_shape, args.max_params, args.max_gmacs, widths)
    except ValueError as err:  # e.g. a scale the family does not support
        print(f"kit-fit: error: {err}", file=sys.stderr)
        return 2
    caps = f"params <= {args.max_params:,d}" + (f", GMACs <= {args.max_gmacs:g} at {shape}" if args.max_gmacs else "")
    print(f"kit-fit: {args.family} x{scale}; caps: {caps}")
    print(f"grid: {family.describe(widths)}; {sized} sized, {len(fits)} fit")
    best = recommend(fits)
    if best is None:
        print(
            f"kit-fit: error: no {args.family} configuration of the grid fits {caps}; raise a cap, or use a "
            f"smaller family (the grid starts at {family.width_key} {widths[0]}; --widths searches others)",
            file=sys.stderr,
        )
        return 2
    rows = fits if args.top <= 0 else fits[: args.top]
    latency_shape = "1x3x" + "x".join(map(str, args.latency_size))
    for c in fits[: max(0, args.latency)]:
        c.latency_ms = measure_latency(c, args.latency_size, args.runs, args.threads)
    print()
    print(_table(rows, args.family, shape, latency_shape))
    timed = "" if args.latency <= 0 else f"; latency: onnxruntime CPU, random weights, median of {args.runs} runs"
    print(f"params: deployed (branches fused), as export.py counts them; GMACs: fvcore, as export.py's gate{timed}")
    print()
    print(f"recommended: {best.params:,d} params, {best.gmacs:.2f} GMACs at {shape}; rule: {RULE}")
    print(network_g_yaml(best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
