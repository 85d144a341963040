"""The teacher loader's error for options that cannot work (checkpoint problems raise ``CheckpointError``)."""

from __future__ import annotations


class TeacherError(ValueError):
    """A teacher that cannot be used as declared: bad options, or scale/channels that disagree with the task."""
