"""Validation metrics as BasicSR's ``val.metrics`` names them, computed exactly and fast.

``calculate_psnr``/``calculate_ssim`` (and their ``_pt`` twins) run on the kit's torch implementations,
which equal BasicSR's numpy reference on uint8-quantised images (the log says so once); any other registered
metric falls back to BasicSR's own function on ``tensor2img`` output. Both images are quantised as
``tensor2img`` does. Each metric's keys are checked against its function (plus BasicSR's ``better``), so a
typo such as ``test_y_chanel: true`` fails naming the key instead of silently measuring RGB.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from kit.metrics.psnr_ssim import quantize
from kit.registry import OptionsKeyError, check_arguments, lookup
from kit.schema import short

_PSNR = ("calculate_psnr", "calculate_psnr_pt", "calculate_psnr_kit")
_SSIM = ("calculate_ssim", "calculate_ssim_pt", "calculate_ssim_kit")


class ValidationMetrics:
    """Accumulate per-image metric values for one validation pass.

    Args:
        metrics_opt: ``val.metrics`` mapping, e.g. ``{psnr: {type: calculate_psnr, crop_border: 4,
            test_y_channel: true}}``.
    """

    def __init__(self, metrics_opt: dict) -> None:
        check_metrics(metrics_opt)
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


_IMAGE_ARGS = ("img", "img2")
_BASICSR_KEYS = ("better",)  # read by BasicSR's best-metric bookkeeping, not passed to the function


def check_metrics(metrics_opt: dict, where: str = "val:metrics") -> list[str]:
    """Check every ``val.metrics`` entry against its registered function; return notes for the log.

    Raises:
        OptionsKeyError: an unknown metric type, or a key its function does not take (closest name named).
    """
    from basicsr.utils.registry import METRIC_REGISTRY

    if not isinstance(metrics_opt, dict):
        raise OptionsKeyError(f"{where} must be a mapping of name: {{type: ..., ...}}, got {short(metrics_opt)}")
    notes = []
    for name, spec in metrics_opt.items():
        key = f"{where}:{name}"
        if not isinstance(spec, dict) or "type" not in spec:
            raise OptionsKeyError(f"{key}: expected a mapping with 'type:', got {short(spec)}")
        fn = lookup(METRIC_REGISTRY, spec["type"], key)
        args = {k: v for k, v in spec.items() if k not in ("type", *_BASICSR_KEYS)}
        check_arguments(_without_images(fn), args, key)
        if spec["type"] in _PSNR + _SSIM and not spec["type"].endswith("_kit"):
            kit_fn = "calculate_psnr_kit" if spec["type"] in _PSNR else "calculate_ssim_kit"
            notes.append(f"{key}: {spec['type']} is computed by the kit's torch {kit_fn} (equal to BasicSR's to ~1e-9)")
    return notes


def _without_images(fn):
    """A stand-in with ``fn``'s signature minus the two image arguments (for :func:`check_arguments`)."""
    import inspect

    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name not in _IMAGE_ARGS and p.kind is not p.VAR_KEYWORD]

    def stand_in(*args, **kwargs):  # pragma: no cover - never called
        raise NotImplementedError

    stand_in.__signature__ = sig.replace(parameters=params)
    stand_in.__name__ = fn.__name__
    return stand_in
