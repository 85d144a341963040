"""Feature distillation plumbing: record features by module path, connect student to teacher shapes.

- :mod:`kit.distill.recorder` — :class:`FeatureRecorder` (forward hooks, ``"path#k"`` specs).
- :mod:`kit.distill.connectors` — ``CONNECTOR_REGISTRY``, :func:`build_connector`, :class:`ConvConnector`.
"""

from __future__ import annotations

from kit.distill.connectors import CONNECTOR_REGISTRY, ConvConnector, IdentityConnector, build_connector
from kit.distill.recorder import FeatureRecorder, closest_paths, module_paths, parse_spec

__all__ = [
    "CONNECTOR_REGISTRY",
    "ConvConnector",
    "FeatureRecorder",
    "IdentityConnector",
    "build_connector",
    "closest_paths",
    "module_paths",
    "parse_spec",
]
