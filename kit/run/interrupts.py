"""Ctrl-C and SIGTERM during training: finish the step, save a resume state, stop with one line.

PyTorch Lightning and traiNNer-redux do the same; BasicSR dies wherever the signal lands and saves nothing.
A second signal while the state is written falls back to the default (stop at once): the writes are atomic,
and the temporary file it may leave is removed at the next start.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped by a signal after saving a resume state; ``exit_code`` is ``128 + signal number``."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training steps (start-up, the final stage): raised where it lands, as Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` instead of ending the process without a word.

    ``finally`` blocks then run (the run's lock is released) and the command line says what happened. The
    training loop's :class:`GracefulStop` takes the signal over for the steps and hands it back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class GracefulStop:
    """While active (``with``), SIGINT/SIGTERM only set :attr:`signum`; the loop checks it after each step.

    Args:
        enabled: off under DDP (every rank would have to agree on the step to stop at) and off the main thread.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        for sig, old in self._old.items():  # a second signal stops at once
            signal.signal(sig, old)

    def __enter__(self) -> GracefulStop:
        if self.enabled:
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""
