"""The run's log: kept in memory during start-up, written to the experiment's log file once nothing failed.

The traceback of a failed run goes to that file too (:mod:`kit.cli.train` finds it with :func:`log_files`, or the
start-up lines with :func:`startup_buffer` when the run failed before its folder was opened).
"""

from __future__ import annotations

import logging

LOGGER_NAME = "basicsr"


class StartupBuffer(logging.Handler):
    """Keeps the log lines of a run's start-up in memory: the log file is written only once nothing failed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def startup_buffer() -> StartupBuffer | None:
    """The buffer of the current start-up (``None`` once the log file exists)."""
    return next((h for h in logging.getLogger(LOGGER_NAME).handlers if isinstance(h, StartupBuffer)), None)


def log_files() -> list[str]:
    """The log files the run's logger writes to (the experiment's, once it is open)."""
    return [h.baseFilename for h in logging.getLogger(LOGGER_NAME).handlers if isinstance(h, logging.FileHandler)]


def setup_logger(log_file: str | None, rank: int, console: bool = True) -> logging.Logger:
    """Console + file logging on rank 0 (other ranks: errors only); replaces earlier file handlers.

    Without ``log_file`` (start-up) the lines are also kept in memory; with it they are written to the file
    first. ``console=False`` keeps only warnings on the console (the file still gets everything).
    """
    from basicsr.utils import logger as basicsr_logger

    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
            handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s")
    stream = next((h for h in logger.handlers if type(h) is logging.StreamHandler), None)
    if stream is None:
        stream = logging.StreamHandler()
        stream.setFormatter(fmt)
        logger.addHandler(stream)
    stream.setLevel(logging.INFO if console else logging.WARNING)
    logger.propagate = False
    logger.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    buffer = startup_buffer()
    if buffer is not None:
        logger.removeHandler(buffer)
    if log_file and rank == 0:
        file_handler = logging.FileHandler(log_file, "w")
        file_handler.setFormatter(fmt)
        for record in buffer.records if buffer is not None else []:
            file_handler.handle(record)
        logger.addHandler(file_handler)
    elif not log_file:
        logger.addHandler(StartupBuffer())
    basicsr_logger.initialized_logger[LOGGER_NAME] = True
    return logger
