"""Distillation kit for size-capped image-restoration challenges, built on BasicSR.

Importing ``kit`` adapts BasicSR 1.4.2 to current torch (:mod:`kit.compat`) and registers the kit's
architectures, losses, datasets, metrics and models into BasicSR's registries.
"""

from __future__ import annotations

from kit import compat

compat.install()

from kit import archs, data, distill, losses, metrics, models, teachers  # noqa: E402,F401  (registration)

__version__ = "0.1.0"
