"""Feature pairs: record features by module path, connect student to teacher shapes, wire ``train.distill``.

- :mod:`kit.distill.pairs.recorder` — :class:`FeatureRecorder` (forward hooks, ``"path#k"`` specs).
- :mod:`kit.distill.pairs.connectors` — ``CONNECTOR_REGISTRY``, :func:`build_connector`, :class:`ConvConnector`.
- :mod:`kit.distill.pairs.wiring` — :func:`parse_distill`, :class:`ConnectorBank`, :func:`dry_check`.
- :mod:`kit.distill.pairs.auto` — ``train.distill.auto``: :func:`find_layout` (main blocks, last feature),
  :func:`same_depth`, :func:`auto_entries`, :func:`pairs_yaml`.
- :mod:`kit.distill.pairs.tokens` — :func:`as_map`: token sequences ``(N, L, C)`` read as maps ``(N, C, H, W)``.
"""

from __future__ import annotations

from kit.distill.pairs.connectors import CONNECTOR_REGISTRY, ConvConnector, IdentityConnector, build_connector
from kit.distill.pairs.recorder import FeatureRecorder, closest_paths, module_paths, parse_spec
from kit.distill.pairs.wiring import (
    ConnectorBank,
    DistillOptionsError,
    OutputSpec,
    PairSpec,
    dry_check,
    parse_distill,
)

__all__ = [
    "CONNECTOR_REGISTRY",
    "ConnectorBank",
    "ConvConnector",
    "DistillOptionsError",
    "FeatureRecorder",
    "IdentityConnector",
    "OutputSpec",
    "PairSpec",
    "build_connector",
    "closest_paths",
    "dry_check",
    "module_paths",
    "parse_distill",
    "parse_spec",
]
