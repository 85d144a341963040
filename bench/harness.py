"""What every benchmark shares: one timer, seeding, and writing its result as JSON under ``bench/results/``.

Timing: :func:`timed` times one call (synchronised on a GPU, or between CUDA events); a benchmark that
compares several things calls it round-robin, so that machine noise hits them alike, and takes
:func:`median_ms` of each list. :func:`median_time` is the plain case (warm-up calls, then the median).
Results: :func:`write_result` writes ``bench/results/<stem>.json`` with the exact command that produced it
and its flags; ``python -m bench render`` turns those files into the tables of README.md and docs/.
"""

from __future__ import annotations

import json
import random
import shlex
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str = "cpu", cuda_events: bool = False) -> tuple[float, Any]:
    """Seconds taken by one ``fn()`` and what it returned.

    Args:
        fn: the call to time.
        device: ``"cuda"`` synchronises before and after (the kernels are done when the clock stops).
        cuda_events: on ``"cuda"``, CUDA events around the call instead of the wall clock (NTIRE's
            ``test_demo.py``).
    """
    if device == "cuda" and cuda_events:
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        value = fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3, value
    _sync(device)
    begin = time.perf_counter()
    value = fn()
    _sync(device)
    return time.perf_counter() - begin, value


def median_ms(seconds: Iterable[float]) -> float:
    """The median of times in seconds, in milliseconds."""
    return statistics.median(seconds) * 1e3


def median_time(fn: Callable[[], Any], runs: int, warmup: int = 0, device: str = "cpu") -> float:
    """Median seconds of ``runs`` calls of ``fn()`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device)[0] for _ in range(runs))


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's random streams (every device) from ``seed``."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def command(name: str, argv: list[str] | None) -> str:
    """The command line that runs benchmark ``name`` with ``argv``."""
    return " ".join(["python -m bench", name, *(shlex.quote(a) for a in argv or [])])


def write_result(stem: str, record: dict, *, name: str, argv: list[str] | None, flags: Any = None) -> Path:
    """Write ``record`` to ``bench/results/<stem>.json`` (or ``<stem>`` itself when it is a path).

    Args:
        stem: the file name without ``.json``, or a path ending in ``.json``.
        record: the numbers; it must not hold the keys ``benchmark``, ``command`` or ``flags``.
        name: the benchmark (``python -m bench <name>``).
        argv: its arguments as given.
        flags: the parsed arguments (an ``argparse.Namespace`` or a mapping), after the defaults.

    Returns:
        The path written (atomically: a temporary file renamed into place).
    """
    path = Path(stem) if str(stem).endswith(".json") else RESULTS / f"{stem}.json"
    if flags is not None and not isinstance(flags, dict):
        flags = vars(flags)
    head = {"benchmark": name, "command": command(name, argv), "flags": flags}
    clash = sorted(set(head) & set(record))
    if clash:
        raise ValueError(f"result record has reserved keys {clash}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(head | record, indent=1, default=str) + "\n")
    tmp.replace(path)
    return path


def read_result(stem: str) -> dict:
    """``bench/results/<stem>.json`` as a dict."""
    return json.loads((RESULTS / f"{stem}.json").read_text())
