"""Published weights into a network (``path.pretrain_network_g``), strictly, and what foreign weights look like.

BasicSR's ``SRModel`` loads ``path.pretrain_network_g`` through ``load_network`` (``net_g`` with ``param_key_g``,
default ``params``; the EMA copy with ``params_ema``), which the kit's models
(:class:`kit.models.base_io.SafeModelIO`) route to :func:`load_weights`:

* the file is read safely (:func:`kit.checkpoint.load_checkpoint`: ``.safetensors`` or
  ``torch.load(weights_only=True)``);
* the weights are the checkpoint's ``param_key`` entry, else ``params``, ``params_ema``, ``state_dict``, … , else
  the file itself when it is a bare state dict (:func:`kit.checkpoint.extract_state_dict`), so a published
  ``{'params': ...}`` or bare file gives ``net_g`` and its EMA copy the same weights;
* a key or shape mismatch raises one :class:`~kit.checkpoint.CheckpointError` (:func:`load_into`) naming the
  missing, unexpected and mis-shaped keys and saying what the weights look like (:func:`looks_like`): the network's
  other form (``deploy``), another kit student (key layout), or an architecture spandrel detects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kit.checkpoint import CheckpointError, check_weights, describe_mismatch, extract_state_dict, load_checkpoint
from kit.teachers.auto import detected_id

__all__ = ["found_key", "load_into", "load_weights", "looks_like"]

_DIGITS = re.compile(r"\d+")
_MATCH = 0.9  # share of key patterns two layouts must have in common to be called the same architecture


def found_key(ckpt: Mapping[str, Any], param_key: str | None) -> str:
    """Which entry :func:`~kit.checkpoint.extract_state_dict` takes from ``ckpt``: a key, or ``(bare state dict)``."""
    for key in ([param_key] if param_key else []) + ["params", "params_ema", "state_dict", "model", "net_g"]:
        if isinstance(ckpt.get(key), Mapping):
            return key
    return "(bare state dict)"


def load_weights(
    net: nn.Module,
    path: str | os.PathLike,
    param_key: str | None = "params",
    strict: bool = True,
    explicit: bool = False,
) -> str:
    """Load a checkpoint's weights into ``net`` (safely; strictly unless ``strict=False``).

    Args:
        net: The bare network (no DataParallel wrapper).
        path: ``.pth``/``.pt``/``.ckpt`` or ``.safetensors``.
        param_key: The preferred entry (``params``, ``params_ema``); falls back as described in the module doc.
        strict: Refuse missing or unexpected keys (shapes are always checked).
        explicit: The options name ``param_key``: it must be in the file (no fallback; the error lists the keys).

    Returns:
        The entry that was loaded (``params``, ``params_ema``, ``(bare state dict)``, ...).

    Raises:
        CheckpointError: unreadable or unsafe file, or weights that do not fit ``net`` (the message names the keys
            and what the weights look like).
    """
    ckpt = load_checkpoint(path)
    key = found_key(ckpt, param_key)
    state = extract_state_dict(ckpt, param_key, explicit=explicit)
    load_into(net, state, f"checkpoint '{path}' [{key}]", strict=strict)
    return key


def load_into(net: nn.Module, state: Mapping[str, torch.Tensor], source: str, strict: bool = True) -> None:
    """``net.load_state_dict`` with one readable error instead of torch's list of every key.

    The error names the missing, unexpected and mis-shaped keys (a few of each) and what the weights look like
    (:func:`looks_like`).
    """
    expected = net.state_dict()
    summary = describe_mismatch(expected, state)
    if summary and (strict or any(k in state and expected[k].shape != state[k].shape for k in expected)):
        raise CheckpointError(
            f"{source} does not fit {type(net).__name__} ({len(expected)} tensors): {summary}. "
            "Check that network options (type, widths, depths, scale) match the ones it was trained with. "
            + _looks_like(state, net)
        )
    check_weights(expected, state, source)  # int8/bool or NaN/Inf weights would load without a word
    net.load_state_dict(dict(state), strict=strict)


def _looks_like(state: Mapping[str, torch.Tensor], net: nn.Module) -> str:
    """:func:`looks_like`, or nothing if the guess itself fails (the mismatch error must still show)."""
    try:
        return looks_like(state, net)
    except Exception:  # a guess is a hint; never let it hide the real error
        return ""


def _patterns(keys: Any) -> set[str]:
    return {_DIGITS.sub("#", k) for k in keys}


def _similarity(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(1, len(a | b))


def _meta_state(cls: type[nn.Module], kwargs: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
    try:
        with torch.device("meta"):
            return cls(**kwargs).state_dict()
    except Exception:  # a class that cannot be built with these arguments has no layout to compare
        return None


def _same_layout(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(tuple(a[k].shape) == tuple(b[k].shape) for k in a)


def _other_form(state: Mapping[str, torch.Tensor], net: nn.Module) -> str | None:
    """The weights are ``net``'s fused (or training) form: say to flip ``deploy``."""
    config, deploy = getattr(net, "config", None), getattr(net, "deploy", None)
    if not isinstance(config, Mapping) or not isinstance(deploy, bool):
        return None
    other = _meta_state(type(net), {**config, "deploy": not deploy})
    if other is None or not _same_layout(other, state):
        return None
    form = "fused (deployed)" if not deploy else "training (unfused)"
    return f"These are the {form} weights of this {type(net).__name__}: set deploy: {str(not deploy).lower()}."


def _kit_student(state: Mapping[str, torch.Tensor]) -> tuple[str, float] | None:
    """The kit student whose default key layout is closest to the weights' (digits ignored), with the share."""
    from basicsr.utils.registry import ARCH_REGISTRY

    patterns = _patterns(state)
    best = None
    for name, cls in sorted(ARCH_REGISTRY, key=lambda item: item[0]):
        if not cls.__module__.startswith("kit.archs"):
            continue
        layout = _meta_state(cls, {})
        if layout is None:
            continue
        share = _similarity(patterns, _patterns(layout))
        if best is None or share > best[1]:
            best = (name, share)
    return best if best is not None and best[1] >= _MATCH else None


def _span_entry(state: Mapping[str, torch.Tensor]) -> str:
    from kit.archs.span_student import span_arguments

    try:
        args = span_arguments(state)
    except (KeyError, ValueError):
        return "{type: SPANStudent, ...}"
    return "{type: SPANStudent, " + ", ".join(f"{k}: {v}" for k, v in args.items()) + "}"


def looks_like(state: Mapping[str, torch.Tensor], net: nn.Module) -> str:
    """A sentence saying what ``state`` looks like, to append to a key-mismatch error about ``net``."""
    declared = type(net).__name__
    other = _other_form(state, net)
    if other:
        return other
    student = _kit_student(state)
    arch = detected_id(state)
    if student is not None:
        name, share = student
        entry = _span_entry(state) if name == "SPANStudent" else f"{{type: {name}, ...}}"
        if name == declared:
            return (
                f"Their key layout is {declared}'s ({share:.0%} of key patterns shared): the same architecture with "
                f"other arguments; set network_g to the ones it was trained with, e.g. {entry}."
            )
        share_text = f"{share:.0%} of key patterns shared"
        return f"They look like {name} weights ({share_text}), not {declared}: network_g: {entry}."
    if arch == "SPAN":
        return f"They look like SPAN weights (spandrel): network_g: {_span_entry(state)}."
    if arch is not None:
        return (
            f"They look like {arch} weights (spandrel), not {declared}: no kit student has that layout; use them as a "
            "teacher (network_t: {type: AutoTeacher}) or choose network_g to match."
        )
    return "Neither spandrel nor the kit's students recognise these weights: check that the file is the right one."
