"""Torch-only source of the deployed RLFNStudent (kit/archs/rlfn_student.py), copied into NTIRE packages.

Everything below the marker line goes into ``models/team<ID>_<Name>.py`` unchanged; the writer appends the
no-argument class. Module names equal the kit's, so the kit's state dict loads with ``strict=True``.
"""

# --- ntire source ---
import torch
import torch.nn.functional as F
from torch import nn


class ESA(nn.Module):
    """Enhanced spatial attention as slimmed in RLFN (the max-pool is padded by 3 so small inputs work)."""

    def __init__(self, num_feat: int, esa_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, esa_channels, 1)
        self.conv_f = nn.Conv2d(esa_channels, esa_channels, 1)
        self.conv2 = nn.Conv2d(esa_channels, esa_channels, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(esa_channels, esa_channels, 3, padding=1)
        self.conv4 = nn.Conv2d(esa_channels, num_feat, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.conv1(x)
        c2 = F.max_pool2d(self.conv2(c1), kernel_size=7, stride=3, padding=3)
        c3 = F.interpolate(self.conv3(c2), size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = torch.sigmoid(self.conv4(c3 + self.conv_f(c1)))
        return x * mask


class RLFB(nn.Module):
    """Residual local feature block: three 3x3 convs with a local residual, a 1x1 conv, then ESA."""

    def __init__(self, num_feat: int, mid_feat: int, esa_channels: int) -> None:
        super().__init__()
        self.c1_r = nn.Conv2d(num_feat, mid_feat, 3, padding=1)
        self.c2_r = nn.Conv2d(mid_feat, mid_feat, 3, padding=1)
        self.c3_r = nn.Conv2d(mid_feat, num_feat, 3, padding=1)
        self.c5 = nn.Conv2d(num_feat, num_feat, 1)
        self.esa = ESA(num_feat, esa_channels)
        self.act = nn.LeakyReLU(0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out))
        return self.esa(self.c5(out + x))


class RLFN(nn.Module):
    """Residual Local Feature Network (Kong et al., CVPRW 2022), input and output RGB in [0, 1].

    conv_first -> body (RLFBs) -> conv_after_body + global residual -> 3x3 conv + PixelShuffle;
    with ``img_residual`` the input upscaled by that interpolation is added to the output.
    """

    def __init__(
        self,
        num_in_ch: int,
        num_out_ch: int,
        scale: int,
        num_feat: int,
        num_block: int,
        mid_feat,
        esa_channels: int,
        img_residual,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.img_residual = img_residual
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, padding=1)
        self.body = nn.Sequential(*(RLFB(num_feat, mid_feat or num_feat, esa_channels) for _ in range(num_block)))
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.upsampler = nn.Sequential(
            nn.Conv2d(num_feat, num_out_ch * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.body(feat)) + feat
        out = self.upsampler(feat)
        if self.img_residual is None:
            return out
        if self.scale == 1:
            return out + x
        kwargs = {} if self.img_residual == "nearest" else {"align_corners": False}
        return out + F.interpolate(x, scale_factor=self.scale, mode=self.img_residual, **kwargs)
