"""Load one teacher network, frozen: a declared BasicSR/kit architecture, or one detected from its checkpoint.

Two forms of ``network_t`` (or of ``network:`` in a ``teachers:`` entry)::

    network_t: {type: RRDBNet, num_in_ch: 3, num_out_ch: 3, num_feat: 64, num_block: 23, num_grow_ch: 32, scale: 4}
    network_t: {type: AutoTeacher}     # architecture, scale and channels read from the checkpoint (spandrel)

The first is built with ``basicsr.archs.build_network`` and gets the checkpoint's ``params_ema``/``params``
(or a bare state dict). The second is handled here, before BasicSR's registry: it has no constructor
arguments to build from (see :mod:`kit.teachers.auto`). Every checkpoint is read by
:func:`kit.checkpoint.load_checkpoint`, which never unpickles code.

The returned network is in ``eval()`` as a whole (BasicSR's SwinIR has drop-path on by default) and no
parameter requires a gradient. Keep it that way: never call ``.train()`` on it; :func:`freeze` re-freezes.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from basicsr.utils import get_root_logger
from torch import nn

from kit.checkpoint import (
    CheckpointError,
    check_weights,
    chosen_key,
    describe_mismatch,
    extract_state_dict,
    load_checkpoint,
)
from kit.registry import OptionsKeyError, build_network, lookup
from kit.schema import short
from kit.teachers.auto import AUTO_TYPE, check_auto_options, detect_from_state, looks_like
from kit.teachers.errors import TeacherError

_IN_KEYS = ("num_in_ch", "in_chans", "in_channels", "in_nc", "in_ch")
_PROBE_SIZE = 16


@dataclass(frozen=True)
class TeacherInfo:
    """What is known about a loaded teacher.

    Attributes:
        architecture: class name of the network (``RRDBNet``, ``SwinIR``, ...).
        source: ``"declared"`` (built from the options) or ``"spandrel"`` (detected from the checkpoint).
        scale: output size / input size, ``None`` if it could not be measured.
        in_channels: image channels the network takes.
        out_channels: image channels it returns (``None`` if not measured).
        num_params: number of parameter elements.
        checkpoint: the weights file, ``None`` for random weights.
        detected_as: spandrel's architecture id (``ESRGAN``, ``Compact``, ``SwinIR``...) for detected teachers.
        tags: spandrel's tags (``64nf``, ``23nb``...) for detected teachers.
    """

    architecture: str
    source: str
    scale: int | None
    in_channels: int
    out_channels: int | None
    num_params: int
    checkpoint: str | None
    detected_as: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        """One line for logs and CLI reports."""
        scale = f"×{self.scale}" if self.scale is not None else "scale unknown"
        arch = f"{self.architecture} {scale}" + (f" (spandrel: {self.detected_as})" if self.detected_as else "")
        weights = self.checkpoint or "random weights"
        return (
            f"{arch}, {self.in_channels}→{self.out_channels} channels, "
            f"{self.num_params / 1e6:.3f}M params, from {weights}"
        )


def freeze(net: nn.Module) -> nn.Module:
    """Put the whole network in ``eval()`` and stop every parameter from requiring a gradient."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_teacher(
    network_opt: Mapping[str, Any],
    checkpoint: str | os.PathLike | None,
    scale: int | None = None,
    param_key: str | None = None,
    strict: bool = True,
    channels: int = 3,
) -> nn.Module:
    """Build or detect a teacher, load its weights and freeze it.

    See :func:`load_teacher_with_info`, which also returns what is known about the teacher.
    """
    return load_teacher_with_info(network_opt, checkpoint, scale, param_key, strict, channels)[0]


def load_teacher_with_info(
    network_opt: Mapping[str, Any],
    checkpoint: str | os.PathLike | None,
    scale: int | None = None,
    param_key: str | None = None,
    strict: bool = True,
    channels: int = 3,
) -> tuple[nn.Module, TeacherInfo]:
    """Build or detect a teacher, load its weights and freeze it.

    Args:
        network_opt: ``{type: <registered arch>, ...}`` or ``{type: AutoTeacher}``.
        checkpoint: ``.pth``/``.safetensors`` weights. ``None`` builds a declared architecture with random
            weights (for inspection only; logged as a warning); ``AutoTeacher`` always needs one.
        scale: the task's scale. When given, the teacher's scale must equal it and its input and output
            channels must equal ``channels``; otherwise loading fails with both numbers.
        param_key: key holding the weights in a BasicSR checkpoint, named by the options: it must be there.
            ``None``: ``params_ema``, else ``params``, else a bare state dict (see
            :func:`kit.checkpoint.extract_state_dict`); the log says which key was read.
        strict: every key must match (declared architectures; spandrel always loads strictly).
        channels: image channels expected when ``scale`` is given (3 = RGB).

    Returns:
        The frozen network (``eval()``, no parameter requires grad) on the CPU, and its :class:`TeacherInfo`.

    Raises:
        CheckpointError: the checkpoint is unsafe, unreadable, or does not fit the network.
        TeacherError: bad options, or scale/channels disagree with ``scale``/``channels``.
    """
    if not isinstance(network_opt, Mapping) or "type" not in network_opt:
        raise TeacherError(
            f"teacher network options must be a mapping with 'type' (e.g. {{type: RRDBNet, ...}} or "
            f"{{type: {AUTO_TYPE}}}), got {short(network_opt)}"
        )
    ckpt_path = str(checkpoint) if checkpoint is not None else None
    if network_opt["type"] == AUTO_TYPE:
        net, info = _detect_teacher(network_opt, ckpt_path, param_key)
    else:
        net, info = _declared_teacher(network_opt, ckpt_path, param_key, strict)
    freeze(net)
    if scale is not None:
        _check_contract(info, scale, channels)
    get_root_logger().info(f"Teacher: {info.describe()} (frozen, eval).")
    return net, info


def _detect_teacher(
    network_opt: Mapping[str, Any], ckpt_path: str | None, param_key: str | None
) -> tuple[nn.Module, TeacherInfo]:
    """``{type: AutoTeacher}``: spandrel reads architecture, scale and channels from the checkpoint."""
    check_auto_options(network_opt)
    if ckpt_path is None:
        raise TeacherError(
            f"{AUTO_TYPE} reads the architecture from the checkpoint, so it needs one: set "
            "path.pretrain_network_t (or 'checkpoint:' in the teachers entry), or declare the architecture"
        )
    state = _read_weights(ckpt_path, param_key)
    net, detected = detect_from_state(state, f"checkpoint '{ckpt_path}'")
    check_weights(net.state_dict(), state, f"teacher checkpoint '{ckpt_path}'")  # spandrel casts as torch does
    info = TeacherInfo(
        architecture=type(net).__name__,
        source="spandrel",
        scale=detected.scale,
        in_channels=detected.input_channels,
        out_channels=detected.output_channels,
        num_params=_num_params(net),
        checkpoint=ckpt_path,
        detected_as=str(detected.architecture.id),
        tags=tuple(detected.tags),
    )
    return net, info


def _declared_teacher(
    network_opt: Mapping[str, Any], ckpt_path: str | None, param_key: str | None, strict: bool
) -> tuple[nn.Module, TeacherInfo]:
    """A registered architecture built from its options, its weights loaded, scale measured by a probe."""
    net, in_ch = _build_declared(network_opt)
    if ckpt_path is None:
        get_root_logger().warning(f"Teacher {network_opt['type']} has no checkpoint: random weights.")
    else:
        state = _read_weights(ckpt_path, param_key)
        _load_declared(net, state, ckpt_path, str(network_opt["type"]), strict)
    freeze(net)
    measured_scale, out_ch = _probe(net, in_ch, network_opt)
    info = TeacherInfo(
        architecture=type(net).__name__,
        source="declared",
        scale=measured_scale,
        in_channels=in_ch,
        out_channels=out_ch,
        num_params=_num_params(net),
        checkpoint=ckpt_path,
    )
    return net, info


def _read_weights(ckpt_path: str, param_key: str | None) -> dict[str, torch.Tensor]:
    """The teacher's weights: the named ``param_key`` (an error listing the keys when absent), else the default
    order; the log says which key was read (``path:param_key_t=params_foo`` never loads ``params`` silently)."""
    ckpt = load_checkpoint(ckpt_path)
    state = extract_state_dict(ckpt, param_key or "params_ema", explicit=param_key is not None)
    get_root_logger().info(f"Teacher weights: '{ckpt_path}' [{chosen_key(ckpt, param_key or 'params_ema')}]")
    return state


def _num_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _build_declared(network_opt: Mapping[str, Any]) -> tuple[nn.Module, int]:
    """Build a registered architecture by the one ``type:`` rule (keys a ``**kwargs`` would swallow refused)."""
    try:
        net = build_network(dict(network_opt), "teacher")
    except OptionsKeyError as err:
        hint = f"; or let spandrel detect it: {{type: {AUTO_TYPE}}}" if "unknown type" in str(err) else ""
        raise TeacherError(f"{err}{hint}") from err
    except TypeError as err:
        raise TeacherError(f"cannot build teacher {short(network_opt['type'])} from its options: {err}") from err
    return net, declared_in_channels(network_opt)


def declared_in_channels(network_opt: Mapping[str, Any]) -> int:
    """Image channels a registered architecture takes: its ``num_in_ch``/``in_chans``/... option or default, else 3."""
    from basicsr.utils.registry import ARCH_REGISTRY

    params = inspect.signature(lookup(ARCH_REGISTRY, network_opt["type"], "teacher").__init__).parameters
    bound = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
    bound.update({k: v for k, v in network_opt.items() if k != "type"})
    return next((int(bound[k]) for k in _IN_KEYS if isinstance(bound.get(k), int)), 3)


def _load_declared(net: nn.Module, state: Mapping[str, torch.Tensor], path: str, type_name: str, strict: bool) -> None:
    """``load_state_dict`` with one summarised error and, if spandrel knows the weights, what they look like."""
    expected = net.state_dict()
    summary = describe_mismatch(expected, state)
    shape_clash = any(k in state and tuple(expected[k].shape) != tuple(state[k].shape) for k in expected)
    if summary and (strict or shape_clash):
        raise CheckpointError(
            f"checkpoint '{path}' does not fit teacher {type_name} ({len(expected)} tensors): {summary}. "
            f"{looks_like(state, type_name)}"
        )
    check_weights(expected, state, f"teacher checkpoint '{path}'")  # int8/bool or NaN weights load silently
    net.load_state_dict(dict(state), strict=strict)


def _probe(net: nn.Module, in_ch: int, network_opt: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """Measure scale and output channels with one small forward pass (exact for any architecture)."""
    window = network_opt.get("window_size")
    size = _PROBE_SIZE
    if isinstance(window, int) and window > 0:
        size = window * math.ceil(_PROBE_SIZE / window)
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, in_ch, size, size))
    except Exception as err:  # any architecture may reject the probe; report, never guess
        get_root_logger().warning(f"Could not probe teacher {type(net).__name__} at {size}×{size}: {err}")
        return None, None
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        return None, None
    h, w = out.shape[-2:]
    if h != w or h % size:
        return None, int(out.shape[1])
    return h // size, int(out.shape[1])


def _check_contract(info: TeacherInfo, scale: int, channels: int) -> None:
    what = f"teacher {info.architecture}" + (f" (spandrel: {info.detected_as})" if info.detected_as else "")
    what += f" from '{info.checkpoint}'" if info.checkpoint else " (random weights)"
    if info.scale is None:
        raise TeacherError(f"{what}: could not measure its scale to check it against the options' scale {scale}")
    if info.scale != scale:
        raise TeacherError(
            f"{what} upscales ×{info.scale} but the options say scale {scale}; use a ×{scale} teacher "
            f"or set scale: {info.scale}"
        )
    if info.in_channels != channels or info.out_channels != channels:
        raise TeacherError(
            f"{what} maps {info.in_channels}→{info.out_channels} channels but the task uses {channels}-channel "
            "images; use a teacher trained on the same kind of images"
        )
