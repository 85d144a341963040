"""Connectors: small trainable modules that map a student feature into the teacher feature's shape.

They are training-only parts of DistillModel (optimizer, DDP, checkpoints), never part of the exported
student. Built from options by the one YAML rule: ``type:`` picks the class in ``CONNECTOR_REGISTRY``,
the other keys are its constructor arguments::

    connector: {type: ConvConnector, in_channels: 48, out_channels: 64, norm: null, act: null}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from basicsr.utils.registry import Registry
from torch import Tensor, nn

from kit.registry import build_from_registry

__all__ = ["CONNECTOR_REGISTRY", "ConvConnector", "IdentityConnector", "build_connector"]

CONNECTOR_REGISTRY = Registry("connector")

_NORMS = ("bn", None)
_ACTS = ("relu", "lrelu", "gelu", "prelu", None)
_RESIZE_MODES = ("bilinear", "bicubic", "nearest", "area", None)


def build_connector(opt: Mapping[str, Any] | None, where: str = "connector") -> nn.Module | None:
    """Build a connector from its options: ``type`` picks the class, the other keys are its arguments.

    Args:
        opt: e.g. ``{"type": "ConvConnector", "in_channels": 48, "out_channels": 64}``; ``None`` (no
            connector in the pair) gives ``None``.
        where: The options key, for errors (``train:distill:<pair>:connector``).

    Returns:
        The connector module, or ``None``.

    Raises:
        OptionsKeyError: ``type`` is missing or unknown (the message lists the closest registered names),
            or an argument is unknown or missing (the message names the key, the class and its arguments).
    """
    if opt is None:
        return None
    return build_from_registry(CONNECTOR_REGISTRY, dict(opt) if isinstance(opt, Mapping) else opt, where)


def _check_choice(cls_name: str, arg: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        shown = ", ".join("null" if c is None else c for c in choices)
        raise ValueError(f"{cls_name} {arg}={value!r} is not supported; use one of: {shown}")


def _resize(x: Tensor, size: tuple[int, int] | None, mode: str | None) -> Tensor:
    if mode is None or size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    align = False if mode in ("bilinear", "bicubic") else None
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=align)


@CONNECTOR_REGISTRY.register()
class ConvConnector(nn.Module):
    """k x k convolution, optional BatchNorm and activation, optional resize to the teacher's H, W.

    The FitNets regressor (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015, arXiv 1412.6550).
    The defaults (1x1 conv + BN + ReLU) are the seed's mmrazor ``ConvModuleConnector`` setting.

    The seed's advice is to match the connector's activation to the activation of the teacher feature
    it regresses onto. Restoration features (RRDBNet, EDSR, SwinIR bodies) are usually signed,
    pre-activation conv outputs: a ReLU would make the negative half unreachable, so ``act: null``
    (often with ``norm: null``) is then the right choice.

    YAML::

        connector: {type: ConvConnector, in_channels: 48, out_channels: 64, kernel_size: 1,
                    norm: bn, act: relu, resize: null}

    Args:
        in_channels: channels of the student feature.
        out_channels: channels of the teacher feature.
        kernel_size: odd conv kernel size (padding ``kernel_size // 2`` keeps H, W).
        norm: ``"bn"`` (BatchNorm2d) or ``None``. The conv has a bias only without a norm.
        act: ``"relu"``, ``"lrelu"`` (slope 0.2, as BasicSR's RRDBNet), ``"gelu"``, ``"prelu"``
            (one slope per channel) or ``None``.
        resize: interpolation mode (``"bilinear"``, ``"bicubic"``, ``"nearest"``, ``"area"``) used when
            :meth:`forward` gets a different ``size``; ``None`` never resizes (a spatial mismatch then
            fails the pair's shape check, with both shapes in the message).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        norm: str | None = "bn",
        act: str | None = "relu",
        resize: str | None = None,
    ) -> None:
        super().__init__()
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"ConvConnector {arg} must be a positive integer, got {value!r}")
        if not (isinstance(kernel_size, int) and kernel_size > 0 and kernel_size % 2 == 1):
            raise ValueError(
                f"ConvConnector kernel_size must be a positive odd integer (1, 3, ...), got {kernel_size!r}"
            )
        _check_choice("ConvConnector", "norm", norm, _NORMS)
        _check_choice("ConvConnector", "act", act, _ACTS)
        _check_choice("ConvConnector", "resize", resize, _RESIZE_MODES)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resize = resize
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm is None)
        self.norm = nn.BatchNorm2d(out_channels) if norm == "bn" else nn.Identity()
        self.act = {
            "relu": lambda: nn.ReLU(inplace=True),
            "lrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
            "gelu": nn.GELU,
            "prelu": lambda: nn.PReLU(out_channels),
            None: nn.Identity,
        }[act]()

    def forward(self, x: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Map a student feature (N, in_channels, H, W) to (N, out_channels, H', W').

        Args:
            x: the student feature.
            size: the teacher feature's (H, W); used only when ``resize`` is set and it differs.
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ConvConnector expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}; "
                "set in_channels to the student feature's channels"
            )
        return _resize(self.act(self.norm(self.conv(x))), size, self.resize)


@CONNECTOR_REGISTRY.register()
class IdentityConnector(nn.Module):
    """No learned mapping, for pairs whose channels already match; optionally resizes to the teacher's H, W.

    Used by FitNets-style feature distillation when no regressor is needed (Romero et al., ICLR 2015).

    YAML::

        connector: {type: IdentityConnector, resize: bilinear}

    Args:
        resize: interpolation mode used when :meth:`forward` gets a different ``size``, or ``None``.
    """

    def __init__(self, resize: str | None = None) -> None:
        super().__init__()
        _check_choice("IdentityConnector", "resize", resize, _RESIZE_MODES)
        self.resize = resize

    def forward(self, x: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Return ``x``, resized to ``size`` when ``resize`` is set and the size differs."""
        return _resize(x, size, self.resize)
