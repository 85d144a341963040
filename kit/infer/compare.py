"""Side-by-side comparison pictures: crops of LQ / bicubic / student / teacher / GT with their PSNR.

Usage::

    box = pick_crop_box(gt, size=96, align=4)
    comparison_png("cmp/0801.png", {"LQ": lq, "bicubic": bic, "student": sr, "teacher": t, "GT": gt},
                   psnrs={"bicubic": 26.1, "student": 27.6, "teacher": 27.7}, box=box, title="PSNR Y, border 4")

Images are RGB HWC, float in [0, 1] or uint8. An image smaller than the largest one by an integer factor (the
LQ input of an SR model) is upscaled with nearest neighbour first, so that every panel shows the same region.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

__all__ = ["comparison_png", "detail_box", "pick_crop_box", "tensor_to_image", "upscale_nearest"]

Box = tuple[int, int, int, int]  # (top, left, height, width) in the largest image's pixels


def upscale_nearest(img: np.ndarray, factor: int) -> np.ndarray:
    """Repeat each pixel ``factor × factor`` times (nearest-neighbour upscaling, no interpolation)."""
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def pick_crop_box(gt: np.ndarray, size: int, align: int = 1) -> Box:
    """The ``size × size`` window of ``gt`` with the highest luminance variance (deterministic: first maximum).

    Args:
        gt: ``(H, W, 3)`` or ``(H, W)`` image.
        size: Side of the square box; clipped to the image.
        align: Box corners are multiples of this (use the SR scale so the LQ crop maps onto whole pixels).

    Returns:
        ``(top, left, height, width)``.
    """
    if size <= 0 or align <= 0:
        raise ValueError(f"size and align must be positive, got size={size}, align={align}")
    g = gt.astype(np.float64)
    if g.ndim == 3:
        g = g[..., :3].mean(axis=2)
    h, w = g.shape
    bh, bw = min(size, h), min(size, w)
    # Window sums from integral images: var = E[x²] − E[x]² over each bh × bw window.
    s1 = cv2.integral(g, sdepth=cv2.CV_64F)
    s2 = cv2.integral(g * g, sdepth=cv2.CV_64F)

    def window_sum(s: np.ndarray) -> np.ndarray:
        return s[bh:, bw:] - s[:-bh, bw:] - s[bh:, :-bw] + s[:-bh, :-bw]

    n = bh * bw
    var = window_sum(s2) / n - (window_sum(s1) / n) ** 2  # (H - bh + 1, W - bw + 1): var[top, left]
    var = var[::align, ::align]
    top, left = np.unravel_index(int(np.argmax(var)), var.shape)
    return int(top) * align, int(left) * align, bh, bw


def detail_box(gt: np.ndarray, scale: int, size: int = 128) -> Box:
    """The box comparison pictures use: the most detailed ``size``² window of ``gt``, aligned to the scale."""
    return pick_crop_box(gt, size=min(size, *gt.shape[:2]), align=scale)


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """First image of an ``(N, 3, H, W)`` tensor in [0, 1] as RGB float32 HWC, clamped (for the panels)."""
    return t[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    return (np.clip(img.astype(np.float32), 0.0, 1.0) * np.float32(255.0)).round().astype(np.uint8)


def _same_size(name: str, img: np.ndarray, h: int, w: int) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    ih, iw = img.shape[:2]
    if (ih, iw) == (h, w):
        return img
    factor = h // ih
    if ih * factor == h and iw * factor == w:
        return upscale_nearest(img, factor)
    raise ValueError(
        f"comparison image '{name}' is {ih}x{iw}; expected {h}x{w} or that divided by an integer scale (LQ)"
    )


def comparison_png(
    path: str | Path,
    crops: dict[str, np.ndarray],
    psnrs: dict[str, float] | None = None,
    box: Box | None = None,
    title: str | None = None,
) -> Path:
    """Save the images side by side, each labelled with its name and PSNR, as a PNG (matplotlib, Agg).

    Args:
        path: Output PNG; parent folders are created.
        crops: Label → image (RGB HWC, [0, 1] float or uint8), in display order. Either already-cut crops
            (``box=None``) or whole images cut with ``box``; smaller images are nearest-upscaled first.
        psnrs: Label → PSNR in dB, shown under the label (labels without a value show the label alone).
        box: ``(top, left, height, width)`` in the largest image's pixels; see :func:`pick_crop_box`.
        title: Figure title, e.g. which PSNR it is: ``"PSNR on Y, border 4"``.

    Returns:
        ``path`` as a Path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not crops:
        raise ValueError("comparison_png needs at least one image")
    h = max(img.shape[0] for img in crops.values())
    w = max(img.shape[1] for img in crops.values())
    panels = {name: _same_size(name, img, h, w) for name, img in crops.items()}
    if box is not None:
        top, left, bh, bw = box
        if top < 0 or left < 0 or top + bh > h or left + bw > w or bh <= 0 or bw <= 0:
            raise ValueError(f"crop box {box} (top, left, height, width) is outside the {h}x{w} image")
        panels = {name: img[top : top + bh, left : left + bw] for name, img in panels.items()}
    psnrs = psnrs or {}
    ph, pw = next(iter(panels.values())).shape[:2]
    panel_in = 2.2
    fig = Figure(figsize=(panel_in * len(panels), panel_in * ph / pw + 0.6 + (0.3 if title else 0)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, img) in zip(axes, panels.items()):
        ax.imshow(_to_uint8(img), interpolation="nearest")
        label = f"{name}\n{psnrs[name]:.2f} dB" if name in psnrs else name
        ax.set_title(label, fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
