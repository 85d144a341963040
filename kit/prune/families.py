"""The registered students a teacher can be pruned into, and how their constructor arguments map to channel groups.

Which channels are coupled is not written here: :mod:`kit.prune.graph` reads it from the network with
torch-pruning's dependency graph. A family only says what the graph cannot: how to read the teacher's arguments
from its weights, which constructor argument sets the size of each channel group (known by the convs that produce it),
how its blocks are named (to drop whole blocks), and how the pruned deployed network becomes the trainable form
that ``network_g`` builds.

Supported: ``SPANStudent`` (any width/depth → smaller; trainable form with its Conv3XC branches set so that fusing
them gives the pruned kernels) and ``RLFNStudent`` (``num_feat``/``mid_feat`` pruned, ``esa_channels`` kept; no
re-parameterisable branch, so the deployed form is the trainable one). Other families are refused in one line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from kit.archs.rlfn_student import RLFNStudent
from kit.archs.span_student import Conv3XC, SPANStudent, span_arguments

__all__ = ["FAMILIES", "PruneFamily", "RlfnFamily", "SpanFamily", "get_family"]

_RLFN_BLOCK = re.compile(r"^body\.(\d+)\.")


class PruneFamily:
    """What :func:`kit.prune.prune_teacher` needs to know about one registered student family."""

    name = ""
    width_argument = "num_feat"
    deploy_argument = False  # True: the deployed form is its own network_g entry (``deploy: true``)

    def teacher_arguments(self, state: Mapping[str, Tensor], options: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor arguments the teacher's weights were built with (``options``: what weights cannot say)."""
        raise NotImplementedError

    def build(self, arguments: Mapping[str, Any], deploy: bool) -> nn.Module:
        """The registered network with these arguments, in its deployed (``deploy``) or trainable form."""
        raise NotImplementedError

    def deployed_teacher(self, state: Mapping[str, Tensor], arguments: Mapping[str, Any]) -> nn.Module:
        """The teacher as plain convolutions (eval mode), its weights loaded strictly."""
        raise NotImplementedError

    def group_argument(self, outputs: Sequence[str]) -> str:
        """The constructor argument that sets the size of the channel group whose producers are ``outputs``."""
        return self.width_argument

    def student_arguments(self, teacher: Mapping[str, Any], width: int, blocks: int) -> dict[str, Any]:
        """The arguments of the student ``width`` wide with ``blocks`` blocks, the rest as the teacher's."""
        return {**teacher, self.width_argument: width, "num_block": blocks}

    def group_width(self, outputs: Sequence[str], arguments: Mapping[str, Any]) -> int:
        """Channels the group whose producers are the convs ``outputs`` has in the network built with ``arguments``."""
        return int(arguments[self.group_argument(outputs)])

    def block_prefix(self, index: int) -> str:
        """State-dict prefix of block ``index`` (0-based), e.g. ``block_1.``."""
        raise NotImplementedError

    def trainable_state(self, deployed: nn.Module, arguments: Mapping[str, Any], seed: int) -> dict[str, Tensor]:
        """The ``network_g`` state dict (trainable form) computing the same function as ``deployed``."""
        return {k: v.detach().clone() for k, v in deployed.state_dict().items()}


class SpanFamily(PruneFamily):
    """``SPANStudent``: every channel group is ``num_feat`` wide; the upsampler's output stays whole."""

    name = "SPANStudent"
    deploy_argument = True

    def teacher_arguments(self, state: Mapping[str, Tensor], options: Mapping[str, Any]) -> dict[str, Any]:
        return span_arguments(state)

    def build(self, arguments: Mapping[str, Any], deploy: bool) -> nn.Module:
        return SPANStudent(**arguments, deploy=deploy)

    def deployed_teacher(self, state: Mapping[str, Tensor], arguments: Mapping[str, Any]) -> nn.Module:
        trainable = "conv_1.sk.weight" in state
        net = self.build(arguments, deploy=not trainable)
        net.load_state_dict(dict(state), strict=True)
        return net.fuse() if trainable else net.eval()

    def block_prefix(self, index: int) -> str:
        return f"block_{index + 1}."

    def trainable_state(self, deployed: nn.Module, arguments: Mapping[str, Any], seed: int) -> dict[str, Tensor]:
        net = self.build(arguments, deploy=False)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, module in net.named_modules():
                if isinstance(module, Conv3XC):
                    kernel = deployed.get_submodule(name).eval_conv
                    set_branches(module, kernel.weight, kernel.bias, generator)
            net.conv_cat.load_state_dict(deployed.conv_cat.state_dict())
            net.upsampler.load_state_dict(deployed.upsampler.state_dict())
        return {k: v.detach().clone() for k, v in net.state_dict().items()}


class RlfnFamily(PruneFamily):
    """``RLFNStudent``: ``num_feat`` and ``mid_feat`` groups are pruned, the ESA branch keeps ``esa_channels``.

    ``img_residual`` cannot be read from the weights: pass it in ``options`` (default ``None``, the paper's RLFN).
    """

    name = "RLFNStudent"

    def teacher_arguments(self, state: Mapping[str, Tensor], options: Mapping[str, Any]) -> dict[str, Any]:
        first = state["conv_first.weight"]
        num_feat, num_in_ch = int(first.shape[0]), int(first.shape[1])
        mid = int(state["body.0.c1_r.weight"].shape[0])
        up = int(state["upsampler.0.weight"].shape[0])
        scale = next((s for s in (4, 3, 2, 1) if up == num_in_ch * s * s), None)
        if scale is None:
            raise ValueError(f"upsampler.0 has {up} output channels: not {num_in_ch}·scale² for a scale in 1–4")
        return dict(
            num_in_ch=num_in_ch,
            num_out_ch=num_in_ch,
            scale=scale,
            num_feat=num_feat,
            num_block=len({int(m.group(1)) for k in state if (m := _RLFN_BLOCK.match(k))}),
            mid_feat=None if mid == num_feat else mid,
            esa_channels=int(state["body.0.esa.conv1.weight"].shape[0]),
            img_residual=options.get("img_residual"),
        )

    def build(self, arguments: Mapping[str, Any], deploy: bool) -> nn.Module:
        return RLFNStudent(**arguments)

    def deployed_teacher(self, state: Mapping[str, Tensor], arguments: Mapping[str, Any]) -> nn.Module:
        net = self.build(arguments, deploy=True)
        net.load_state_dict(dict(state), strict=True)
        return net.eval()

    def group_argument(self, outputs: Sequence[str]) -> str:
        if any(name.endswith((".c1_r", ".c2_r")) for name in outputs):
            return "mid_feat"
        if all(".esa." in name and not name.endswith(".conv4") for name in outputs):
            return "esa_channels"  # esa.conv4's output is multiplied into the features: it is a num_feat group
        return "num_feat"

    def student_arguments(self, teacher: Mapping[str, Any], width: int, blocks: int) -> dict[str, Any]:
        mid = teacher["mid_feat"]
        if mid is not None:  # keep the teacher's ratio of inner to outer channels
            mid = max(1, round(mid * width / teacher["num_feat"]))
        return {**teacher, "num_feat": width, "num_block": blocks, "mid_feat": mid}

    def group_width(self, outputs: Sequence[str], arguments: Mapping[str, Any]) -> int:
        value = arguments[self.group_argument(outputs)]
        return int(arguments["num_feat"] if value is None else value)

    def block_prefix(self, index: int) -> str:
        return f"body.{index}."


FAMILIES: dict[str, PruneFamily] = {f.name: f for f in (SpanFamily(), RlfnFamily())}


def get_family(name: str) -> PruneFamily:
    """The family registered as ``name``.

    Raises:
        ValueError: not a family the kit can prune into (one line: the supported ones and the closest name).
    """
    if name in FAMILIES:
        return FAMILIES[name]
    close = difflib.get_close_matches(name, FAMILIES, n=1)
    hint = f"; closest: {close[0]}" if close else ""
    raise ValueError(
        f"pruning into '{name}' is not supported (supported: {', '.join(FAMILIES)}){hint}; other students "
        "(RepSRStudent, NAFStudent) have no channel-group mapping here"
    )


def set_branches(conv: Conv3XC, weight: Tensor, bias: Tensor, generator: torch.Generator) -> None:
    """Set a trainable Conv3XC so that its fused kernel is ``(weight (O, I, 3, 3), bias (O,))``.

    ``conv.0`` is ``A`` (G·I × I) and ``conv.2`` is ``B`` (O × G·O), random with orthonormal columns/rows, and
    ``conv.1`` is ``Bᵀ · weight · Aᵀ`` per tap, so ``B · conv.1 · A = weight`` (to float rounding); the 1×1 skip and
    the inner biases are zero and ``conv.2``'s bias is ``bias``. Every branch is non-zero, so all of them train.
    """
    c0, c1, c2 = conv.conv
    out_ch, in_ch = weight.shape[:2]
    a = torch.linalg.qr(torch.randn(c0.out_channels, in_ch, generator=generator, dtype=torch.float64))[0]
    b = torch.linalg.qr(torch.randn(c2.in_channels, out_ch, generator=generator, dtype=torch.float64))[0].T
    inner = torch.einsum("po,oihw,qi->pqhw", b.T, weight.double(), a)  # (G·O, G·I, 3, 3)
    c0.weight.copy_(a[:, :, None, None])
    c1.weight.copy_(inner)
    c2.weight.copy_(b[:, :, None, None])
    for layer in (c0, c1):
        layer.bias.zero_()
    c2.bias.copy_(bias)
    conv.sk.weight.zero_()
    conv.sk.bias.zero_()
