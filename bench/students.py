"""Size, MACs and CPU latency of the kit students: each family's default and its largest setting under 5M.

SPAN's "max" is what ``kit-fit --family SPANStudent --max-params 5000000`` recommends.

    python -m bench students [--latency-size 128] [--runs 3]

Params are Σ numel (NTIRE's definition) of the network as trained and as deployed (after ``fuse``).
GMACs: ``torch.utils.flop_counter.FlopCounterMode`` FLOPs / 2 of the deployed network on a 1×3×256×256
input (the LR input for SR students), counted on the meta device, so no arithmetic runs. Latency: median
of ``--runs`` forward passes of the deployed network under ``torch.inference_mode`` on this machine's
CPU, after two warm-up passes (oneDNN builds its kernels for a new shape on the first calls). Prints a markdown
table and writes it to ``bench/results/students_cpu.json``.
"""

from __future__ import annotations

import argparse
import os

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision)
from bench.harness import median_time, seed_everything, write_result
from kit.archs import NAFStudent, RepSRStudent, RLFNStudent, SPANStudent, count_params, deploy_network

CAP = 5_000_000

SETTINGS: list[tuple[str, type[nn.Module], dict]] = [
    ("RLFNStudent ×4 default (52 ch, 6 blocks)", RLFNStudent, {}),
    ("RLFNStudent ×4 max (128 ch, 10 blocks)", RLFNStudent, dict(num_feat=128, num_block=10)),
    ("RepSRStudent ×4 default (ECBSR-M16C64)", RepSRStudent, {}),
    ("RepSRStudent ×4 max (128 ch, 32 blocks)", RepSRStudent, dict(num_feat=128, num_block=32)),
    ("NAFStudent ×1 default (C16, enc 1-1-1-8)", NAFStudent, {}),
    ("NAFStudent ×1 max (NAFNet-C16-L28)", NAFStudent, dict(enc_blk_nums=[1, 1, 1, 28])),
    ("SPANStudent ×4 default (official spanx4_ch48: 48 ch, 6 blocks)", SPANStudent, {}),
    ("SPANStudent ×4 max (200 ch, 4 blocks; kit-fit's pick under 5M)", SPANStudent, dict(num_feat=200, num_block=4)),
]


def gmacs(net: nn.Module, size: int = 256) -> float:
    """Multiply-accumulates (FLOPs / 2) of one forward pass at 1×3×size×size, in units of 1e9."""
    meta = deploy_network(net).to("meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(1, 3, size, size, device="meta"))
    return counter.get_total_flops() / 2 / 1e9


def latency_ms(net: nn.Module, size: int, runs: int) -> float:
    """Median CPU wall time of ``runs`` forward passes at 1×3×size×size, in milliseconds."""
    x = torch.rand(1, 3, size, size)
    with torch.inference_mode():
        return 1e3 * median_time(lambda: net(x), runs, warmup=2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench students", description=__doc__.splitlines()[0])
    parser.add_argument("--latency-size", type=int, default=128, help="input side for the latency runs")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per setting (median reported)")
    args = parser.parse_args(argv)

    rows = []
    for label, cls, kwargs in SETTINGS:
        seed_everything(0)
        net = cls(**kwargs)
        deployed = deploy_network(net)
        p_train, p_deploy = count_params(net), count_params(deployed)
        ms = latency_ms(deployed, args.latency_size, args.runs)
        rows.append((label, p_train, p_deploy, gmacs(net), ms))

    s = args.latency_size
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"CPU: {torch.get_num_threads()} threads, load average {load}, torch {torch.__version__}")
    print(f"latency: median of {args.runs} runs at 1×3×{s}×{s}, deployed network")
    print()
    header = f"| setting | params (train) | params (deployed) | GMACs @1×3×256×256 | CPU ms @1×3×{s}×{s} | ms ÷ row 1 |"
    print(header + " under 5M |")
    print("|---|---:|---:|---:|---:|---:|:---:|")
    for label, p_train, p_deploy, g, ms in rows:
        ok = "yes" if p_deploy < CAP else "NO"
        ratio = ms / rows[0][4]
        print(f"| {label} | {p_train / 1e6:.3f}M | {p_deploy / 1e6:.3f}M | {g:.1f} | {ms:.0f} | {ratio:.2f} | {ok} |")
    keys = ("setting", "params_train", "params_deployed", "gmacs_256", "cpu_ms")
    record = {"load_average": os.getloadavg(), "rows": [dict(zip(keys, row)) for row in rows]}
    write_result("students_cpu", record, name="students", argv=argv, flags=args)


if __name__ == "__main__":
    main()
