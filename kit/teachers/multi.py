"""Several teachers: the ``teachers:`` options section, loading them all, and their weighted mean output.

Two options forms, never both in one file::

    # one teacher (BasicSR's names)
    network_t: {type: RRDBNet, num_in_ch: 3, num_out_ch: 3, num_feat: 64, num_block: 23, scale: 4}
    path:
      pretrain_network_t: experiments/pretrained/rrdb.pth
      param_key_t: params_ema          # optional (default params_ema, falls back to params / a bare dict)
      strict_load_t: true              # optional

    # several teachers, one entry each (weight optional, default 1; weights are normalised to sum 1)
    teachers:
      rrdb: {network: {type: RRDBNet, num_in_ch: 3, num_out_ch: 3, scale: 4}, checkpoint: pretrained/a.pth, weight: 0.5}
      swin: {network: {type: AutoTeacher}, checkpoint: pretrained/b.safetensors, weight: 0.5}

Relative checkpoint paths are resolved against the repo root (:func:`kit.options.resolve_path`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from kit.checkpoint import CheckpointError
from kit.options import OptionsError, check_name, resolve_path
from kit.schema import short
from kit.teachers.errors import TeacherError
from kit.teachers.loading import TeacherInfo, load_teacher_with_info

ENTRY_KEYS = ("network", "checkpoint", "weight", "param_key", "strict")
SINGLE_TEACHER_NAME = "teacher"


class LoadedTeacher(NamedTuple):
    """One frozen teacher: ``net, weight, info = teachers[name]``."""

    net: nn.Module
    weight: float
    info: TeacherInfo


def teacher_entries(opt: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Normalise an options dict's teacher(s) into validated ``teachers:`` entries.

    Args:
        opt: the whole options dict (``network_t`` + ``path.pretrain_network_t``, or ``teachers:``).

    Returns:
        ``{name: {network, checkpoint, weight, param_key, strict}}`` with every key filled and checkpoint
        paths resolved; the single-teacher form is named ``"teacher"``. Empty when there is no teacher.

    Raises:
        TeacherError: both forms are present, or an entry is invalid (the message names it).
    """
    if "teachers" in opt and "network_t" in opt:
        raise TeacherError("options have both 'network_t' and 'teachers:'; keep one (one teacher fits in 'teachers:')")
    if "teachers" in opt:
        return _validate(opt["teachers"])
    if "network_t" not in opt:
        return {}
    path = opt.get("path") or {}
    entry = {"network": opt["network_t"], "checkpoint": path.get("pretrain_network_t")}
    if path.get("param_key_t") is not None:
        entry["param_key"] = path["param_key_t"]
    if path.get("strict_load_t") is not None:
        entry["strict"] = path["strict_load_t"]
    return _validate({SINGLE_TEACHER_NAME: entry}, single=True)


def check_teacher_files(entries: Mapping[str, Mapping[str, Any]], where: str = "") -> None:
    """Raise ``FileNotFoundError`` naming the teacher whose checkpoint file does not exist."""
    for name, e in entries.items():
        if e.get("checkpoint") and not Path(e["checkpoint"]).is_file():
            raise FileNotFoundError(
                f"{where}teacher '{name}' checkpoint '{e['checkpoint']}' does not exist; "
                "fix the path (or set path.teacher_recipe so that the teacher is trained first)"
            )


def load_teachers(
    entries: Mapping[str, Mapping[str, Any]], scale: int | None = None, channels: int = 3
) -> dict[str, LoadedTeacher]:
    """Validate every entry, then load each teacher frozen (see :func:`kit.teachers.load_teacher`).

    Args:
        entries: a ``teachers:`` section (or :func:`teacher_entries`' output).
        scale: the task's scale; every teacher must match it (and ``channels``), else loading fails.
        channels: image channels of the task when ``scale`` is given.

    Returns:
        ``{name: LoadedTeacher(net, weight, info)}`` in the entries' order, weights normalised to sum 1.
    """
    valid = _validate(entries)
    total = sum(e["weight"] for e in valid.values())
    out = {}
    for name, e in valid.items():
        try:
            net, info = load_teacher_with_info(
                e["network"], e["checkpoint"], scale, e["param_key"], e["strict"], channels
            )
        except (TeacherError, CheckpointError) as err:
            raise type(err)(f"teacher '{name}': {err}") from err
        out[name] = LoadedTeacher(net, e["weight"] / total, info)
    return out


def teachers_from_options(opt: Mapping[str, Any]) -> dict[str, LoadedTeacher]:
    """Load the teacher(s) an options dict declares, checked against its top-level ``scale``."""
    return load_teachers(teacher_entries(opt), scale=opt.get("scale"))


def load_teachers_frozen_rng(opt: Mapping[str, Any]) -> dict[str, LoadedTeacher]:
    """:func:`teachers_from_options` without drawing from the global random streams.

    Building a network draws its initial weights, which the checkpoint then overwrites. Under a forked RNG the
    student's initialisation and the data order of a run do not depend on whether, when or how many teachers
    were loaded (the teacher cache loads them before the student exists, a live teacher after).
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        return teachers_from_options(opt)


def weighted_mean_output(outputs: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """Σ wᵢ·outputᵢ / Σ wᵢ over the teachers (the ensemble target for output-KD).

    Args:
        outputs: ``{name: tensor}``, all the same shape, e.g. ``(N, C, H, W)``.
        weights: ``{name: weight > 0}`` with exactly the same names (normalised here).

    Returns:
        A tensor of the outputs' shape.
    """
    if not outputs:
        raise TeacherError("weighted_mean_output needs at least one teacher output")
    if set(outputs) != set(weights):
        missing, extra = sorted(set(outputs) - set(weights)), sorted(set(weights) - set(outputs))
        raise TeacherError(f"teacher names differ: outputs without a weight {missing}, weights without output {extra}")
    for name, w in weights.items():
        _check_weight(w, f"weight of teacher '{name}'")
    shapes = {name: tuple(t.shape) for name, t in outputs.items()}
    if len(set(shapes.values())) > 1:
        raise TeacherError(f"teacher outputs differ in shape {shapes}; every teacher must map the input alike")
    total = float(sum(weights.values()))
    names = list(outputs)
    acc = outputs[names[0]] * (weights[names[0]] / total)
    for name in names[1:]:
        acc = acc + outputs[name] * (weights[name] / total)
    return acc


def _validate(entries: Any, single: bool = False) -> dict[str, dict[str, Any]]:
    where = "network_t" if single else "teachers"
    if not isinstance(entries, Mapping) or not entries:
        raise TeacherError(
            f"'teachers:' must map names to entries like {{network: {{type: ...}}, checkpoint: ...}}, got {entries!r}"
        )
    out = {}
    for name, entry in entries.items():
        label = where if single else f"teachers.{name}"
        if not single:  # a teacher's name is a folder of the teacher cache
            try:
                check_name(name, "a teacher's name under teachers:")
            except OptionsError as err:
                raise TeacherError(str(err)) from err
        if not isinstance(entry, Mapping):
            raise TeacherError(f"{label}: expected a mapping with {', '.join(ENTRY_KEYS)}, got {short(entry)}")
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:
            raise TeacherError(f"{label}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(ENTRY_KEYS)}")
        network = entry.get("network")
        if not isinstance(network, Mapping) or "type" not in network:
            raise TeacherError(
                f"{label}: 'network' must be a mapping with 'type' (e.g. {{type: AutoTeacher}}), got {network!r}"
            )
        checkpoint = entry.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise TeacherError(f"{label}: 'checkpoint' must be a file path, got {checkpoint!r}")
        weight = entry.get("weight", 1.0)
        _check_weight(weight, f"{label}: weight")
        param_key = entry.get("param_key")  # None: params_ema, else params (named: it must be there)
        if param_key is not None and not isinstance(param_key, str):
            raise TeacherError(f"{label}: 'param_key' must be a string such as params_ema, got {param_key!r}")
        strict = entry.get("strict", True)
        if not isinstance(strict, bool):
            raise TeacherError(f"{label}: 'strict' must be true or false, got {strict!r}")
        out[str(name)] = {
            "network": dict(network),
            "checkpoint": resolve_path(checkpoint),
            "weight": float(weight),
            "param_key": param_key,
            "strict": strict,
        }
    return out


def _check_weight(weight: Any, label: str) -> None:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        raise TeacherError(f"{label} must be a positive number, got {weight!r}")
