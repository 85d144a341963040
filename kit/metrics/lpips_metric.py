"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018).

A thin wrapper over the ``lpips`` package (v0.1 linear layers, shipped inside the package) that never
downloads: the ImageNet backbone (AlexNet or VGG16) must already be in torchvision's hub cache,
``torch.hub.get_dir()/checkpoints/`` (``$TORCH_HOME/hub/checkpoints`` when ``TORCH_HOME`` is set, else
``~/.cache/torch/hub/checkpoints``). Where it is missing, construction fails before any network access with
an error naming the file and the folder. ``pretrained_backbone=False`` builds a randomly initialised
backbone (for tests and smoke runs only: its distances are not LPIPS).

Usage::

    metric = LPIPSMetric("alex").to(device)
    d = metric(output01, gt01)  # (N,) distances; inputs RGB in [0, 1], scaled to [-1, 1] inside

To measure exactly what is saved to disk, pass ``quantize(output) / 255`` (see :mod:`kit.metrics.psnr_ssim`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

__all__ = ["LPIPSMetric", "backbone_weights_path", "build_lpips"]

NETS = ("alex", "vgg")


def _backbone_url(net: str) -> str:
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    if net not in NETS:
        raise ValueError(f"LPIPS net must be one of {', '.join(NETS)}, got {net!r}")
    weights = AlexNet_Weights.IMAGENET1K_V1 if net == "alex" else VGG16_Weights.IMAGENET1K_V1
    return weights.url


def backbone_weights_path(net: str) -> Path:
    """Where torchvision looks for the ImageNet backbone of LPIPS ``net`` ('alex' or 'vgg').

    Args:
        net: 'alex' (``alexnet-owt-7be5be79.pth``) or 'vgg' (``vgg16-397923af.pth``).

    Returns:
        ``torch.hub.get_dir()/checkpoints/<file>``; follows ``TORCH_HOME`` and ``torch.hub.set_dir``.
    """
    name = os.path.basename(urlparse(_backbone_url(net)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _missing_message(net: str) -> str:
    path = backbone_weights_path(net)
    return (
        f"LPIPS({net!r}) needs torchvision's ImageNet backbone weights '{path.name}' in '{path.parent}', "
        f"and this kit never downloads. Copy the file there (it is {_backbone_url(net)}), or set TORCH_HOME to a "
        f"folder whose hub/checkpoints/ holds it; pretrained_backbone=False builds a random backbone for tests only."
    )


@contextlib.contextmanager
def _no_download(net: str) -> Iterator[None]:
    """Make any hub download inside the block raise (the cache check should already have failed first)."""

    def refuse(url: str, *args, **kwargs) -> None:
        raise RuntimeError(f"refused to download {url}: {_missing_message(net)}")

    saved = torch.hub.download_url_to_file
    torch.hub.download_url_to_file = refuse
    try:
        yield
    finally:
        torch.hub.download_url_to_file = saved


def build_lpips(net: str = "alex", pretrained_backbone: bool = True) -> nn.Module:
    """An ``lpips.LPIPS`` model (v0.1, packaged linear layers) in eval mode, frozen, on the CPU.

    Args:
        net: 'alex' or 'vgg'.
        pretrained_backbone: Load the cached ImageNet backbone (required for real LPIPS values); False builds
            a random one without looking for the file.

    Returns:
        The ``lpips.LPIPS`` module; call it on [-1, 1] inputs.

    Raises:
        FileNotFoundError: The backbone weights are not cached; the message names the file and folder.
    """
    import lpips

    _backbone_url(net)  # validates the name
    if pretrained_backbone and not backbone_weights_path(net).is_file():
        raise FileNotFoundError(_missing_message(net))
    with _no_download(net), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")  # 'pretrained' is deprecated
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=not pretrained_backbone, verbose=False)
    model.eval()
    model.requires_grad_(False)
    return model


class LPIPSMetric(nn.Module):
    """LPIPS distance between RGB images in [0, 1] (lower is closer); wraps :func:`build_lpips`.

    Args:
        net: 'alex' (the usual choice for evaluation) or 'vgg'.
        pretrained_backbone: See :func:`build_lpips`.
    """

    def __init__(self, net: str = "alex", pretrained_backbone: bool = True) -> None:
        super().__init__()
        self.net = net
        self.model = build_lpips(net, pretrained_backbone)

    @torch.no_grad()
    def forward(self, img: Tensor, ref: Tensor) -> Tensor:
        """Distances per image.

        Args:
            img: ``(N, 3, H, W)`` (or ``(3, H, W)``) RGB in [0, 1].
            ref: Same shape and range.

        Returns:
            ``(N,)`` LPIPS distances.
        """
        if img.shape != ref.shape:
            raise ValueError(f"LPIPS: image shapes differ: {tuple(img.shape)} vs {tuple(ref.shape)}")
        if img.dim() == 3:
            img, ref = img.unsqueeze(0), ref.unsqueeze(0)
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f"LPIPS expects (N, 3, H, W) RGB tensors in [0, 1], got shape {tuple(img.shape)}")
        dtype = next(self.model.parameters()).dtype
        return self.model(img.to(dtype) * 2 - 1, ref.to(dtype) * 2 - 1).flatten()
