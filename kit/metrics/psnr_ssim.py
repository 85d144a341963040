"""PSNR and SSIM in torch, equal to BasicSR's numpy reference, batched and on any device.

BasicSR's validation (``SRModel.nondist_validation``) turns each output into a uint8 BGR image with
``tensor2img`` and calls the numpy ``calculate_psnr`` / ``calculate_ssim``: one image at a time, on the
CPU, SSIM through OpenCV (~0.5 s per 1020² RGB image). The functions here compute the same numbers on
batched ``(N, C, H, W)`` tensors, on the tensors' device:

* Inputs are **RGB** float (or uint8) tensors holding **uint8-range values [0, 255]**. A model output in
  [0, 1] goes through :func:`quantize` first, which rounds exactly as ``tensor2img`` does; a GT tensor
  loaded by BasicSR (uint8 / 255) comes back to its integers the same way.
* ``y_channel=True`` is BasicSR's ``to_y_channel`` (MATLAB ``rgb2ycbcr``, BT.601), including its float32
  roundings; ``crop_border`` drops that many pixels on each side before measuring (as BasicSR).
* SSIM is Wang et al. 2004 (https://doi.org/10.1109/TIP.2003.819861) in float64 with an 11×11 Gaussian
  window, σ = 1.5, on the 'valid' region, averaged over channels (as BasicSR's ``_ssim``). The Gaussian is
  separable: CPU tensors are filtered with OpenCV's ``sepFilter2D`` (float64 ``conv2d`` is ~10× slower on a
  CPU) and the rest is done in place; other devices (GPU) stay in torch with two 1-D ``conv2d``.
* PSNR takes the differences in the input's float dtype (exact for integer values; for float32 Y values the
  rounding moves PSNR by < 1e-6 dB) and sums their squares in float64.

Agreement with ``basicsr.metrics.psnr_ssim`` is pinned by ``tests/test_metrics.py`` on real photos: 1e-4 dB
and 1e-5 SSIM (measured: <= 1e-8 dB, <= 1e-9 SSIM).

During training, BasicSR-style metrics are registered in ``METRIC_REGISTRY`` as ``calculate_psnr_kit`` and
``calculate_ssim_kit``; use them in the options file like BasicSR's own::

    val:
      metrics:
        psnr: {type: calculate_psnr_kit, crop_border: 4, test_y_channel: true}
        ssim: {type: calculate_ssim_kit, crop_border: 4, test_y_channel: true}

They accept either torch tensors (RGB in [0, 1], as ``SRModel.output`` / ``SRModel.gt``, quantised here like
``tensor2img``) or, as drop-in replacements inside BasicSR's stock validation, numpy images in BasicSR's
convention (HWC, **BGR**, [0, 255]). A validation loop that already holds batched tensors should call
:func:`psnr` / :func:`ssim` directly on ``quantize(output)``, ``quantize(gt)`` and average the returned
per-image values itself.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from basicsr.utils import get_root_logger
from basicsr.utils.registry import METRIC_REGISTRY
from torch import Tensor

__all__ = [
    "calculate_psnr_kit",
    "calculate_ssim_kit",
    "psnr",
    "quantize",
    "rgb_to_y",
    "ssim",
]

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def quantize(t01: Tensor) -> Tensor:
    """Round a [0, 1] image tensor to uint8-range values exactly as ``basicsr.utils.tensor2img`` does.

    ``tensor2img`` converts to float32, clamps to [0, 1], multiplies by 255 in float32 and rounds half to even;
    this does the same on the tensor's device, without the copy to numpy.

    Args:
        t01: Image tensor of any shape, nominally in [0, 1].

    Returns:
        A float32 tensor of the same shape with integer values in [0, 255].
    """
    return (t01.detach().float().clamp(0.0, 1.0) * 255.0).round()


def rgb_to_y(img: Tensor) -> Tensor:
    """Y channel of BT.601 YCbCr (MATLAB ``rgb2ycbcr``) on [0, 255] values, as BasicSR's ``to_y_channel``.

    BasicSR divides the image by 255 in float32, takes the dot product in float64, adds 16, divides by 255
    back into float32 and multiplies by 255 in float32; this reproduces each rounding. A one-channel image
    goes through the same ``/255 * 255`` float32 round trip and is otherwise unchanged (as BasicSR).

    Args:
        img: RGB image ``(N, 3, H, W)`` (or grey ``(N, 1, H, W)``) holding values in [0, 255].

    Returns:
        Float32 ``(N, 1, H, W)``, values in [16, 235] for a colour input.
    """
    if img.dim() != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"rgb_to_y expects an (N, 3, H, W) or (N, 1, H, W) tensor, got shape {tuple(img.shape)}")
    x = img.float() / 255.0
    if img.shape[1] == 1:
        return x * 255.0
    x = x.double()
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = b * 24.966 + g * 128.553 + r * 65.481 + 16.0  # the order of BasicSR's np.dot on BGR
    return (y / 255.0).float() * 255.0


def _peak(t: Tensor) -> float:
    """Maximum over every 8th row and column: enough to tell [0, 1] from [0, 255] images, 1/64 of the reads."""
    return float(t[..., ::8, ::8].max())


def _prepare(
    img: Tensor, ref: Tensor, crop_border: int, y_channel: bool, fn: str, dtype: torch.dtype | None
) -> tuple[Tensor, Tensor]:
    """Check shapes, crop the border, take Y if asked; return floating ``(N, C, H, W)`` tensors.

    ``dtype=None`` keeps a float32/float64 input's dtype (Y: float32, as BasicSR); others become float32.
    """
    if not (torch.is_tensor(img) and torch.is_tensor(ref)):
        raise TypeError(f"{fn}: expected torch tensors, got {type(img).__name__} and {type(ref).__name__}")
    if img.shape != ref.shape:
        raise ValueError(f"{fn}: image shapes differ: {tuple(img.shape)} vs {tuple(ref.shape)}")
    if img.dim() == 3:
        img, ref = img.unsqueeze(0), ref.unsqueeze(0)
    if img.dim() != 4:
        raise ValueError(f"{fn}: expected (N, C, H, W) or (C, H, W) tensors, got shape {tuple(img.shape)}")
    if img.is_floating_point() and img.numel() and max(_peak(img), _peak(ref)) <= 1.0:
        get_root_logger().warning(
            f"{fn}: both images look like [0, 1] images (max <= 1.0); the kit's metrics expect [0, 255] values — "
            "pass quantize(x) for [0, 1] tensors"
        )
    if crop_border < 0:
        raise ValueError(f"{fn}: crop_border must be >= 0, got {crop_border}")
    h, w = img.shape[-2:]
    if 2 * crop_border >= min(h, w):
        raise ValueError(f"{fn}: crop_border={crop_border} leaves nothing of a {h}x{w} image")
    if crop_border:
        c = crop_border
        img, ref = img[..., c:-c, c:-c], ref[..., c:-c, c:-c]
    if y_channel:
        if img.shape[1] not in (1, 3):
            raise ValueError(f"{fn}: y_channel=True needs 3 (RGB) or 1 channels, got {img.shape[1]}")
        img, ref = rgb_to_y(img), rgb_to_y(ref)
    if dtype is None:
        dtype = torch.promote_types(img.dtype, torch.float32) if img.is_floating_point() else torch.float32
    return img.to(dtype), ref.to(dtype)


def psnr(img: Tensor, ref: Tensor, crop_border: int, y_channel: bool) -> Tensor:
    """Peak signal-to-noise ratio per image, equal to ``basicsr.metrics.calculate_psnr``.

    Args:
        img: Restored images ``(N, C, H, W)`` (or ``(C, H, W)``), RGB, values in [0, 255].
        ref: Reference images, same shape and range.
        crop_border: Pixels dropped on each side before measuring (papers: the scale; NTIRE ESR: 4).
        y_channel: Measure on the Y channel of YCbCr (papers) instead of RGB (NTIRE ESR).

    Returns:
        Float64 ``(N,)`` PSNR in dB; ``inf`` where the images are identical.
    """
    x, y = _prepare(img, ref, crop_border, y_channel, "psnr", None)
    # Differences in the input's float dtype (exact for integer values), squares summed in float64.
    sse = torch.linalg.vector_norm(x - y, dim=(1, 2, 3), dtype=torch.float64).square()
    mse = sse / x[0].numel()
    return 10.0 * torch.log10((255.0 * 255.0) / mse)  # mse == 0 -> inf, as BasicSR


@functools.lru_cache(maxsize=1)
def _gaussian_1d() -> np.ndarray:
    return cv2.getGaussianKernel(_SSIM_WINDOW, _SSIM_SIGMA)  # (11, 1) float64; BasicSR uses its outer product


def _ssim_plane_cv2(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM of one float64 plane pair: OpenCV separable filter, BasicSR's arithmetic done in place."""
    k, p = _gaussian_1d(), _SSIM_WINDOW // 2

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(a, cv2.CV_64F, k, k)[p:-p, p:-p]  # 'valid' region

    mu1, mu2 = blur(x), blur(y)
    tmp = np.multiply(x, x)
    s11 = blur(tmp)
    s22 = blur(np.multiply(y, y, out=tmp))
    s12 = blur(np.multiply(x, y, out=tmp))
    mu1_mu2 = mu1 * mu2
    mu1_sq, mu2_sq = np.square(mu1, out=mu1), np.square(mu2, out=mu2)
    s11 -= mu1_sq  # sigma1_sq
    s22 -= mu2_sq  # sigma2_sq
    s12 -= mu1_mu2  # sigma12
    num = mu1_mu2
    num *= 2
    num += _C1
    s12 *= 2
    s12 += _C2
    num *= s12  # (2 mu1 mu2 + C1)(2 sigma12 + C2)
    den = mu1_sq
    den += mu2_sq
    den += _C1
    s11 += s22
    s11 += _C2
    den *= s11  # (mu1² + mu2² + C1)(sigma1² + sigma2² + C2)
    num /= den
    return float(num.mean())


def _filter_valid_torch(maps: Tensor) -> Tensor:
    """Gaussian-filter ``(B, H, W)`` maps on their device with two 1-D convolutions ('valid' region)."""
    kt = torch.from_numpy(_gaussian_1d()).to(device=maps.device, dtype=maps.dtype).view(1, 1, -1, 1)
    x = F.conv2d(maps.unsqueeze(1), kt)
    return F.conv2d(x, kt.view(1, 1, 1, -1)).squeeze(1)


def _ssim_torch(x: Tensor, y: Tensor) -> Tensor:
    """Per-image SSIM of float64 ``(N, C, H, W)`` tensors, computed on their device."""
    n, c, h, w = x.shape
    maps = torch.stack([x, y, x * x, y * y, x * y]).reshape(5 * n * c, h, w)
    mu1, mu2, e11, e22, e12 = _filter_valid_torch(maps).reshape(5, n, c, h - _SSIM_WINDOW + 1, w - _SSIM_WINDOW + 1)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq, sigma2_sq, sigma12 = e11 - mu1_sq, e22 - mu2_sq, e12 - mu1_mu2
    num = (2 * mu1_mu2 + _C1) * (2 * sigma12 + _C2)
    den = (mu1_sq + mu2_sq + _C1) * (sigma1_sq + sigma2_sq + _C2)
    return (num / den).mean(dim=(1, 2, 3))


def _use_opencv(t: Tensor) -> bool:
    """CPU tensors go through OpenCV (float64 conv2d on the CPU is ~10x slower); others stay in torch."""
    return t.device.type == "cpu"


def _ssim_per_image(x: Tensor, y: Tensor) -> Tensor:
    """Mean SSIM over channels and the valid region, per image; ``x``, ``y`` float64 ``(N, C, H, W)``."""
    n, c, h, w = x.shape
    if min(h, w) < _SSIM_WINDOW:
        raise ValueError(f"ssim: the measured region {h}x{w} is smaller than the {_SSIM_WINDOW}x{_SSIM_WINDOW} window")
    if not _use_opencv(x):
        return _ssim_torch(x, y)
    xs, ys = x.detach().contiguous().numpy(), y.detach().contiguous().numpy()
    values = [[_ssim_plane_cv2(xs[i, j], ys[i, j]) for j in range(c)] for i in range(n)]
    return torch.tensor(values, dtype=torch.float64).mean(dim=1)


def ssim(img: Tensor, ref: Tensor, crop_border: int, y_channel: bool) -> Tensor:
    """Structural similarity per image, equal to ``basicsr.metrics.calculate_ssim``.

    Wang et al., "Image quality assessment: from error visibility to structural similarity", TIP 2004.
    For several channels, the SSIM of each channel is averaged (as BasicSR).

    Args:
        img: Restored images ``(N, C, H, W)`` (or ``(C, H, W)``), RGB, values in [0, 255].
        ref: Reference images, same shape and range.
        crop_border: Pixels dropped on each side before measuring.
        y_channel: Measure on the Y channel of YCbCr instead of per RGB channel.

    Returns:
        Float64 ``(N,)`` SSIM values.
    """
    x, y = _prepare(img, ref, crop_border, y_channel, "ssim", torch.float64)
    return _ssim_per_image(x, y).to(x.device)


def _as_rgb255_tensor(img, input_order: str, fn: str) -> Tensor:
    """A BasicSR-style numpy image (HWC/CHW, BGR, [0, 255]) as an RGB ``(1, C, H, W)`` tensor."""
    if input_order not in ("HWC", "CHW"):
        raise ValueError(f"{fn}: input_order must be 'HWC' or 'CHW', got {input_order!r}")
    if img.ndim == 2:
        img = img[..., None]
    elif input_order == "CHW":
        img = img.transpose(1, 2, 0)
    if img.shape[2] == 3:
        img = img[..., ::-1]  # BGR -> RGB
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0)


def _metric_inputs(img, img2, input_order: str, fn: str) -> tuple[Tensor, Tensor]:
    if isinstance(img, np.ndarray) and isinstance(img2, np.ndarray):
        return _as_rgb255_tensor(img, input_order, fn), _as_rgb255_tensor(img2, input_order, fn)
    if torch.is_tensor(img) and torch.is_tensor(img2):
        return quantize(img), quantize(img2)
    raise TypeError(
        f"{fn}: expected two torch tensors (RGB, [0, 1]) or two numpy images (BGR, [0, 255]), "
        f"got {type(img).__name__} and {type(img2).__name__}"
    )


@METRIC_REGISTRY.register()
def calculate_psnr_kit(
    img, img2, crop_border: int, test_y_channel: bool = False, input_order: str = "HWC", better: str = "higher"
) -> float:
    """BasicSR-style PSNR (``val.metrics: {type: calculate_psnr_kit, ...}``), mean over the batch.

    Args:
        img: Output: a torch tensor (RGB, [0, 1], ``(N, C, H, W)`` or ``(C, H, W)``, quantised like
            ``tensor2img``), or a numpy image in BasicSR's convention (BGR, [0, 255]).
        img2: Ground truth, same kind as ``img``.
        crop_border: Pixels dropped on each side.
        test_y_channel: Measure on Y instead of RGB.
        input_order: 'HWC' or 'CHW', numpy images only (as BasicSR).
        better: Accepted from BasicSR's options (``better: higher``); not used here.

    Returns:
        PSNR in dB (the mean over the batch for a batched tensor).
    """
    a, b = _metric_inputs(img, img2, input_order, "calculate_psnr_kit")
    return float(psnr(a, b, crop_border, test_y_channel).mean())


@METRIC_REGISTRY.register()
def calculate_ssim_kit(
    img, img2, crop_border: int, test_y_channel: bool = False, input_order: str = "HWC", better: str = "higher"
) -> float:
    """BasicSR-style SSIM (``val.metrics: {type: calculate_ssim_kit, ...}``), mean over the batch.

    Args:
        img: Output: a torch tensor (RGB, [0, 1]) or a numpy image (BGR, [0, 255]); see
            :func:`calculate_psnr_kit`.
        img2: Ground truth, same kind as ``img``.
        crop_border: Pixels dropped on each side.
        test_y_channel: Measure on Y instead of per RGB channel.
        input_order: 'HWC' or 'CHW', numpy images only (as BasicSR).
        better: Accepted from BasicSR's options; not used here.

    Returns:
        SSIM (the mean over the batch for a batched tensor).
    """
    a, b = _metric_inputs(img, img2, input_order, "calculate_ssim_kit")
    return float(ssim(a, b, crop_border, test_y_channel).mean())
