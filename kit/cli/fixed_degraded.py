"""``python -m kit.cli.fixed_degraded``: degrade GT photos once into a fixed folder of LQ images.

Usage::

    python -m kit.cli.fixed_degraded --gt datasets/bundled/train/HR --out datasets/gtfree_x4/train --max-gt-size 256
    python -m kit.cli.fixed_degraded --gt HR/ --out LQ/ --scale 2 --degradations '[{type: BicubicDown, scale: 2}]'

What it writes and why: :mod:`kit.data.fixed_degraded`.
"""

from __future__ import annotations

import argparse

import yaml

from kit.data.fixed_degraded import REALISTIC_X4, write_degraded_folder
from kit.images import list_images

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    p = argparse.ArgumentParser(description="Degrade GT photos once into a fixed folder of LQ images.")
    p.add_argument("--gt", required=True, help="folder of clean photos")
    p.add_argument("--out", required=True, help="LQ folder to create")
    p.add_argument("--scale", type=int, default=4, help="SR scale (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-gt-size", type=int, help="centre-crop each photo to at most this side first")
    p.add_argument(
        "--degradations",
        help="YAML list of degradations (default: blur σ 0.2–2, MATLAB bicubic ×4, noise σ 1–10, JPEG 50–90)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Write a fixed LQ folder from GT photos; exit 2 with one line on bad input."""
    p = build_parser()
    args = p.parse_args(argv)
    degs = yaml.safe_load(args.degradations) if args.degradations else REALISTIC_X4
    if not isinstance(degs, list):
        p.error("--degradations must be a YAML list, e.g. '[{type: BicubicDown, scale: 4}]'")
    try:
        out = write_degraded_folder(args.gt, args.out, degs, args.scale, args.seed, args.max_gt_size)
    except (ValueError, OSError) as err:
        print(f"fixed_degraded: error: {err}")
        return 2
    print(f"LQ folder ready: {out} ({len(list_images(out))} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
