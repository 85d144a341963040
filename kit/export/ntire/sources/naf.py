"""Torch-only source of NAFStudent (kit/archs/naf_student.py), copied into NTIRE packages.

Module names equal the kit's, so its state dict loads with ``strict=True``. Everything below the marker line
is copied unchanged; the writer appends the no-argument class.
"""

# --- ntire source ---
import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel, with a per-channel affine."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """NAFNet block: LayerNorm, 1x1, depthwise 3x3, SimpleGate, channel attention, 1x1; then a gated FFN."""

    def __init__(self, c: int) -> None:
        super().__init__()
        dw = c * 2
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.sg = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        ffn = c * 2
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + x * self.gamma


class NAFNet(nn.Module):
    """Small NAFNet U-Net for same-size restoration (Chen et al., ECCV 2022), input and output RGB in [0, 1].

    The input is zero-padded bottom/right to a multiple of 2^levels and the output cropped back.
    """

    def __init__(
        self, num_in_ch: int, num_out_ch: int, scale: int, width: int, enc_blk_nums, middle_blk_num: int, dec_blk_nums
    ) -> None:
        super().__init__()
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

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        p = self.padder_size
        x = F.pad(inp, (0, (p - w % p) % p, 0, (p - h % p) % p))
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
