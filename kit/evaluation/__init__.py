"""Evaluation of restoration models: image-pair sources, the evaluation loop, its result (``kit-eval``)."""

from kit.evaluation.core import EvalSettings, Model, evaluate
from kit.evaluation.result import EvalResult, EvalRow
from kit.evaluation.sources import (
    ImagePair,
    PairSource,
    bundled_pairs,
    degraded_pairs,
    folder_pairs,
    training_degradation,
    validation_pairs,
)

__all__ = [
    "EvalResult",
    "EvalRow",
    "EvalSettings",
    "ImagePair",
    "Model",
    "PairSource",
    "bundled_pairs",
    "degraded_pairs",
    "evaluate",
    "folder_pairs",
    "training_degradation",
    "validation_pairs",
]
