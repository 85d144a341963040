"""RLFNStudent: residual local feature blocks with enhanced spatial attention (RLFN).

Kong et al., "Residual Local Feature Network for Efficient Super-Resolution", CVPRW 2022
(arXiv 2205.07514), winner of the NTIRE 2022 Efficient SR challenge.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import Tensor, nn


class ESA(nn.Module):
    """Enhanced spatial attention (Liu et al., RFANet, CVPR 2020) as slimmed in RLFN.

    A 1×1 reduction, a stride-2 3×3 conv, a 7×7/3 max-pool and a 3×3 conv see a large area cheaply;
    the result is upsampled back, added to the reduced skip and turned into a sigmoid mask.

    Deviation from the paper: the max-pool is padded by 3 (with −inf, so values are unchanged where the
    window fits), so inputs as small as 3×3 work; the unpadded pool needs at least 15×15 inputs, which
    breaks ×4 training on 32-pixel GT patches.

    Args:
        num_feat: Channels of the features to attend over.
        esa_channels: Channels of the reduced attention branch.
    """

    def __init__(self, num_feat: int, esa_channels: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, esa_channels, 1)
        self.conv_f = nn.Conv2d(esa_channels, esa_channels, 1)
        self.conv2 = nn.Conv2d(esa_channels, esa_channels, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(esa_channels, esa_channels, 3, padding=1)
        self.conv4 = nn.Conv2d(esa_channels, num_feat, 1)

    def forward(self, x: Tensor) -> Tensor:
        c1 = self.conv1(x)  # (N, E, H, W)
        c2 = F.max_pool2d(self.conv2(c1), kernel_size=7, stride=3, padding=3)  # (N, E, ~H/6, ~W/6)
        c3 = F.interpolate(self.conv3(c2), size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = torch.sigmoid(self.conv4(c3 + self.conv_f(c1)))
        return x * mask


class RLFB(nn.Module):
    """Residual local feature block: three 3×3 convs with a local residual, a 1×1 conv, then ESA.

    Args:
        num_feat: Input and output channels.
        mid_feat: Channels between the three 3×3 convs.
        esa_channels: Channels of the ESA branch.
    """

    def __init__(self, num_feat: int, mid_feat: int, esa_channels: int = 16) -> None:
        super().__init__()
        self.c1_r = nn.Conv2d(num_feat, mid_feat, 3, padding=1)
        self.c2_r = nn.Conv2d(mid_feat, mid_feat, 3, padding=1)
        self.c3_r = nn.Conv2d(mid_feat, num_feat, 3, padding=1)
        self.c5 = nn.Conv2d(num_feat, num_feat, 1)
        self.esa = ESA(num_feat, esa_channels)
        self.act = nn.LeakyReLU(0.05)  # not in place: a hook on c1_r/c2_r/c3_r must record the conv output

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out))
        return self.esa(self.c5(out + x))


@ARCH_REGISTRY.register()
class RLFNStudent(nn.Module):
    """Residual Local Feature Network student for efficient super-resolution (Kong et al., CVPRW 2022).

    ``conv_first`` → ``body`` (``num_block`` RLFBs) → ``conv_after_body`` + global residual from
    ``conv_first`` → ``upsampler`` (3×3 conv + PixelShuffle; a plain 3×3 conv at scale 1). Input RGB in [0, 1].
    The defaults are the paper's RLFN (52 channels, 6 blocks): 0.54M parameters at ×4. NTIRE 2022's
    winning RLFN-S used 46 channels (48 inside the blocks) and 4 blocks, 0.32M.

    Distillation feature paths: ``conv_first``, ``body.0`` … ``body.{num_block-1}``, ``conv_after_body``.

    ```yaml
    network_g:
      type: RLFNStudent
      num_in_ch: 3
      num_out_ch: 3
      scale: 4
      num_feat: 52
      num_block: 6
    ```

    Args:
        num_in_ch: Input channels.
        num_out_ch: Output channels.
        scale: Upscaling factor, one of 1, 2, 3, 4 (1 = same-size restoration).
        num_feat: Channels between blocks.
        num_block: Number of RLFBs in ``body``.
        mid_feat: Channels inside each RLFB (``None``: ``num_feat``).
        esa_channels: Channels of the ESA attention branch.
        img_residual: Add the input upscaled by ``"bicubic"``, ``"bilinear"`` or ``"nearest"`` to the output
            (the network then learns only the correction, and beats interpolation within a few hundred
            steps instead of thousands — what a CPU-sized run needs); ``None``: the paper's RLFN.
    """

    supported_scales: ClassVar[tuple[int, ...]] = (1, 2, 3, 4)

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 52,
        num_block: int = 6,
        mid_feat: int | None = None,
        esa_channels: int = 16,
        img_residual: str | None = None,
    ) -> None:
        super().__init__()
        if scale not in self.supported_scales:
            raise ValueError(f"RLFNStudent: scale {scale} is not supported; use one of {self.supported_scales}")
        if img_residual not in (None, "bicubic", "bilinear", "nearest"):
            raise ValueError(
                f"RLFNStudent: img_residual must be bicubic, bilinear, nearest or null, not {img_residual!r}"
            )
        if img_residual is not None and num_in_ch != num_out_ch:
            raise ValueError("RLFNStudent: img_residual needs num_in_ch == num_out_ch")
        self.scale = scale
        self.img_residual = img_residual
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, padding=1)
        self.body = nn.Sequential(*(RLFB(num_feat, mid_feat or num_feat, esa_channels) for _ in range(num_block)))
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.upsampler = nn.Sequential(
            nn.Conv2d(num_feat, num_out_ch * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )
        if img_residual is not None:  # start exactly at the interpolation; training only adds a correction
            nn.init.zeros_(self.upsampler[0].weight)
            nn.init.zeros_(self.upsampler[0].bias)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv_first(x)  # (N, F, H, W)
        feat = self.conv_after_body(self.body(feat)) + feat
        out = self.upsampler(feat)  # (N, C_out, H*s, W*s)
        if self.img_residual is None:
            return out
        if self.scale == 1:
            return out + x
        kwargs = {} if self.img_residual == "nearest" else {"align_corners": False}
        return out + F.interpolate(x, scale_factor=self.scale, mode=self.img_residual, **kwargs)

    def fuse(self) -> nn.Module:
        """Return the deploy network: RLFN has no re-parameterisable branch, so ``self`` in eval mode."""
        return self.eval()
