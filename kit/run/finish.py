"""The end of a run: a final state and ``net_g_latest.pth``, the last validation, the DDP check, the curves."""

from __future__ import annotations

import time
from pathlib import Path

from kit.run.context import Run
from kit.run.ddp import barrier, check_ranks_agree
from kit.run.loop import save, validate
from kit.run.plots import plot_history


def finish(run: Run) -> dict:
    """A state at the final iter (so --auto_resume of a finished run does nothing), 'latest', the last
    validation, the DDP weight check and the curves; returns the run's summary."""
    opt, model = run.opt, run.model
    if run.current_iter % int(opt["logger"]["save_checkpoint_freq"]) != 0:
        save(run)
    model.save(epoch=-1, current_iter=-1)  # net_g_latest.pth
    metrics: dict = {}
    if opt.get("val") is not None:
        if run.validated_at != run.current_iter:  # not when the loop just validated this very iteration
            validate(run)
        metrics = dict(getattr(model, "metric_results", {}))
    if run.tb_logger:
        run.tb_logger.close()
    agreement = check_ranks_agree(model) if opt["dist"] else None
    if agreement:
        run.logger.info(agreement)
    seconds = time.time() - run.started
    if opt["rank"] == 0:
        png = plot_history(run.exp_root / "history.jsonl", run.exp_root / "curves.png", title=opt["name"])
        if png:
            run.logger.info(f"Training curves: {png}")
    barrier(opt)
    end = f"End of training {opt['name']}: {run.current_iter} iters in {seconds:.0f} s; metrics {metrics}"
    if run.notes:
        run.logger.warning(f"{end}; WARNING: {' | '.join(run.notes)}")
    else:
        run.logger.info(end)
    return {
        "name": opt["name"],
        "experiments_root": str(run.exp_root),
        "latest_checkpoint": str(Path(opt["path"]["models"]) / "net_g_latest.pth"),
        "iters": run.current_iter,
        "seconds": seconds,
        "metrics": metrics,
        "notes": list(run.notes),
    }
