"""Argument types the command lines share: a count (``--max-params``) and an input size (``--input-size``)."""

from __future__ import annotations

import argparse
import re

MAX_INPUT_SIDE = 2048  # an input size is traced, measured and run: bounded so a typo cannot exhaust the machine


def count(text: str) -> int:
    """``5000000``, ``5_000_000``, ``5e6`` or ``5M`` → 5000000 (a whole, positive number)."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:40]}' is not a number, e.g. 150688, 1.5e5 or 5M") from None
    if value <= 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"'{text[:40]}' must be a whole, positive number")
    return int(value)


def size(text: str) -> tuple[int, int]:
    """``HxW`` (``256x256``) with sides from 4 to :data:`MAX_INPUT_SIDE` → ``(H, W)``."""
    m = re.fullmatch(r"\s*(\d{1,9})\s*[xX×]\s*(\d{1,9})\s*", text)
    if not m or min(int(m.group(1)), int(m.group(2))) < 4 or max(int(m.group(1)), int(m.group(2))) > MAX_INPUT_SIDE:
        raise argparse.ArgumentTypeError(
            f"--input-size {text[:40]!r} must look like HxW with sides from 4 to {MAX_INPUT_SIDE}, e.g. 256x256 "
            "(the LR input the student is traced and measured at)"
        )
    return int(m.group(1)), int(m.group(2))
