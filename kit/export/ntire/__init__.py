"""The NTIRE Efficient SR package (one torch-only model file, its state dict, the ``select_model`` branch)."""

from __future__ import annotations

from kit.export.ntire.families import FAMILIES, Family, family_for
from kit.export.ntire.package import (
    NTIRE_TOLERANCE,
    NtireError,
    NtirePackage,
    check_request,
    class_name,
    verify_package,
    write_package,
)

__all__ = [
    "FAMILIES",
    "NTIRE_TOLERANCE",
    "Family",
    "NtireError",
    "NtirePackage",
    "check_request",
    "class_name",
    "family_for",
    "verify_package",
    "write_package",
]
