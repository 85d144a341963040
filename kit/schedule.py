"""The learning-rate schedule follows the run's length (``train.total_iter``), whatever length the run is given.

BasicSR's schedulers count in iterations: ``periods: [600]`` with ``total_iter: 60`` never anneals, and with
``total_iter: 3000`` fails at iteration 601 (``TypeError: list indices must be integers or slices, not NoneType``
in ``CosineAnnealingRestartLR``). Three rules, applied when the options are read
(:func:`kit.options.effective_options`), so that the options saved in the experiment folder hold the iterations
the run used:

1. **Fractions of the run**: a list of numbers in (0, 1], one written with a decimal point, is a list of fractions of
   ``total_iter``. ``periods: [1.0]`` is one cosine over the whole run; ``milestones: [0.5, 0.75]`` steps at 50 %
   and 75 % of it.
2. **Scaled with the run**: iterations written as whole numbers are scaled when ``total_iter`` is overridden
   (``--force_yml train:total_iter=60``), by the new length over the written one; the log says so.
3. **Refused**: a cosine schedule whose periods end before ``total_iter``.

.. code-block:: yaml

    train:
      total_iter: 600
      scheduler: {type: CosineAnnealingRestartLR, periods: [1.0], restart_weights: [1], eta_min: 1e-5}
      # or: {type: MultiStepLR, milestones: [0.5, 0.75], gamma: 0.5}
"""

from __future__ import annotations

from typing import Any

# The iteration lists of each BasicSR scheduler (basicsr.models.lr_scheduler), and whether they must cover the run.
ITERATION_KEYS: dict[str, tuple[str, ...]] = {
    "CosineAnnealingRestartLR": ("periods",),
    "MultiStepLR": ("milestones", "restarts"),
    "MultiStepRestartLR": ("milestones", "restarts"),
}


class ScheduleError(ValueError):
    """A schedule that cannot follow the run (it ends before ``total_iter``, or a period rounds to nothing)."""


def is_fractions(values: Any) -> bool:
    """Whether ``values`` is a list of fractions of the run: numbers in (0, 1], at least one written as a float."""
    if not isinstance(values, list) or not values:
        return False
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return numbers and all(0 < v <= 1 for v in values) and any(isinstance(v, float) for v in values)


def _boundaries(values: list[float], factor: float, exact_end: float | None, total: int) -> list[int]:
    """Cumulative ends of consecutive periods, multiplied by ``factor`` and rounded; the written end lands on
    ``total`` exactly (``exact_end``: the cumulative value that means "the end of the run")."""
    ends, cumulative = [], 0.0
    for v in values:
        cumulative += v
        at_end = exact_end is not None and abs(cumulative - exact_end) < 1e-6
        ends.append(total if at_end else round(cumulative * factor))
    return ends


def _periods(values: list, total: int, written_total: int | None) -> list[int] | None:
    """The periods in iterations, or None when they need no change."""
    if is_fractions(values):
        ends = _boundaries(values, total, 1.0, total)
    elif written_total and written_total != total:
        ends = _boundaries(values, total / written_total, written_total, total)
    else:
        return None
    periods = [b - a for a, b in zip([0, *ends[:-1]], ends)]
    if min(periods) < 1:
        raise ScheduleError(
            f"train:scheduler:periods {values} give a period of {min(periods)} iterations at total_iter {total}; "
            "use fewer, longer periods"
        )
    return periods


def _points(values: list, total: int, written_total: int | None) -> list[int] | None:
    """Milestones or restarts in iterations, or None when they need no change."""
    if is_fractions(values):
        return [max(1, round(v * total)) for v in values]
    if written_total and written_total != total and values:
        return [round(v * total / written_total) for v in values]
    return None


def fit_schedule(train: dict | None, written: dict | None) -> list[str]:
    """Rewrite ``train['scheduler']``'s iterations to follow ``train['total_iter']`` (in place); the lines to log.

    Args:
        train: The options' ``train`` section, ``--force_yml`` overrides applied; nothing happens without a scheduler.
        written: The same section as the options file wrote it (before the overrides): whole iterations are scaled
            only when ``total_iter`` was overridden and the list itself was not.

    Raises:
        ScheduleError: a cosine schedule that ends before ``total_iter``, or a period that rounds to nothing.
    """
    scheduler = (train or {}).get("scheduler")
    total = (train or {}).get("total_iter")
    if not isinstance(scheduler, dict) or not isinstance(total, int) or scheduler.get("type") not in ITERATION_KEYS:
        return []
    written = written if isinstance(written, dict) else {}
    written_total = written.get("total_iter") if isinstance(written.get("total_iter"), int) else None
    written_scheduler = written.get("scheduler") if isinstance(written.get("scheduler"), dict) else {}
    notes = []
    for key in ITERATION_KEYS[scheduler["type"]]:
        values = scheduler.get(key)
        if not isinstance(values, list):
            continue
        from_file = written_total if values == written_scheduler.get(key) else None  # an overridden list is as given
        fitted = (_periods if key == "periods" else _points)(values, total, from_file)
        if fitted is not None and fitted != values:
            how = "fractions of" if is_fractions(values) else f"scaled from total_iter {written_total} to"
            notes.append(f"train:scheduler:{key} {values} -> {fitted} ({how} total_iter {total})")
            scheduler[key] = fitted
    return notes + _check_cosine(scheduler, total)


def _check_cosine(scheduler: dict, total: int) -> list[str]:
    """Refuse cosine periods that end before ``total_iter``; a note when they end after it."""
    periods = scheduler.get("periods")
    if scheduler["type"] != "CosineAnnealingRestartLR" or not isinstance(periods, list):
        return []
    end = sum(periods)
    if end < total:
        raise ScheduleError(
            f"train:scheduler: the cosine periods {periods} end at iter {end}, before total_iter {total} "
            f"(BasicSR's CosineAnnealingRestartLR fails there); write them as fractions of the run, e.g. "
            f"periods: [1.0], or make them sum to {total}"
        )
    if end > total:
        return [
            f"train:scheduler: the cosine periods {periods} end at iter {end}, after total_iter {total}: the "
            "learning rate stops before its minimum (periods: [1.0] anneals over the whole run)"
        ]
    return []
