"""Image-quality metrics: PSNR/SSIM equal to BasicSR's numpy reference (batched, any device), and LPIPS.

Importing this package registers ``calculate_psnr_kit`` and ``calculate_ssim_kit`` in BasicSR's
``METRIC_REGISTRY`` (see :mod:`kit.metrics.psnr_ssim`).
"""

from __future__ import annotations

from kit.metrics.lpips_metric import LPIPSMetric, backbone_weights_path, build_lpips
from kit.metrics.psnr_ssim import calculate_psnr_kit, calculate_ssim_kit, psnr, quantize, rgb_to_y, ssim

__all__ = [
    "LPIPSMetric",
    "backbone_weights_path",
    "build_lpips",
    "calculate_psnr_kit",
    "calculate_ssim_kit",
    "psnr",
    "quantize",
    "rgb_to_y",
    "ssim",
]
