"""Validation metrics as BasicSR's ``val.metrics`` names them, computed exactly and fast.

``calculate_psnr``/``calculate_ssim`` (and their ``_pt`` twins) run on the kit's torch implementations,
which equal BasicSR's numpy reference on uint8-quantised images; any other registered metric falls back
to BasicSR's own function on ``tensor2img`` output. Both images are quantised as ``tensor2img`` does.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from kit.metrics.psnr_ssim import quantize

_PSNR = ("calculate_psnr", "calculate_psnr_pt", "calculate_psnr_kit")
_SSIM = ("calculate_ssim", "calculate_ssim_pt", "calculate_ssim_kit")


class ValidationMetrics:
    """Accumulate per-image metric values for one validation pass.

    Args:
        metrics_opt: ``val.metrics`` mapping, e.g. ``{psnr: {type: calculate_psnr, crop_border: 4,
            test_y_channel: true}}``.
    """

    def __init__(self, metrics_opt: dict) -> None:
        self.opt = {name: dict(spec) for name, spec in metrics_opt.items()}
        self.names = list(self.opt)
        self.per_image: OrderedDict[str, dict[str, float]] = OrderedDict()

    def _one(self, spec: dict, sr_q: torch.Tensor, gt_q: torch.Tensor) -> float:
        kind = spec.get("type")
        border = int(spec.get("crop_border", 0))
        y = bool(spec.get("test_y_channel", False))
        if kind in _PSNR or kind in _SSIM:
            from kit.metrics.psnr_ssim import psnr, ssim

            fn = psnr if kind in _PSNR else ssim
            return float(fn(sr_q, gt_q, crop_border=border, y_channel=y)[0])
        from basicsr.metrics import calculate_metric

        to_img = lambda t: t[0].permute(1, 2, 0).flip(-1).cpu().numpy().astype("uint8")  # noqa: E731 (RGB→BGR HWC)
        return float(calculate_metric({"img": to_img(sr_q), "img2": to_img(gt_q)}, spec))

    def update(self, name: str, sr01: torch.Tensor, gt01: torch.Tensor) -> dict[str, float]:
        """Add one image (``(1, C, H, W)`` tensors in [0, 1]); returns its values."""
        if sr01.shape != gt01.shape:
            raise ValueError(f"validation image '{name}': output {tuple(sr01.shape)} vs GT {tuple(gt01.shape)}")
        sr_q, gt_q = quantize(sr01), quantize(gt01)
        values = {metric: self._one(spec, sr_q, gt_q) for metric, spec in self.opt.items()}
        self.per_image[name] = values
        return values

    def means(self) -> dict[str, float]:
        """Mean of every metric over the images seen."""
        if not self.per_image:
            return {}
        n = len(self.per_image)
        return {m: sum(v[m] for v in self.per_image.values()) / n for m in self.names}
