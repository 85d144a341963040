"""The resume state: one ``training_states/<iter>.state`` file, what it holds and how a run continues from it.

:class:`ResumeState` is the format's one owner. The run builds one at every save from its parts and writes it
(atomically: a temp file renamed into place, after the student's ``net_g_<iter>.pth``); a resumed run reads one
back and hands each part to its owner:

=================  ===========================================================================================
key on disk        what it is, and who restores it
=================  ===========================================================================================
``epoch``          the epoch the run was in (the run)
``iter``           the last finished iteration (the run; the file's name too)
``epoch_iter``     iterations into that epoch: the sampler skips what the epoch already fed (the run)
``optimizers``,    the model's own part (``model.training_state()`` / ``model.resume_training(...)``):
``schedulers``,    optimizers and schedulers (BasicSR's keys), and what the model adds, such as DistillModel's
…                  ``connectors`` and ``recipes``
``rng``            every random stream at the save (:mod:`kit.run.rng`): crops, flips, degradations, dropout
``loader_rng``     torch's stream when the epoch's data iterator was made (it draws the workers' base seed)
``loader_seed``    that iterator's base seed, to tell a resume that cannot be exact
``divergence``     the divergence watch (:class:`kit.run.divergence.DivergenceWatch`)
=================  ===========================================================================================

The keys are those the kit wrote before this class existed, so older states still load: one without
``epoch_iter`` continues at the start of its epoch, one without ``rng`` continues without its random streams
(not bit-exact; the log says so), one without ``divergence`` with a fresh watch. Every value is a tensor, a
number, a string or a container of them, so that a state loads with ``weights_only=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kit.checkpoint import load_checkpoint, save_atomic
from kit.run.rng import capture as capture_rng
from kit.run.rng import restore as restore_rng

RUN_KEYS = ("epoch", "iter", "epoch_iter", "rng", "loader_rng", "loader_seed", "divergence")


@dataclass
class Streams:
    """Where the random streams stood: at the save, and when the epoch's data iterator was made.

    Attributes:
        now: :func:`kit.run.rng.capture` at the save (Python, NumPy, torch, CUDA).
        loader_rng: torch's state when the epoch's iterator was made (making it draws the workers' base seed).
        loader_seed: that iterator's base seed (``None`` without workers).
    """

    now: dict
    loader_rng: torch.Tensor | None
    loader_seed: int | None

    @classmethod
    def capture(cls, loader_rng: torch.Tensor | None, loader_seed: int | None) -> Streams:
        """Every stream now (reading only: an uninterrupted run draws the same numbers), with the epoch's."""
        return cls(capture_rng(), loader_rng, loader_seed)

    def rewind_loader(self) -> None:
        """Set torch's stream to where it was when the epoch's data iterator was made (before making it again)."""
        torch.set_rng_state(self.loader_rng)

    def restore(self) -> None:
        """Set every stream to where it stood at the save (after the epoch's iterator was made again)."""
        restore_rng(self.now)


@dataclass
class ResumeState:
    """One resume state: the run's progress, its random streams, the divergence watch and the model's own part.

    Attributes:
        epoch: the epoch the run was in.
        current_iter: the last finished iteration (``iter`` on disk).
        epoch_iter: iterations into ``epoch``.
        model: the model's part (``model.training_state()``): optimizers, schedulers, connectors, recipes, …
        streams: the random streams; ``None`` in a state written before resume was exact.
        divergence: :meth:`kit.run.divergence.DivergenceWatch.state_dict`.
    """

    epoch: int
    current_iter: int
    epoch_iter: int = 0
    model: dict = field(default_factory=dict)
    streams: Streams | None = None
    divergence: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The dict written to disk (the keys in the module docstring)."""
        state: dict[str, Any] = {"epoch": self.epoch, "iter": self.current_iter, "epoch_iter": self.epoch_iter}
        state.update(self.model)
        if self.streams is not None:
            state["rng"] = self.streams.now
            state["loader_rng"] = self.streams.loader_rng
            state["loader_seed"] = self.streams.loader_seed
        state["divergence"] = self.divergence
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ResumeState:
        """A state as read from disk, older ones too (see the module docstring)."""
        streams = None
        if "rng" in state:
            streams = Streams(state["rng"], state.get("loader_rng"), state.get("loader_seed"))
        return cls(
            epoch=state["epoch"],
            current_iter=state["iter"],
            epoch_iter=state.get("epoch_iter") or 0,
            model={k: v for k, v in state.items() if k not in RUN_KEYS},
            streams=streams,
            divergence=state.get("divergence", {}),
        )

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``<folder>/<iter>.state`` atomically (a temp file renamed into place); returns its path."""
        path = Path(folder) / f"{self.current_iter}.state"
        save_atomic(self.to_dict(), path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ResumeState:
        """Read a state on any device, without unpickling code (:func:`kit.checkpoint.load_checkpoint`)."""
        return cls.from_dict(load_checkpoint(path))

    def restore(self, model: Any, watch: Any) -> None:
        """Hand the model its part (``model.resume_training``) and the divergence watch its own."""
        model.resume_training(self.model)
        watch.load_state_dict(self.divergence)
