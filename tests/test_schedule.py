"""The learning-rate schedule follows the run: fractions of total_iter, scaled with an override, refused when short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kit.schedule import ScheduleError, fit_schedule
from tests.helpers import tiny_options, write_options


def cosine(periods: list, total: int) -> dict:
    return {"total_iter": total, "scheduler": {"type": "CosineAnnealingRestartLR", "periods": periods}}


def written(train: dict, total: int) -> dict:
    """The section as a file wrote it, with another ``total_iter`` (what --force_yml train:total_iter replaced)."""
    return {"total_iter": total, "scheduler": dict(train["scheduler"])}


def test_fractions_become_iterations_that_end_at_total_iter() -> None:
    train = cosine([0.25, 0.75], 10)
    notes = fit_schedule(train, written(train, 10))
    assert train["scheduler"]["periods"] == [2, 8] and "fractions" in notes[0]
    train = {"total_iter": 60, "scheduler": {"type": "MultiStepLR", "milestones": [0.5, 0.75], "gamma": 0.5}}
    fit_schedule(train, written(train, 60))
    assert train["scheduler"]["milestones"] == [30, 45]


def test_whole_iterations_scale_with_an_overridden_total_iter() -> None:
    down, up = cosine([600], 60), cosine([300, 300], 3000)
    assert "scaled from total_iter 600" in fit_schedule(down, written(down, 600))[0]
    fit_schedule(up, written(up, 600))
    assert down["scheduler"]["periods"] == [60] and up["scheduler"]["periods"] == [1500, 1500]
    same = cosine([600], 600)
    assert fit_schedule(same, written(same, 600)) == [] and same["scheduler"]["periods"] == [600]
    overridden = cosine([60], 60)  # --force_yml train:total_iter=60 train:scheduler:periods=[60]: as given
    assert fit_schedule(overridden, {"total_iter": 600, "scheduler": {"periods": [600]}}) == []
    assert overridden["scheduler"]["periods"] == [60]


def test_a_schedule_that_ends_before_total_iter_is_refused() -> None:
    with pytest.raises(ScheduleError, match=r"end at iter 3, before total_iter 6.*periods: \[1.0\]"):
        fit_schedule(cosine([3], 6), None)
    with pytest.raises(ScheduleError, match="period of 0 iterations"):
        fit_schedule(cosine([0.01, 0.99], 10), None)
    assert "stops before its minimum" in fit_schedule(cosine([600], 60), None)[0]


def last_lr(exp: Path) -> float:
    log = next(exp.glob("train_*.log")).read_text()
    return float(re.findall(r"lr:\(([0-9.e+-]+)", log)[-1])


@pytest.mark.parametrize(("written", "overridden"), [(16, 8), (4, 8)])
def test_overridden_total_iter_anneals_to_the_end(bundled_root: Path, tmp_path: Path, written: int, overridden: int):
    """Down (16 -> 8) and up (4 -> 8; BasicSR failed at iter 5): the cosine ends at the run's last step."""
    from kit.cli.train import parse_args
    from kit.run import run_training

    opt = tiny_options(bundled_root, "sched", **{"train:total_iter": written})
    opt["train"]["scheduler"] = {"type": "CosineAnnealingRestartLR", "periods": [written], "eta_min": 0.0}
    opt_file = write_options(tmp_path / "o.yml", opt)
    summary = run_training(
        parse_args(["-opt", str(opt_file), "--force-yml", f"train:total_iter={overridden}"]), root=tmp_path
    )
    exp = Path(summary["experiments_root"])
    assert summary["iters"] == overridden
    # the last step runs at last_epoch 7 of 8: lr = 1e-3 * (1 + cos(7 pi / 8)) / 2 = 3.81e-5
    assert last_lr(exp) == pytest.approx(3.81e-5, rel=0.01)
    saved = yaml.safe_load((exp / "o.yml").read_text())
    assert saved["train"]["total_iter"] == overridden and saved["train"]["scheduler"]["periods"] == [overridden]
    assert "scaled from total_iter" in next(exp.glob("train_*.log")).read_text()
