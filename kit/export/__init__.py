"""Export: the size gate (params, MACs), ONNX export and verification, NTIRE/INT8 formats, the submission folder.

``python export.py -opt options/distill.yml`` runs :func:`kit.cli.export.main`; :func:`export_submission` (with
:class:`SubmissionSettings`) is the function API.
"""

from __future__ import annotations

from kit.export.budget import MACS_METHOD, Budget, BudgetError, budget_violations, count_macs, measure_budget
from kit.export.counts import ChallengeCounts, challenge_counts, fvcore_flops, ntire_activations
from kit.export.int8 import Int8Settings
from kit.export.onnx_export import ExportError, check_onnx, check_parity, export_onnx, onnx_param_count
from kit.export.submission import (
    DEFAULT_MAX_PARAMS,
    DEFAULT_OUT_DIR,
    SubmissionError,
    SubmissionResult,
    SubmissionSettings,
    export_submission,
    sha256_file,
)

__all__ = [
    "DEFAULT_MAX_PARAMS",
    "DEFAULT_OUT_DIR",
    "MACS_METHOD",
    "Budget",
    "BudgetError",
    "ChallengeCounts",
    "ExportError",
    "SubmissionError",
    "SubmissionResult",
    "SubmissionSettings",
    "Int8Settings",
    "budget_violations",
    "challenge_counts",
    "check_onnx",
    "check_parity",
    "count_macs",
    "export_onnx",
    "export_submission",
    "fvcore_flops",
    "measure_budget",
    "ntire_activations",
    "onnx_param_count",
    "sha256_file",
]
