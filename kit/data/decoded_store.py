"""Decoded training images kept in memory up to a byte budget (``cache_gb``), shared by the kit's datasets.

Decoding a large PNG costs more than the rest of a training sample, so the datasets decode each image
once. Unbounded, that copy grows with the dataset (DIV2K: 7 GB as uint8, 28 GB as float32) in every
data-loader worker; past the budget, images are decoded on every use instead, and one warning says so.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from basicsr.utils import get_root_logger

DEFAULT_CACHE_GB = 4.0


class DecodedImageStore:
    """``get(key, decode)``: the cached array, or ``decode()``'s, kept while the budget allows.

    Args:
        cache_gb: Budget in GB (1e9 bytes) per process; 0 keeps nothing.
        where: The options key of the dataset, for errors and the warning (``datasets:train``).
    """

    def __init__(self, cache_gb: float | int | None, where: str) -> None:
        cache_gb = DEFAULT_CACHE_GB if cache_gb is None else cache_gb
        if isinstance(cache_gb, bool) or not isinstance(cache_gb, (int, float)) or cache_gb < 0:
            raise ValueError(f"{where}:cache_gb must be a number >= 0, got {cache_gb!r}")
        self.where = where
        self.budget = int(cache_gb * 1e9)
        self.images: dict[str, np.ndarray] = {}
        self.nbytes = 0
        self._warned = False

    def get(self, key: str, decode: Callable[[], np.ndarray]) -> np.ndarray:
        img = self.images.get(key)
        if img is not None:
            return img
        img = decode()
        if self.nbytes + img.nbytes <= self.budget:
            self.images[key] = img
            self.nbytes += img.nbytes
        elif not self._warned:
            self._warned = True
            get_root_logger().warning(
                f"{self.where}: {self.nbytes / 1e9:.2f} GB of decoded images cached, the cache_gb cap; images "
                "past it are decoded on every use (raise cache_gb if memory allows)"
            )
        return img
