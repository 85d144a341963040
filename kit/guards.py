"""Bounds on what the kit reads and what its dependencies may write, applied at ``import kit`` before they load.

- **One pixel limit** for every image reader: :data:`MAX_IMAGE_PIXELS`. The kit's readers (:mod:`kit.images`,
  the dataset checks of :mod:`kit.data.checks`, hence training, ``kit-eval``, the teacher cache) check an image's
  header against it before decoding; OpenCV, which BasicSR's datasets decode with, gets the same limit through
  ``OPENCV_IO_MAX_IMAGE_PIXELS`` (read once, when OpenCV loads — so it is set here, before ``basicsr`` imports it).
- **Nothing written outside the repository by a dependency**: ``import onnxruntime`` writes a telemetry
  database and a device id under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/`` unless
  ``ORT_DISABLE_TELEMETRY`` is set (it is, here: off); matplotlib (the training curves) writes its font cache
  under ``~/.cache/matplotlib`` unless ``MPLCONFIGDIR`` points elsewhere (here: ``<repo>/.cache/matplotlib``).
  A value the user already set in the environment is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MAX_IMAGE_PIXELS", "apply"]

MAX_IMAGE_PIXELS = 1 << 26  # 67,108,864 pixels (8192 x 8192); DIV2K's largest images are 2040 x 2040
CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache"


def apply() -> None:
    """Set the environment variables above (only those the user has not set)."""
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("MPLCONFIGDIR", str(CACHE_DIR / "matplotlib"))
