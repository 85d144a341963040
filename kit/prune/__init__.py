"""Prune a pretrained teacher into a smaller student of a registered family (``kit-prune``, issue #24).

- :mod:`kit.prune.families` — the families a teacher can be pruned into and their constructor arguments.
- :mod:`kit.prune.target` — the student's size from ``--max-params`` / ``--max-gmacs`` / ``--width``.
- :mod:`kit.prune.graph` — coupled channels (torch-pruning's DepGraph), the cut, dropping blocks.
- :mod:`kit.prune.importance` — which channels to keep (the teacher's activation energy, or filter L1).
- :mod:`kit.prune.refit` — least-squares refit of every conv to the teacher's outputs, in forward order.
- :mod:`kit.prune.calibration` — LR calibration crops from a folder of photos.
- :mod:`kit.prune.procedure` — the steps in order: :func:`prune_teacher`.
"""

from __future__ import annotations

from kit.prune.procedure import PruneResult, PruneSettings, prune_teacher
from kit.prune.target import PruneTarget, PruneTargetError

__all__ = ["PruneResult", "PruneSettings", "PruneTarget", "PruneTargetError", "prune_teacher"]
