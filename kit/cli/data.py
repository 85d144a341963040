"""``kit-data``: build (or ``--force`` rebuild) the bundled photo dataset (:mod:`kit.data.bundled`).

Usage::

    kit-data                      # datasets/bundled, once
    kit-data --force --root DIR   # rebuild, elsewhere
    python -m kit.cli.data ...    # the same (also ``python -m kit.data``)
"""

from __future__ import annotations

import argparse

import kit

DEFAULT_ROOT = kit.REPO_ROOT / "datasets" / "bundled"  # kit.data.bundled's (the parser imports no torch)

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """``kit-data``'s flags."""
    parser = argparse.ArgumentParser(description="Build the bundled photo dataset from scikit-image's sample photos.")
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="output folder (default: datasets/bundled)")
    parser.add_argument("--force", action="store_true", help="rebuild even when complete")
    return parser


def main(argv: list[str] | None = None) -> None:
    """``kit-data``: build (or ``--force`` rebuild) the bundled photo dataset."""
    args = build_parser().parse_args(argv)
    kit.install()
    from kit.data.bundled import TRAIN_PHOTOS, VAL_PHOTOS, build

    root = build(args.root, force=args.force)
    n_train, n_val = len(TRAIN_PHOTOS), len(VAL_PHOTOS)
    print(f"bundled dataset ready at {root}: {n_train} train / {n_val} val photos, HR + LR x2/x3/x4")


if __name__ == "__main__":
    main()
