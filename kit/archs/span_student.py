"""SPANStudent: Swift Parameter-free Attention Network, with re-parameterisable ``Conv3XC`` convolutions.

Wan et al., "Swift Parameter-free Attention Network for Efficient Super-Resolution", CVPR Workshops 2024
(NTIRE 2024 Efficient SR challenge winner). Module and parameter names are the official ones
(``conv_1``, ``block_k.c{1,2,3}_r.{sk,conv.0..2,eval_conv}``, ``conv_cat``, ``conv_2``, ``upsampler.0``), so the
published checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import Tensor, nn

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
_BLOCK = re.compile(r"^block_(\d+)\.")


def span_arguments(state: Mapping[str, Tensor]) -> dict[str, int]:
    """The :class:`SPANStudent` arguments a SPAN state dict was built with (training or fused form).

    Raises:
        KeyError: ``conv_1``/``upsampler.0`` weights are missing (not a SPAN state dict).
        ValueError: the upsampler's channels are not ``num_out_ch · scale²`` for a supported scale.
    """
    first = state["conv_1.eval_conv.weight"] if "conv_1.eval_conv.weight" in state else state["conv_1.sk.weight"]
    num_feat, num_in_ch = int(first.shape[0]), int(first.shape[1])
    up = int(state["upsampler.0.weight"].shape[0])
    blocks = {int(m.group(1)) for k in state if (m := _BLOCK.match(k))}
    for scale in (4, 3, 2, 1):  # num_out_ch is num_in_ch (RGB→RGB) unless the channels say otherwise
        if up % (scale * scale) == 0 and up // (scale * scale) == num_in_ch:
            break
    else:
        raise ValueError(f"upsampler.0 has {up} output channels: not {num_in_ch}·scale² for a scale in 1–4")
    return dict(num_in_ch=num_in_ch, num_out_ch=num_in_ch, scale=scale, num_feat=num_feat, num_block=len(blocks))


class FusedKernel(nn.Module):
    """Holds the fused 3×3 kernel of a training-form :class:`Conv3XC` as buffers ``weight`` and ``bias``.

    The official code keeps this ``eval_conv`` in its checkpoints; here it is derived data: never trained,
    rewritten from the branches whenever a state dict is taken, ignored (but accepted) when one is loaded.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(out_ch, in_ch, 3, 3))
        self.register_buffer("bias", torch.zeros(out_ch))


class Conv3XC(nn.Module):
    """A 3×3 convolution trained as ``1×1 → 3×3 → 1×1`` (``gain`` × wider) plus a 1×1 skip, fused for inference.

    Training (``self.training``): ``conv(pad(x)) + sk(x)``. Evaluation: one 3×3 convolution whose kernel is
    computed from the branches (equal up to float rounding). Deploy form (``deploy=True``): ``eval_conv`` is a
    plain ``nn.Conv2d`` and the branches do not exist.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        gain: Width of the inner 3×3 conv relative to ``in_ch``/``out_ch`` (SPAN: 2).
        deploy: Build the fused form.
    """

    def __init__(self, in_ch: int, out_ch: int, gain: int = 2, deploy: bool = False) -> None:
        super().__init__()
        self.deploy = deploy
        if deploy:
            self.eval_conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
            return
        self.sk = nn.Conv2d(in_ch, out_ch, 1)
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, in_ch * gain, 1),
            nn.Conv2d(in_ch * gain, out_ch * gain, 3),
            nn.Conv2d(out_ch * gain, out_ch, 1),
        )
        self.eval_conv = FusedKernel(in_ch, out_ch)
        self.register_state_dict_post_hook(_write_fused_kernel)

    def fused_kernel(self) -> tuple[Tensor, Tensor]:
        """``(weight (O, I, 3, 3), bias (O,))`` of the single 3×3 conv equal to the branches (differentiable)."""
        if self.deploy:
            return self.eval_conv.weight, self.eval_conv.bias
        c0, c1, c2 = self.conv
        w0, w2 = c0.weight[:, :, 0, 0], c2.weight[:, :, 0, 0]  # (G·I, I), (O, G·O)
        inner = c1.weight.permute(0, 2, 3, 1) @ w0  # (G·O, 3, 3, G·I) @ (G·I, I) -> (G·O, 3, 3, I)
        # 1×1 ∘ 3×3 ∘ 1×1 is one 3×3: (O, G·O) @ (G·O, 3·3·I) -> (O, I, 3, 3)
        weight = (w2 @ inner.reshape(inner.shape[0], -1)).reshape(w2.shape[0], 3, 3, -1).permute(0, 3, 1, 2)
        # zero padding of x before conv.0 becomes conv.0's bias on the border, so the biases compose exactly
        bias = w2 @ (c1.weight.sum(dim=(2, 3)) @ c0.bias + c1.bias) + c2.bias
        weight = weight + F.pad(self.sk.weight, (1, 1, 1, 1))  # the 1×1 skip is the kernel's centre tap
        return weight.contiguous(), bias + self.sk.bias  # contiguous: the same conv kernel as the deployed copy

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return self.eval_conv(x)
        if self.training:
            return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)
        weight, bias = self.fused_kernel()
        return F.conv2d(x, weight, bias, padding=1)


def _write_fused_kernel(module: Conv3XC, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict hook: store the current fused kernel as ``eval_conv``, so a saved checkpoint is self-consistent."""
    with torch.no_grad():
        weight, bias = module.fused_kernel()
    state_dict[f"{prefix}eval_conv.weight"] = weight.detach().clone()
    state_dict[f"{prefix}eval_conv.bias"] = bias.detach().clone()


class SPAB(nn.Module):
    """Swift parameter-free attention block: three Conv3XC, SiLU between them, attention ``sigmoid(y) − 0.5``.

    Returns ``(out, silu(c1_r(x)), attention)`` as the official block does; a feature recorder on ``block_k``
    records ``out``, shape ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, deploy: bool = False) -> None:
        super().__init__()
        self.c1_r = Conv3XC(channels, channels, 2, deploy)
        self.c2_r = Conv3XC(channels, channels, 2, deploy)
        self.c3_r = Conv3XC(channels, channels, 2, deploy)
        self.act1 = nn.SiLU()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out1 = self.act1(self.c1_r(x))  # the official SiLU is in place: its "out1" is the activated tensor
        out3 = self.c3_r(self.act1(self.c2_r(out1)))
        attention = torch.sigmoid(out3) - 0.5
        return (out3 + x) * attention, out1, attention


@ARCH_REGISTRY.register()
class SPANStudent(nn.Module):
    """SPAN (Wan et al., CVPR-W 2024; NTIRE 2024 Efficient SR winner) with its re-parameterisable Conv3XC convs.

    ``x`` → ``(x − rgb_mean)·img_range`` → ``conv_1`` → ``block_1`` … ``block_N`` (SPAB) → ``conv_2`` →
    ``conv_cat`` (1×1 over [conv_1 output, conv_2 output, block_1 output, block_N's first activation]) →
    ``upsampler`` (3×3 conv to out·s² channels, PixelShuffle). Every 3×3 conv is a :class:`Conv3XC`;
    :meth:`fuse` returns the ``deploy=True`` network (one 3×3 conv each, same module paths). Defaults are the
    official ``spanx4_ch48`` (426,288 parameters deployed; 1,840,488 trainable while training); the NTIRE 2024
    entry and NTIRE 2026 baseline use ``num_feat: 28`` (0.151M). Published weights load strictly
    (``path.pretrain_network_g``). Input RGB in [0, 1]; the output is not de-normalised (as the official code).

    ```yaml
    network_g:
      type: SPANStudent
      num_in_ch: 3
      num_out_ch: 3
      scale: 4
      num_feat: 48
      num_block: 6
    ```

    Feature paths for distillation pairs: ``conv_1``, ``block_1`` … ``block_N`` (each block's output),
    ``block_k.c1_r`` …, ``conv_2``, ``conv_cat`` (the fused features before upsampling).

    Args:
        num_in_ch: Input channels.
        num_out_ch: Output channels.
        scale: Upscaling factor, one of 1, 2, 3, 4.
        num_feat: Channels of every hidden conv (official: 48; NTIRE 2024 entry: 28).
        num_block: Number of SPAB blocks (official: 6).
        img_range: Factor applied after subtracting the mean (official: 255).
        rgb_mean: Per-channel mean subtracted from the input (official: DIV2K's), one value per input channel.
        deploy: Build the fused form (one 3×3 conv per Conv3XC), e.g. to load weights saved after :meth:`fuse`.
    """

    supported_scales: ClassVar[tuple[int, ...]] = (1, 2, 3, 4)

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 48,
        num_block: int = 6,
        img_range: float = 255.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        if scale not in self.supported_scales:
            raise ValueError(f"SPANStudent: scale {scale} is not supported; use one of {self.supported_scales}")
        if num_block < 1 or num_feat < 1:
            raise ValueError(f"SPANStudent: num_block ({num_block}) and num_feat ({num_feat}) must be at least 1")
        if len(rgb_mean) != num_in_ch:
            raise ValueError(
                f"SPANStudent: rgb_mean has {len(rgb_mean)} values for {num_in_ch} input channels; give one per channel"
            )
        self.config = dict(
            num_in_ch=num_in_ch,
            num_out_ch=num_out_ch,
            scale=scale,
            num_feat=num_feat,
            num_block=num_block,
            img_range=float(img_range),
            rgb_mean=tuple(float(m) for m in rgb_mean),
        )
        self.scale, self.num_block, self.img_range, self.deploy = scale, num_block, float(img_range), deploy
        self.register_buffer("mean", torch.tensor(self.config["rgb_mean"]).view(1, -1, 1, 1), persistent=False)
        self.conv_1 = Conv3XC(num_in_ch, num_feat, 2, deploy)
        for k in range(1, num_block + 1):
            self.add_module(f"block_{k}", SPAB(num_feat, deploy))
        self.conv_cat = nn.Conv2d(num_feat * 4, num_feat, 1)
        self.conv_2 = Conv3XC(num_feat, num_feat, 2, deploy)
        up = nn.Conv2d(num_feat, num_out_ch * scale * scale, 3, padding=1)
        self.upsampler = nn.Sequential(up, nn.PixelShuffle(scale))

    def blocks(self) -> list[SPAB]:
        """``block_1`` … ``block_N`` in order."""
        return [self.get_submodule(f"block_{k}") for k in range(1, self.num_block + 1)]

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv_1((x - self.mean) * self.img_range)  # (N, F, H, W)
        out, first_act = feat, feat
        outputs = []
        for block in self.blocks():
            out, first_act, _ = block(out)
            outputs.append(out)
        cat = torch.cat([feat, self.conv_2(out), outputs[0], first_act], dim=1)  # (N, 4F, H, W)
        return self.upsampler(self.conv_cat(cat))  # (N, C, H·s, W·s)

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        """Return a new ``deploy=True`` SPANStudent (eval mode) computing the same function; ``self`` is untouched."""
        fused = SPANStudent(**self.config, deploy=True).to(next(self.parameters()))
        for name, module in self.named_modules():
            if isinstance(module, Conv3XC):
                weight, bias = module.fused_kernel()
                target = fused.get_submodule(name).eval_conv
                target.weight.copy_(weight)
                target.bias.copy_(bias)
        fused.conv_cat.load_state_dict(self.conv_cat.state_dict())
        fused.upsampler.load_state_dict(self.upsampler.state_dict())
        return fused.eval()
