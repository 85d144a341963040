"""Evaluation without ground truth: LQ-only folders, and the teacher's images as the reference.

A distilled student's first yardstick is its teacher: ``kit-eval --against-teacher`` measures every model *to
the teacher's output* (and to the GT where there is one). For a teacher too slow to rerun (Real-ESRGAN on a
CPU), its outputs can be computed once and read from a folder (``--teacher-images DIR``)::

    source = with_teacher_images(lq_pairs("RealSRSet/", 4), "out/teacher/", 4)
    result = evaluate({"student": student}, source, 4)
    result.means("teacher")["student"]["psnr"]          # PSNR of the student to the teacher
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from kit.evaluation.sources import ImagePair, PairSource
from kit.images import list_images, read_image

TEACHER = "teacher"


def lq_pairs(lq_dir: str | os.PathLike, scale: int) -> PairSource:
    """The images of an LQ folder without GT (``gt`` is ``None``); a reference must come from the teacher.

    Raises:
        ValueError: the folder holds no images.
    """
    files = list_images(lq_dir)
    if not files:
        raise ValueError(f"no images in LQ folder '{lq_dir}'")

    def loader(path: Path) -> Callable[[], ImagePair]:
        return lambda: ImagePair(path.stem, read_image(path), None)

    return PairSource(f"LQ '{lq_dir}' (no GT), x{scale}", [(p.stem, loader(p)) for p in files])


def with_teacher_images(source: PairSource, teacher_dir: str | os.PathLike, scale: int) -> PairSource:
    """``source`` with each image's teacher output read from ``teacher_dir`` (same file stem) as reference.

    Raises:
        ValueError: images of ``source`` without a teacher file (listed); when loading, a teacher image that
            is not ``scale`` × its LQ input.
    """
    by_stem = {p.stem: p for p in list_images(teacher_dir)}
    missing = [name for name, _ in source.loaders if name not in by_stem]
    if missing:
        shown = ", ".join(missing[:10]) + (f", ... ({len(missing) - 10} more)" if len(missing) > 10 else "")
        raise ValueError(f"'{teacher_dir}' has no teacher image for {len(missing)} input(s): {shown}")

    def loader(name: str, load: Callable[[], ImagePair]) -> Callable[[], ImagePair]:
        def load_with_teacher() -> ImagePair:
            pair = load()
            teacher = read_image(by_stem[name])
            h, w = pair.lq.shape[:2]
            if teacher.shape[:2] != (h * scale, w * scale):
                raise ValueError(
                    f"teacher image '{by_stem[name]}' is {teacher.shape[0]}x{teacher.shape[1]}, but its input "
                    f"'{name}' is {h}x{w} (x{scale}: {h * scale}x{w * scale}); were they made from these inputs?"
                )
            return replace(pair, refs={**pair.refs, TEACHER: teacher})

        return load_with_teacher

    return PairSource(
        f"{source.description}; teacher images from '{teacher_dir}'",
        [(name, loader(name, load)) for name, load in source.loaders],
    )
