"""``train.py``'s command line: the run of :mod:`kit.run`, and one line on stderr when it fails.

Every error ends the run with exit code 1 and one line ``train.py: error: <what to change>``; the traceback
goes to the experiment's log file (or, when the run failed before its folder was opened, to a log file in the
system's temporary folder, named in the line) and to the screen with ``--debug``. SIGINT/SIGTERM during
training save a resume state and exit with ``128 + signal``. The arguments are parsed before torch is imported
(``--help`` answers at once); BasicSR's underscore flags and the kit's hyphenated spellings are both accepted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path

from kit.options import TrainFlags

EXAMPLES = """examples:
  python train.py -opt options/distill.yml                              # the main job (teacher first if missing)
  python train.py -opt options/distill.yml --force_yml train:total_iter=60 name=short   # a shorter run, renamed
  python train.py -opt options/distill.yml --auto-resume                # continue after Ctrl-C
  torchrun --nproc_per_node=2 train.py -opt options/distill.yml --launcher pytorch
"""


def main(argv: list[str] | None = None) -> int:
    """Run the training; returns the exit code (0, 1 on an error, 128 + signal when interrupted)."""
    argv = sys.argv[1:] if argv is None else argv
    flags = parse_args(argv)  # argparse's own usage errors exit 2 here, before torch is imported
    import kit

    kit.install()  # compat + registries (a no-op when the import already did it)
    from kit.run import run_training
    from kit.run.interrupts import Terminated, TrainingInterrupted, sigterm_raises

    try:
        with sigterm_raises():
            run_training(flags)
    except TrainingInterrupted as err:
        print(f"train.py: {err}", file=sys.stderr)
        return err.exit_code
    except Terminated as err:
        print(
            "train.py: stopped by SIGTERM outside the training steps (start-up or the final stage); nothing more "
            "was saved than the states already written (--auto_resume continues from the newest)",
            file=sys.stderr,
        )
        return err.exit_code
    except KeyboardInterrupt:
        print("train.py: interrupted before training began; nothing was saved", file=sys.stderr)
        return 130
    except SystemExit:
        raise  # argparse's own usage errors (exit 2)
    except Exception as err:
        where = keep_traceback(err)
        if "--debug" in argv:
            traceback.print_exception(err, file=sys.stderr)
        print(f"train.py: error: {one_line(err)} (traceback: {where})", file=sys.stderr)
        return 1
    return 0


def build_arg_parser() -> argparse.ArgumentParser:
    """``train.py``'s flags, with BasicSR's meaning."""
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a restoration network or distil a teacher into a student.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-opt", required=True, help="options YAML file, e.g. options/distill.yml")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none", help="'pytorch' under torchrun")
    parser.add_argument(
        "--auto_resume", "--auto-resume", action="store_true", help="continue from the experiment's newest state"
    )
    parser.add_argument(
        "--debug", action="store_true", help="name the run debug_*, log and validate every 8 iters, dump the options"
    )
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--force_yml",
        "--force-yml",
        nargs="+",
        default=None,
        help="override options, e.g. train:total_iter=100 name=short (the schedule follows total_iter)",
    )
    return parser


def parse_args(argv: list[str]) -> TrainFlags:
    """``train.py``'s command line as :class:`~kit.options.TrainFlags`."""
    return TrainFlags(**vars(build_arg_parser().parse_args(argv)))


def one_line(err: BaseException) -> str:
    """The message on one line; the exception's type named when it is a library's own (not an options error)."""
    text = " ".join(str(err).split()) or type(err).__name__
    own = isinstance(err, (ValueError, OSError, KeyError, RuntimeError)) and type(err).__module__.startswith("kit")
    plain = type(err) in (ValueError, FileNotFoundError, KeyError, RuntimeError, FloatingPointError)
    return text if own or plain else f"{type(err).__name__}: {text}"


def keep_traceback(err: BaseException) -> str:
    """Write the traceback into the run's log file; before the experiment exists, into a temporary file."""
    from kit.run.logs import LOGGER_NAME, log_files, startup_buffer

    logger = logging.getLogger(LOGGER_NAME)
    text = "".join(traceback.format_exception(err))
    files = log_files()
    if files:
        record = logger.makeRecord(LOGGER_NAME, logging.ERROR, __file__, 0, f"train.py failed:\n{text}", None, None)
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        return files[0]
    buffer = startup_buffer()
    fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s")
    lines = [fmt.format(r) for r in buffer.records] if buffer is not None else []
    stamp = time.strftime("%Y%m%d_%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"kit-train-{stamp}-", suffix=".log")
    with open(fd, "w", encoding="utf-8") as f:
        f.write("\n".join([*lines, "train.py failed before the experiment folder was opened (nothing written):", text]))
    return str(Path(path))
