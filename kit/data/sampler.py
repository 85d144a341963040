"""A BasicSR ``EnlargedSampler`` that can continue mid-epoch after a resume, and honours the run's seed."""

from __future__ import annotations

import torch
from basicsr.data.data_sampler import EnlargedSampler


class ResumableSampler(EnlargedSampler):
    """``EnlargedSampler`` whose permutation depends on ``(seed, epoch)`` and that can skip consumed samples.

    BasicSR's sampler seeds its permutation by the epoch alone (every seed sees the same order) and a
    resumed run restarts the epoch from its first batch. Here :meth:`skip_next` drops the samples that
    were already consumed, once, so a resumed run sees exactly the batches it would have seen.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, ratio: int = 1, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas, rank, ratio)
        self.seed = int(seed)
        self._skip = 0

    def skip_next(self, num_samples: int) -> None:
        """Skip the first ``num_samples`` samples of the next epoch iterated (resume mid-epoch)."""
        self._skip = max(0, int(num_samples))

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        indices = torch.randperm(self.total_size, generator=g).tolist()
        size = len(self.dataset)
        indices = [v % size for v in indices][self.rank : self.total_size : self.num_replicas]
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])

    def __len__(self) -> int:
        return self.num_samples - self._skip
