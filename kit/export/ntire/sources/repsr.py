"""Torch-only source of the deployed (fused) RepSRStudent (kit/archs/rep_student.py), copied into NTIRE packages.

Only the fused form: each RepBlock is one 3x3 conv and its activation, with the kit's module names
(``conv_first.conv``, ``body.k.conv``, ``body.k.act``, ``conv_last.conv``), so the state dict of
``RepSRStudent.fuse()`` loads with ``strict=True``. Everything below the marker line is copied unchanged.
"""

# --- ntire source ---
import torch
from torch import nn


class RepBlock(nn.Module):
    """One 3x3 conv and an activation: an edge-oriented re-parameterisable block (ECBSR) after fusion."""

    def __init__(self, in_ch: int, out_ch: int, act: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        if act == "prelu":
            self.act = nn.PReLU(num_parameters=out_ch)
        elif act == "relu":
            self.act = nn.ReLU()
        else:
            self.act = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class RepSR(nn.Module):
    """Plain 3x3-conv SR network (ECBSR, Zhang et al., ACM MM 2021, fused), input and output RGB in [0, 1].

    conv_first -> body -> conv_last (to out * scale^2 channels) + each input channel repeated scale^2 times
    -> PixelShuffle: the network adds a residual to nearest-neighbour upsampling.
    """

    def __init__(self, num_in_ch: int, num_out_ch: int, scale: int, num_feat: int, num_block: int, act: str) -> None:
        super().__init__()
        self.scale = scale
        self.conv_first = RepBlock(num_in_ch, num_feat, act)
        self.body = nn.Sequential(*(RepBlock(num_feat, num_feat, act) for _ in range(num_block)))
        self.conv_last = RepBlock(num_feat, num_out_ch * scale * scale, "none")
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_last(self.body(self.conv_first(x)))
        y = y + x.repeat_interleave(self.scale * self.scale, dim=1)
        return self.upsampler(y)
