"""Data: the bundled photo dataset, synthetic degradations, datasets and samplers."""

from kit.data import bundled, degradations
from kit.data.cached_dataset import CachedPairedImageDataset
from kit.data.degraded_dataset import DegradedImageDataset
from kit.data.lq_folder import LQFolderDataset
from kit.data.sampler import ResumableSampler

__all__ = [
    "CachedPairedImageDataset",
    "DegradedImageDataset",
    "LQFolderDataset",
    "ResumableSampler",
    "bundled",
    "degradations",
]
