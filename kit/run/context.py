"""What the stages of a run share: :class:`Run`, filled stage by stage (options first, the model and progress last)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.data.sampler import ResumableSampler
from kit.run.divergence import DivergenceWatch
from kit.run.state import ResumeState

if TYPE_CHECKING:
    from kit.options import TrainFlags


@dataclass
class Run:
    """One training run, filled stage by stage (options first; the model and the progress last)."""

    opt: dict
    args: TrainFlags
    root: Path
    console: bool = True
    effective: dict | None = None  # the options as the run uses them (kit.options.effective_options): saved
    logger: logging.Logger | None = None
    cache_spec: dict | None = None  # train.teacher_cache, checked; None when off
    exp_root: Path | None = None
    state_path: Path | None = None
    resume_state: ResumeState | None = None  # read at build, handed to the model and the loop, then dropped
    teachers: dict | None = None  # {name: LoadedTeacher}, loaded once (DistillModel)
    tb_logger: Any = None
    train_loader: Any = None
    sampler: ResumableSampler | None = None
    val_loaders: list = field(default_factory=list)
    per_epoch: int = 0
    model: Any = None
    current_iter: int = 0
    epoch: int = 0
    epoch_iter: int = 0  # iterations into the epoch: a resume continues mid-epoch
    validated_at: int | None = None
    started: float = 0.0  # time.time() when the loop began
    loader_rng: Any = None  # torch's RNG state when this epoch's data iterator was made (it draws the base seed)
    loader_seed: int | None = None  # that iterator's base seed (worker i seeds torch with base seed + i)
    watch: DivergenceWatch | None = None
    notes: list[str] = field(default_factory=list)  # repeated in the final line (no resume state, divergence)

    @property
    def distill(self) -> bool:
        """Whether the run distils (``model_type: DistillModel``): teachers to train first, check and load."""
        return self.opt.get("model_type") == "DistillModel"

    def warn(self, message: str | None) -> None:
        """Log a warning and repeat it in the run's final line (nothing when ``message`` is empty)."""
        if message:
            self.logger.warning(message)
            self.notes.append(message)
