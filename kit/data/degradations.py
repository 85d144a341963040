"""Synthetic degradations for same-size restoration (and bicubic SR), seeded, selectable in the options.

Each degradation is a registered class (one YAML rule: ``type:`` picks it, the other keys are its
arguments) called as ``deg(img, rng)`` on an RGB float32 HWC image in [0, 1]. A number argument may be
given as ``[low, high]``: it is then drawn uniformly per image from ``rng``.

.. code-block:: yaml

    degradations:
      - {type: GaussianBlur, kernel_size: 21, sigma: [0.5, 2.5]}
      - {type: MotionBlur, kernel_size: 15, angle: [0, 180], direction: [-1, 1]}
      - {type: BicubicDown, scale: 4}
      - {type: GaussianNoise, sigma: 25}          # sigma on the 0-255 scale
      - {type: JPEG, quality: [30, 60]}
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from basicsr.utils.registry import Registry

DEGRADATION_REGISTRY = Registry("degradation")

Number = float | Sequence[float]


def _draw(value: Number, rng: np.random.Generator) -> float:
    if isinstance(value, list | tuple):
        if len(value) != 2 or value[0] > value[1]:
            raise ValueError(f"a range must be [low, high] with low <= high, got {value}")
        return float(rng.uniform(value[0], value[1]))
    return float(value)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float()


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).numpy().astype(np.float32)


@DEGRADATION_REGISTRY.register()
class GaussianNoise:
    """Additive white Gaussian noise, ``sigma`` on the 0–255 scale (as denoising papers quote it).

    ``{type: GaussianNoise, sigma: 25}`` or ``sigma: [5, 50]`` (blind denoising).
    """

    def __init__(self, sigma: Number = 25.0, clip: bool = True) -> None:
        self.sigma, self.clip = sigma, clip

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noisy = img + rng.standard_normal(img.shape).astype(np.float32) * (_draw(self.sigma, rng) / 255.0)
        return np.clip(noisy, 0.0, 1.0) if self.clip else noisy


@DEGRADATION_REGISTRY.register()
class GaussianBlur:
    """Isotropic Gaussian blur through ``kornia.filters.gaussian_blur2d`` (reflect border).

    ``{type: GaussianBlur, kernel_size: 21, sigma: 2.0}``
    """

    def __init__(self, kernel_size: int = 21, sigma: Number = 2.0) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"GaussianBlur kernel_size must be odd, got {kernel_size}")
        self.kernel_size, self.sigma = kernel_size, sigma

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import kornia

        s = _draw(self.sigma, rng)
        k = self.kernel_size
        out = kornia.filters.gaussian_blur2d(_to_tensor(img), (k, k), (s, s), border_type="reflect")
        return _to_numpy(out)


@DEGRADATION_REGISTRY.register()
class MotionBlur:
    """Linear motion blur through ``kornia.filters.motion_blur``; angle in degrees, direction in [-1, 1].

    ``{type: MotionBlur, kernel_size: 15, angle: [0, 180], direction: [-1, 1]}``
    """

    def __init__(self, kernel_size: int = 15, angle: Number = 45.0, direction: Number = 0.0) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"MotionBlur kernel_size must be odd, got {kernel_size}")
        self.kernel_size, self.angle, self.direction = kernel_size, angle, direction

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import kornia

        angle, direction = _draw(self.angle, rng), _draw(self.direction, rng)
        out = kornia.filters.motion_blur(_to_tensor(img), self.kernel_size, angle, direction, border_type="reflect")
        return _to_numpy(out)


@DEGRADATION_REGISTRY.register()
class JPEG:
    """JPEG compression at ``quality`` (OpenCV's encoder), for JPEG-artefact removal.

    ``{type: JPEG, quality: 30}``
    """

    def __init__(self, quality: Number = 30) -> None:
        self.quality = quality

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        q = int(round(_draw(self.quality, rng)))
        bgr = np.clip(np.round(img[..., ::-1] * 255.0), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), q])
        if not ok:
            raise RuntimeError(f"OpenCV could not JPEG-encode an image at quality {q}")
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0


@DEGRADATION_REGISTRY.register()
class BicubicDown:
    """MATLAB-style bicubic downscaling (``basicsr.utils.matlab_functions.imresize``), as DIV2K's LR.

    ``{type: BicubicDown, scale: 4}``; the image must be divisible by ``scale`` (datasets mod-crop first).
    """

    def __init__(self, scale: int = 4) -> None:
        self.scale = scale

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from basicsr.utils.matlab_functions import imresize

        h, w = img.shape[:2]
        if h % self.scale or w % self.scale:
            raise ValueError(f"BicubicDown: image {h}x{w} is not divisible by scale {self.scale}; mod-crop it first")
        return np.clip(imresize(img, 1 / self.scale), 0.0, 1.0).astype(np.float32)


def build_degradations(specs: list[dict] | None) -> list:
    """Build the list of degradations from options (each a mapping with ``type:``)."""
    from kit.registry import build_from_registry

    return [build_from_registry(DEGRADATION_REGISTRY, spec, f"degradations[{i}]") for i, spec in enumerate(specs or [])]


def apply_degradations(img: np.ndarray, degradations: list, rng: np.random.Generator) -> np.ndarray:
    """Apply each degradation in order to an RGB float32 HWC image in [0, 1]."""
    for deg in degradations:
        img = deg(img, rng)
    return img.astype(np.float32)
