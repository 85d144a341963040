"""The experiment folder: the run's first write, made only once every start-up check has passed.

A fresh run moves an old folder of the same name aside (never deletes it); a resumed run keeps its folder and
removes the temporary files of writes a killed run left. Then the log file opens, with the start-up lines first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from basicsr.utils import get_env_info, get_time_str
from basicsr.utils.options import dict2str

from kit.experiments import save_effective_options
from kit.run.context import Run
from kit.run.ddp import barrier
from kit.run.logs import setup_logger


def open_experiment(run: Run) -> None:
    """The first write of the run: a fresh folder (an old one moved aside) or the resumed one; the log file."""
    opt = run.opt
    archived, cleaned = None, []
    if opt["rank"] == 0:
        if run.resume_state is not None:
            cleaned = clean_partial_writes(run.exp_root)
        else:
            archived = archive_experiment(run.exp_root, run.root / "experiments")
            for key in ("experiments_root", "models", "training_states", "visualization"):
                Path(opt["path"][key]).mkdir(parents=True, exist_ok=True)
    barrier(opt)
    saved = save_options(run) if opt["rank"] == 0 else None
    log_file = str(run.exp_root / f"train_{opt['name']}_{get_time_str()}.log")
    run.logger = setup_logger(log_file, opt["rank"], run.console)  # the start-up lines kept in memory go first
    if run.args.debug:  # the whole options dump: ~250 lines before the first step
        run.logger.info(get_env_info())
        run.logger.info(dict2str({k: v for k, v in opt.items() if k != "opt_path"}))
    if saved is not None:
        run.logger.info(f"Options as this run uses them: {saved} (export.py --experiment {opt['name']} reads them)")
    if archived:
        run.logger.info(f"An experiment named {opt['name']} existed: moved to {archived}")
    if cleaned:
        run.logger.info(f"Removed {len(cleaned)} temporary file(s) of writes a killed run left: {cleaned[0].name}, ...")
    if opt["logger"].get("use_tb_logger") and "debug" not in opt["name"] and opt["rank"] == 0:
        from torch.utils.tensorboard import SummaryWriter

        run.tb_logger = SummaryWriter(log_dir=str(run.root / "tb_logger" / opt["name"]))


def save_options(run: Run) -> Path:
    """The run's effective options (overrides applied, schedule fitted) in its folder, under the file's name."""
    opt = run.opt
    name = Path(opt["opt_path"]).name
    if run.effective is None:  # a run made without train.py's flags: the file as given
        shutil.copyfile(opt["opt_path"], run.exp_root / name)
        return run.exp_root / name
    overrides = run.args.force_yml or []
    source = opt["opt_path"] + (f" with --force_yml {' '.join(overrides)}" if overrides else "")
    return save_effective_options(run.exp_root, name, run.effective, source)


def archive_experiment(root: Path, experiments: Path) -> Path | None:
    """Move an existing experiment folder aside (never delete it) before a fresh run reuses its name.

    Only ever a folder directly under ``experiments`` (the kit's own output folder): anything else (a path that
    leads elsewhere, a link out of it) is refused, whatever the options say.
    """
    if not root.exists() and not root.is_symlink():
        return None
    if root.is_symlink() or root.resolve().parent != experiments.resolve():
        raise RuntimeError(
            f"refusing to move '{root}' aside: only folders directly under {experiments} are archived; "
            "rename the experiment (options 'name')"
        )
    stem = f"{root.name}_archived_{get_time_str()}"
    target, n = root.with_name(stem), 1
    while target.exists() or target.is_symlink():  # two runs archived in the same second: never merge into one
        n += 1
        target = root.with_name(f"{stem}_{n}")
    os.replace(root, target)
    return target


def clean_partial_writes(experiments_root: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of writes that a killed run left (``.<name>.<random>.tmp``, never a checkpoint)."""
    removed = []
    for sub in ("models", "training_states"):
        folder = Path(experiments_root) / sub
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
