"""Divergence watch: a run whose loss grows far past its start, or whose validation falls below bicubic, is flagged.

``train:optim_g:lr=1e2`` used to finish with exit 0 at losses of 1e29 and 9.6 dB. Here the log gets a warning
when it happens and the run's final line repeats it; with ``train.stop_on_divergence: true`` the run stops.

.. code-block:: yaml

    train:
      stop_on_divergence: false   # true: stop at the first sign (a resume state of the last save remains)
"""

from __future__ import annotations

import math
from collections import deque

START_ITERS = 10  # the loss's start: the smallest of the first iterations (one exploding step is no start)
WINDOW = 10  # the loss now: the mean of the last iterations
FACTOR = 10.0  # "far past its start"
FAR_BELOW_DB = 10.0  # a validation this far below the baseline is a broken run even at its first validation


class DivergenceError(RuntimeError):
    """Raised with ``train.stop_on_divergence`` at the first sign of divergence."""


class DivergenceWatch:
    """Watch ``l_total`` every step and each validation's PSNR against the bicubic (or input) baseline.

    Args:
        stop: raise :class:`DivergenceError` instead of only warning.
    """

    def __init__(self, stop: bool = False) -> None:
        self.stop = stop
        self.start: list[float] = []
        self.recent: deque[float] = deque(maxlen=WINDOW)
        self.warnings: list[str] = []
        self._loss_warned = False
        self.previous: dict[str, float] = {}  # the last validation value per (dataset, metric)

    def loss(self, it: int, value: float) -> str | None:
        """One step's total loss; returns a warning the first time the loss has grown far past its start."""
        if len(self.start) < START_ITERS:
            self.start.append(value)
            return None
        self.recent.append(value)
        start = min(self.start)
        now = sum(self.recent) / len(self.recent)
        if self._loss_warned or len(self.recent) < WINDOW or not (now > FACTOR * start or not math.isfinite(now)):
            return None
        self._loss_warned = True
        return self._flag(
            f"the loss diverges: {now:.4g} at iter {it} (mean of {WINDOW}), {now / start:.3g}x its start {start:.4g}; "
            "lower train:optim_g:lr or the loss weights"
        )

    def validation(self, it: int, dataset: str, metric: str, value: float, baseline: float, what: str) -> str | None:
        """A validation PSNR; returns a warning when it falls below the baseline (``what``: bicubic or input).

        A young student may start below bicubic and climb: that is not flagged. Flagged: below the baseline and
        lower than the previous validation (falling), or more than ``FAR_BELOW_DB`` below it.
        """
        key = f"{dataset}:{metric}"
        previous = self.previous.get(key)
        self.previous[key] = value
        falling = previous is not None and value < previous
        if value >= baseline or not (falling or value < baseline - FAR_BELOW_DB):
            return None
        trend = f", down from {previous:.3f} dB" if falling else ""
        return self._flag(
            f"validation {metric} on {dataset} at iter {it} is {value:.3f} dB{trend}, below the {what} baseline "
            f"{baseline:.3f} dB: the student is worse than not running it"
        )

    def _flag(self, message: str) -> str:
        self.warnings.append(message)
        if self.stop:
            raise DivergenceError(f"{message} (stopped: train.stop_on_divergence)")
        return message

    def state_dict(self) -> dict:
        return {
            "start": list(self.start),
            "recent": list(self.recent),
            "warned": self._loss_warned,
            "previous": dict(self.previous),
        }

    def load_state_dict(self, state: dict) -> None:
        self.start = list(state.get("start", []))
        self.recent.extend(state.get("recent", []))
        self._loss_warned = bool(state.get("warned", False))
        self.previous.update(state.get("previous", {}))
