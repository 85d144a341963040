"""NAFStudent: a small NAFNet U-Net for same-size restoration (denoising, deblurring, JPEG artefacts).

Chen et al., "Simple Baselines for Image Restoration", ECCV 2022 (arXiv 2204.04676).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import Tensor, nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel of an (N, C, H, W) tensor, with a per-channel affine."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them: the non-linearity of NAFNet."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """NAFNet block: LayerNorm → 1×1 → depthwise 3×3 → SimpleGate → simplified channel attention → 1×1,
    then LayerNorm → 1×1 → SimpleGate → 1×1; both with a residual scaled by a zero-initialised parameter.

    Args:
        c: Channels.
        dw_expand: Expansion of the depthwise branch.
        ffn_expand: Expansion of the feed-forward branch.
    """

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw = c * dw_expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.sg = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        ffn = c * ffn_expand
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: Tensor) -> Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + x * self.gamma


@ARCH_REGISTRY.register()
class NAFStudent(nn.Module):
    """Small NAFNet U-Net for same-size restoration (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022).

    ``intro`` (3×3) → ``encoders.i`` (NAFBlocks; then a 2×2 stride-2 conv doubles the channels) →
    ``middle_blks`` → ``decoders.i`` (after a 1×1 conv + PixelShuffle(2) upsampling and an additive skip)
    → ``ending`` (3×3) + the input. The input is zero-padded on the bottom/right to a multiple of
    2^len(enc_blk_nums) and the output cropped back, so any size works (also in ONNX with dynamic H/W).
    Input RGB in [0, 1]. Defaults: width 16, 4 levels, 1.97M parameters, 2.0 GMACs at 1×3×256×256.
    NAFNet-C16-L28 (``enc_blk_nums: [1, 1, 1, 28]``, the AIM 2025 efficient-deblurring reference) is 4.35M
    and 4.1 GMACs.

    Distillation feature paths: ``intro``, ``encoders.i``, ``middle_blks``, ``decoders.i``, ``ending``.

    ```yaml
    network_g:
      type: NAFStudent
      num_in_ch: 3
      num_out_ch: 3
      scale: 1
      width: 16
      enc_blk_nums: [1, 1, 1, 8]
      middle_blk_num: 1
      dec_blk_nums: [1, 1, 1, 1]
    ```

    Args:
        num_in_ch: Input channels.
        num_out_ch: Output channels; must equal ``num_in_ch`` (global residual).
        scale: Only 1 is supported (same-size restoration).
        width: Channels at full resolution; doubled at each level.
        enc_blk_nums: NAFBlocks per encoder level.
        middle_blk_num: NAFBlocks at the lowest resolution.
        dec_blk_nums: NAFBlocks per decoder level; as many levels as ``enc_blk_nums``.
    """

    supported_scales: ClassVar[tuple[int, ...]] = (1,)

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 1,
        width: int = 16,
        enc_blk_nums: list[int] | tuple[int, ...] = (1, 1, 1, 8),
        middle_blk_num: int = 1,
        dec_blk_nums: list[int] | tuple[int, ...] = (1, 1, 1, 1),
    ) -> None:
        super().__init__()
        if scale != 1:
            raise ValueError(f"NAFStudent: scale {scale} is not supported; only scale 1 (same-size restoration)")
        if num_out_ch != num_in_ch:
            raise ValueError(
                f"NAFStudent: num_out_ch ({num_out_ch}) must equal num_in_ch ({num_in_ch}) (global residual)"
            )
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(
                f"NAFStudent: enc_blk_nums {list(enc_blk_nums)} and dec_blk_nums {list(dec_blk_nums)} "
                "must have the same length (one decoder level per encoder level)"
            )
        self.scale = scale
        self.intro = nn.Conv2d(num_in_ch, width, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        self.decoders, self.ups = nn.ModuleList(), nn.ModuleList()
        chan = width
        for num in enc_blk_nums:
            self.encoders.append(nn.Sequential(*(NAFBlock(chan) for _ in range(num))))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2))
            chan *= 2
        self.middle_blks = nn.Sequential(*(NAFBlock(chan) for _ in range(middle_blk_num)))
        for num in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*(NAFBlock(chan) for _ in range(num))))
        self.ending = nn.Conv2d(width, num_out_ch, 3, padding=1)
        self.padder_size = 2 ** len(enc_blk_nums)

    def forward(self, inp: Tensor) -> Tensor:
        h, w = inp.shape[-2:]
        x = self._pad(inp)  # (N, C, H', W'), H' and W' multiples of padder_size
        feat = self.intro(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            feat = encoder(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.middle_blks(feat)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            feat = decoder(up(feat) + skip)
        out = self.ending(feat) + x
        return out[:, :, :h, :w]

    def _pad(self, x: Tensor) -> Tensor:
        p = self.padder_size
        h, w = x.shape[-2:]
        return F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))

    def fuse(self) -> nn.Module:
        """Return the deploy network: NAFNet has nothing to fuse, so ``self`` in eval mode."""
        return self.eval()
