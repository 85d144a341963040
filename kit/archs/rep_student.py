"""RepSRStudent: a plain 3×3-conv network trained with re-parameterisable edge-oriented blocks (ECBSR).

Zhang et al., "Edge-oriented Convolution Block for Real-time Super Resolution on Mobile Devices",
ACM MM 2021; structural re-parameterisation after Ding et al., "RepVGG: Making VGG-style ConvNets
Great Again", CVPR 2021.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import Tensor, nn

_EDGE_MASKS = {
    "sobelx": ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0)),
    "sobely": ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0)),
    "laplacian": ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0)),
}


def _pad_with_bias(y: Tensor, bias: Tensor) -> Tensor:
    """Pad a 1×1 conv's output by one pixel filled with its bias, so the following 3×3 conv fuses exactly."""
    b = bias.view(1, -1, 1, 1)
    return F.pad(y - b, (1, 1, 1, 1)) + b


class ExpandSqueeze(nn.Module):
    """1×1 conv to ``mid`` channels, then 3×3 conv to ``out`` channels (fuses into one 3×3 conv)."""

    def __init__(self, in_ch: int, out_ch: int, mid_ch: int) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(in_ch, mid_ch, 1)
        self.conv3x3 = nn.Conv2d(mid_ch, out_ch, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3x3(_pad_with_bias(self.conv1x1(x), self.conv1x1.bias))

    def fused_kernel(self) -> tuple[Tensor, Tensor]:
        k0, b0 = self.conv1x1.weight, self.conv1x1.bias  # (M, I, 1, 1), (M,)
        k1, b1 = self.conv3x3.weight, self.conv3x3.bias  # (O, M, 3, 3), (O,)
        weight = torch.einsum("omhw,mi->oihw", k1, k0[:, :, 0, 0])
        bias = torch.einsum("omhw,m->o", k1, b0) + b1
        return weight, bias


class EdgeBranch(nn.Module):
    """1×1 conv, then a fixed Sobel/Laplacian depthwise 3×3 filter with a learnable per-channel scale and bias."""

    def __init__(self, in_ch: int, out_ch: int, kind: str) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(in_ch, out_ch, 1)
        self.scale = nn.Parameter(torch.randn(out_ch, 1, 1, 1) * 1e-3)
        self.bias = nn.Parameter(torch.randn(out_ch) * 1e-3)
        mask = torch.tensor(_EDGE_MASKS[kind]).expand(out_ch, 1, 3, 3).clone()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        y = _pad_with_bias(self.conv1x1(x), self.conv1x1.bias)
        return F.conv2d(y, self.scale * self.mask, self.bias, groups=self.mask.shape[0])

    def fused_kernel(self) -> tuple[Tensor, Tensor]:
        k1 = (self.scale * self.mask)[:, 0]  # (O, 3, 3)
        weight = k1[:, None] * self.conv1x1.weight  # (O, 1, 3, 3) * (O, I, 1, 1) -> (O, I, 3, 3)
        bias = self.conv1x1.bias * k1.sum(dim=(1, 2)) + self.bias
        return weight, bias


class RepBlock(nn.Module):
    """Edge-oriented convolution block: one 3×3 conv at inference, several branches in training.

    Training: 3×3 conv + 1×1→3×3 expand-squeeze + Sobel-x, Sobel-y, Laplacian branches + identity
    (when ``in_ch == out_ch``), summed, then the activation. Deploy: ``conv`` (one 3×3) + activation.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        act: ``"prelu"``, ``"relu"`` or ``"none"``.
        depth_multiplier: Width of the expand-squeeze branch relative to ``out_ch``.
        deploy: Build the fused single-conv form.
    """

    def __init__(self, in_ch: int, out_ch: int, act: str, depth_multiplier: float = 2.0, deploy: bool = False) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.deploy = in_ch, out_ch, deploy
        if deploy:
            self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        else:
            self.conv3x3 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
            self.expand_squeeze = ExpandSqueeze(in_ch, out_ch, max(1, int(out_ch * depth_multiplier)))
            self.sobelx = EdgeBranch(in_ch, out_ch, "sobelx")
            self.sobely = EdgeBranch(in_ch, out_ch, "sobely")
            self.laplacian = EdgeBranch(in_ch, out_ch, "laplacian")
        if act == "prelu":
            self.act = nn.PReLU(num_parameters=out_ch)
        elif act == "relu":
            self.act = nn.ReLU()
        elif act == "none":
            self.act = nn.Identity()
        else:
            raise ValueError(f"RepBlock: act '{act}' is not one of 'prelu', 'relu', 'none'")

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return self.act(self.conv(x))
        y = self.conv3x3(x) + self.expand_squeeze(x) + self.sobelx(x) + self.sobely(x) + self.laplacian(x)
        if self.in_ch == self.out_ch:
            y = y + x
        return self.act(y)

    @torch.no_grad()
    def fused_kernel(self) -> tuple[Tensor, Tensor]:
        """The (weight, bias) of the single 3×3 conv equal to the sum of the training branches."""
        if self.deploy:
            return self.conv.weight.clone(), self.conv.bias.clone()
        weight, bias = self.conv3x3.weight.clone(), self.conv3x3.bias.clone()
        for branch in (self.expand_squeeze, self.sobelx, self.sobely, self.laplacian):
            w, b = branch.fused_kernel()
            weight += w
            bias += b
        if self.in_ch == self.out_ch:
            weight[:, :, 1, 1] += torch.eye(self.out_ch, dtype=weight.dtype, device=weight.device)
        return weight, bias


@ARCH_REGISTRY.register()
class RepSRStudent(nn.Module):
    """Plain-conv SR student with edge-oriented re-parameterisable blocks (ECBSR, Zhang et al., ACM MM 2021).

    ``conv_first`` (RepBlock in→F) → ``body`` (``num_block`` RepBlocks F→F) → ``conv_last`` (RepBlock
    F→out·s², no activation) + each input channel repeated s² times → ``upsampler`` (PixelShuffle), so the
    network learns the residual over nearest-neighbour upsampling.
    Each RepBlock fuses into one 3×3 conv (RepVGG-style structural re-parameterisation, Ding et al.,
    CVPR 2021); :meth:`fuse` returns the ``deploy=True`` network, whose ``body.k`` paths are the same.
    Defaults are ECBSR-M16C64 (0.6M parameters when fused, 2.2M while training). Input RGB in [0, 1].

    ```yaml
    network_g:
      type: RepSRStudent
      num_in_ch: 3
      num_out_ch: 3
      scale: 4
      num_feat: 64
      num_block: 16
      act: prelu
    ```

    Args:
        num_in_ch: Input channels.
        num_out_ch: Output channels; must equal ``num_in_ch`` (the residual repeats the input).
        scale: Upscaling factor, one of 1, 2, 3, 4.
        num_feat: Channels of every hidden conv.
        num_block: Number of RepBlocks in ``body``.
        act: Activation after each hidden block, ``"prelu"`` or ``"relu"``.
        depth_multiplier: Expand-squeeze branch width relative to ``num_feat``.
        deploy: Build the fused form (one 3×3 conv per block), e.g. to load weights saved after :meth:`fuse`.
    """

    supported_scales: ClassVar[tuple[int, ...]] = (1, 2, 3, 4)

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 16,
        act: str = "prelu",
        depth_multiplier: float = 2.0,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        if scale not in self.supported_scales:
            raise ValueError(f"RepSRStudent: scale {scale} is not supported; use one of {self.supported_scales}")
        if num_out_ch != num_in_ch:
            raise ValueError(
                f"RepSRStudent: num_out_ch ({num_out_ch}) must equal num_in_ch ({num_in_ch}); "
                "the global residual adds the repeated input"
            )
        if act not in ("prelu", "relu"):
            raise ValueError(f"RepSRStudent: act '{act}' is not one of 'prelu', 'relu'")
        self.config = dict(
            num_in_ch=num_in_ch,
            num_out_ch=num_out_ch,
            scale=scale,
            num_feat=num_feat,
            num_block=num_block,
            act=act,
            depth_multiplier=depth_multiplier,
        )
        self.scale, self.deploy = scale, deploy
        self.conv_first = RepBlock(num_in_ch, num_feat, act, depth_multiplier, deploy)
        self.body = nn.Sequential(
            *(RepBlock(num_feat, num_feat, act, depth_multiplier, deploy) for _ in range(num_block))
        )
        self.conv_last = RepBlock(num_feat, num_out_ch * scale * scale, "none", depth_multiplier, deploy)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv_last(self.body(self.conv_first(x)))  # (N, C·s², H, W)
        # each input channel repeated s² times in a row, so PixelShuffle spreads it over its own s×s cell
        y = y + x.repeat_interleave(self.scale * self.scale, dim=1)
        return self.upsampler(y)  # (N, C, H·s, W·s)

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        """Return a new ``deploy=True`` RepSRStudent (eval mode) computing the same function; ``self`` is untouched."""
        fused = RepSRStudent(**self.config, deploy=True).to(next(self.parameters()))
        for name, block in self.named_modules():
            if isinstance(block, RepBlock):
                target = fused.get_submodule(name)
                weight, bias = block.fused_kernel()
                target.conv.weight.copy_(weight)
                target.conv.bias.copy_(bias)
                target.act.load_state_dict(copy.deepcopy(block.act.state_dict()))
        return fused.eval()
