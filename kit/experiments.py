"""An experiment folder as the tools read it: the options the run used, its checkpoints, whose a checkpoint is.

``train.py`` saves the run's **effective** options in ``experiments/<name>/`` (the file as given with every
``--force_yml`` applied, the schedule fitted to ``total_iter``), under the options file's name. ``export.py`` and
``kit-eval`` take the run they should read as ``-opt FILE [--force_yml ...]`` (the meaning ``train.py`` gives them)
or ``--experiment NAME|FOLDER``, and say which checkpoint they load and which run it belongs to::

    python export.py -opt options/distill.yml --force_yml name=my_run     # experiments/my_run's weights
    python export.py --experiment my_run                                 # the same, from the saved options
    kit-eval --experiment experiments/my_run --bicubic
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kit.options import REPO_ROOT, OptionsError, effective_options

CHECKPOINT = Path("models") / "net_g_latest.pth"


class RunMismatchError(OptionsError):
    """A checkpoint whose run trained another network than the options describe."""


@dataclass
class ToolOptions:
    """The options a tool reads and where they came from.

    Attributes:
        opt: The effective options (before BasicSR's derived keys).
        file: The options file read.
        source: One line for the report: the file and its overrides.
        checkpoint: The checkpoint the experiment implies (``None``: the tool's default for ``opt``).
    """

    opt: dict
    file: str
    source: str
    checkpoint: Path | None = None


def save_effective_options(folder: Path, filename: str, opt: dict, source: str) -> Path:
    """Write the run's effective options as ``folder/filename`` (YAML the kit reads back as they are)."""
    path = Path(folder) / filename
    header = f"# The options this run used: {source}. Written by train.py; export.py --experiment reads it.\n"
    path.write_text(header + yaml.safe_dump(opt, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def find_experiment(ref: str, root: Path = REPO_ROOT) -> Path:
    """The folder of an experiment given by name (``experiments/<name>`` under ``root``) or as a folder."""
    path = Path(os.path.expanduser(ref))
    for candidate in (path, root / path, root / "experiments" / ref):
        if candidate.is_dir():
            return candidate.resolve()
    known = sorted(p.name for p in (root / "experiments").glob("*") if p.is_dir())
    hint = f"; experiments: {', '.join(known[:8])}" if known else ""
    raise OptionsError(f"--experiment '{ref}': no such folder nor experiments/{ref}{hint}")


def experiment_options_file(folder: Path) -> Path:
    """The effective options ``train.py`` saved in an experiment folder (its one ``.yml``)."""
    files = sorted(Path(folder).glob("*.yml"))
    if len(files) != 1:
        what = "no options file" if not files else f"{len(files)} options files ({', '.join(f.name for f in files)})"
        raise OptionsError(f"experiment '{folder}' holds {what}; give -opt FILE instead of --experiment")
    return files[0]


def tool_options(opt_file: str | None, overrides: list[str] | None, experiment: str | None) -> ToolOptions:
    """The options a tool reads: ``-opt FILE`` with ``--force_yml`` (train.py's meaning), or an experiment's."""
    if experiment is not None and opt_file is not None:
        raise OptionsError("give -opt FILE or --experiment RUN, not both (the experiment holds its options)")
    checkpoint = None
    if experiment is not None:
        folder = find_experiment(experiment)
        opt_file = str(experiment_options_file(folder))
        checkpoint = folder / CHECKPOINT
    if opt_file is None:
        raise OptionsError("no options: give -opt FILE or --experiment RUN")
    opt, _ = effective_options(opt_file, overrides)
    source = opt_file + (f" with --force_yml {' '.join(overrides)}" if overrides else "")
    return ToolOptions(opt, opt_file, source, checkpoint)


def run_of(checkpoint: str | os.PathLike) -> Path | None:
    """The experiment folder a checkpoint was saved in (``<run>/models/<file>``), or None for a file elsewhere."""
    path = Path(checkpoint).resolve()
    return path.parent.parent if path.parent.name == "models" else None


def describe_checkpoint(opt: dict, checkpoint: str | os.PathLike) -> str:
    """``checkpoint <path> (run <name>)``, after refusing one whose run trained a different ``network_g``.

    Raises:
        RunMismatchError: the checkpoint's run saved options whose ``network_g`` or ``scale`` differ from ``opt``'s.
    """
    folder = run_of(checkpoint)
    if folder is None:
        return f"checkpoint {checkpoint} (not in an experiment's models/ folder)"
    saved = _saved_options(folder)
    if saved is not None:
        for key in ("network_g", "scale"):
            if _plain(saved.get(key)) != _plain(opt.get(key)):
                raise RunMismatchError(
                    f"checkpoint {checkpoint} belongs to run '{folder.name}', whose {key} is {saved.get(key)}, but "
                    f"the options give {opt.get(key)}; use --experiment {folder.name} (its own options) or the "
                    "options it was trained with"
                )
    return f"checkpoint {checkpoint} (run {folder.name})"


def _saved_options(folder: Path) -> dict | None:
    from kit.options import load_options

    files = sorted(folder.glob("*.yml"))
    return load_options(files[0]) if len(files) == 1 else None


def _plain(value: Any) -> Any:
    """Compare option values as YAML writes them (1e-5 and 0.00001, tuples and lists alike)."""
    return yaml.safe_load(yaml.safe_dump(value))
