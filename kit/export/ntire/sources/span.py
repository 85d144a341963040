"""Torch-only source of the deployed (fused) SPANStudent (kit/archs/span_student.py), copied into NTIRE packages.

Only the fused form: every Conv3XC is its ``eval_conv`` (one 3x3 conv), with the official SPAN module names
(``conv_1.eval_conv``, ``block_k.c{1,2,3}_r.eval_conv``, ``conv_cat``, ``conv_2.eval_conv``, ``upsampler.0``), so
the state dict of ``SPANStudent.fuse()`` loads with ``strict=True``. Everything below the marker line is copied.
"""

# --- ntire source ---
import torch
from torch import nn


class Conv3XC(nn.Module):
    """SPAN's re-parameterisable convolution after fusion: one 3x3 conv."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.eval_conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_conv(x)


class SPAB(nn.Module):
    """Swift parameter-free attention block: three convs, SiLU between them, attention sigmoid(y) - 0.5."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.c1_r = Conv3XC(channels, channels)
        self.c2_r = Conv3XC(channels, channels)
        self.c3_r = Conv3XC(channels, channels)
        self.act1 = nn.SiLU()

    def forward(self, x: torch.Tensor):
        out1 = self.act1(self.c1_r(x))
        out3 = self.c3_r(self.act1(self.c2_r(out1)))
        attention = torch.sigmoid(out3) - 0.5
        return (out3 + x) * attention, out1, attention


class SPAN(nn.Module):
    """Swift Parameter-free Attention Network (Wan et al., CVPR-W 2024), fused; input RGB in [0, 1].

    (x - rgb_mean) * img_range -> conv_1 -> block_1 .. block_N -> conv_2; conv_cat over [conv_1 output,
    conv_2 output, block_1 output, block_N's first activation] -> 3x3 conv + PixelShuffle.
    """

    def __init__(
        self, num_in_ch: int, num_out_ch: int, scale: int, num_feat: int, num_block: int, img_range: float, rgb_mean
    ) -> None:
        super().__init__()
        self.num_block, self.img_range = num_block, float(img_range)
        self.register_buffer("mean", torch.tensor(rgb_mean).view(1, -1, 1, 1), persistent=False)
        self.conv_1 = Conv3XC(num_in_ch, num_feat)
        for k in range(1, num_block + 1):
            self.add_module(f"block_{k}", SPAB(num_feat))
        self.conv_cat = nn.Conv2d(num_feat * 4, num_feat, 1)
        self.conv_2 = Conv3XC(num_feat, num_feat)
        self.upsampler = nn.Sequential(
            nn.Conv2d(num_feat, num_out_ch * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_1((x - self.mean) * self.img_range)
        out, first_act = feat, feat
        outputs = []
        for k in range(1, self.num_block + 1):
            out, first_act, _ = getattr(self, f"block_{k}")(out)
            outputs.append(out)
        cat = torch.cat([feat, self.conv_2(out), outputs[0], first_act], dim=1)
        return self.upsampler(self.conv_cat(cat))
