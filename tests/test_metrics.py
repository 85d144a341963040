"""PSNR/SSIM of kit.metrics against BasicSR's numpy reference, on real photos bundled with scikit-image."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import skimage.data
import torch

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision, registers the kit)

# isort: split
from basicsr.metrics import calculate_metric
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim
from basicsr.utils import img2tensor, tensor2img

from kit.metrics import psnr_ssim
from kit.metrics.psnr_ssim import psnr, quantize, rgb_to_y, ssim

DEVICE = torch.device(os.environ.get("KIT_TEST_DEVICE", "cpu"))
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
DB_TOL, SSIM_TOL = 1e-4, 1e-5


def _photo(name: str, h: int = 75, w: int = 91) -> np.ndarray:
    """An odd-sized RGB uint8 crop from the middle of a bundled photo."""
    img = getattr(skimage.data, name)()
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[top : top + h, left : left + w])


def _degrade(gt: np.ndarray, kind: str) -> np.ndarray:
    if kind == "noise":
        noisy = gt.astype(np.float64) + np.random.default_rng(0).normal(0, 12, gt.shape)
        return np.clip(noisy.round(), 0, 255).astype(np.uint8)
    if kind == "blur":
        return cv2.GaussianBlur(gt, (7, 7), 1.6)
    if kind == "bicubic":
        h, w = gt.shape[:2]
        small = cv2.resize(gt, (w // 3, h // 3), interpolation=cv2.INTER_CUBIC)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    raise ValueError(kind)


def _t(img: np.ndarray) -> torch.Tensor:
    """RGB uint8 HWC -> float (1, 3, H, W) with [0, 255] values on the test device."""
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).float().to(DEVICE)


def _bgr(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[..., ::-1])  # BasicSR's numpy metrics read BGR images


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("kind", ["noise", "blur", "bicubic"])
def test_equal_to_basicsr_on_photos(name: str, kind: str) -> None:
    gt = _photo(name)
    out = _degrade(gt, kind)
    for y_channel in (True, False):
        for border in (0, 2, 4):
            ref_p = calculate_psnr(_bgr(out), _bgr(gt), border, test_y_channel=y_channel)
            ref_s = calculate_ssim(_bgr(out), _bgr(gt), border, test_y_channel=y_channel)
            p = psnr(_t(out), _t(gt), border, y_channel)
            s = ssim(_t(out), _t(gt), border, y_channel)
            assert p.shape == s.shape == (1,)
            assert p.device.type == DEVICE.type
            assert abs(float(p) - ref_p) < DB_TOL, (name, kind, y_channel, border)
            assert abs(float(s) - ref_s) < SSIM_TOL, (name, kind, y_channel, border)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_mod_cropped_sizes_batched(scale: int) -> None:
    """A batch of degraded versions of one photo, mod-cropped to the scale, border = scale (paper protocol)."""
    gt = _photo("coffee", 83, 101)
    h, w = gt.shape[0] - gt.shape[0] % scale, gt.shape[1] - gt.shape[1] % scale
    gt = gt[:h, :w]
    outs = [_degrade(gt, k) for k in ("noise", "blur", "bicubic")]
    batch = torch.cat([_t(o) for o in outs])
    ref = _t(gt).expand_as(batch)
    for y_channel in (True, False):
        p = psnr(batch, ref, scale, y_channel)
        s = ssim(batch, ref, scale, y_channel)
        assert p.shape == s.shape == (3,)
        for i, o in enumerate(outs):
            assert abs(float(p[i]) - calculate_psnr(_bgr(o), _bgr(gt), scale, test_y_channel=y_channel)) < DB_TOL
            assert abs(float(s[i]) - calculate_ssim(_bgr(o), _bgr(gt), scale, test_y_channel=y_channel)) < SSIM_TOL


def test_torch_filter_path_equals_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-torch SSIM used off the CPU (GPU) is checked here on the CPU too."""
    monkeypatch.setattr(psnr_ssim, "_use_opencv", lambda t: False)
    gt = _photo("rocket")
    out = _degrade(gt, "blur")
    for y_channel in (True, False):
        ref = calculate_ssim(_bgr(out), _bgr(gt), 4, test_y_channel=y_channel)
        assert abs(float(ssim(_t(out), _t(gt), 4, y_channel)) - ref) < SSIM_TOL


def test_grayscale_images() -> None:
    gt = _photo("astronaut")[..., :1]
    out = _degrade(_photo("astronaut"), "noise")[..., :1]
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).double().to(DEVICE)  # noqa: E731
    for y_channel in (True, False):
        ref_p = calculate_psnr(out[..., 0], gt[..., 0], 2, test_y_channel=y_channel)
        ref_s = calculate_ssim(out[..., 0], gt[..., 0], 2, test_y_channel=y_channel)
        assert abs(float(psnr(t(out), t(gt), 2, y_channel)) - ref_p) < DB_TOL
        assert abs(float(ssim(t(out), t(gt), 2, y_channel)) - ref_s) < SSIM_TOL


def test_y_channel_is_bt601_and_differs_from_rgb() -> None:
    rgb = torch.tensor([255.0, 0.0, 0.0]).view(1, 3, 1, 1)  # pure red
    assert abs(float(rgb_to_y(rgb)) - (16 + 65.481)) < 1e-4
    gt, out = _photo("chelsea"), _degrade(_photo("chelsea"), "noise")
    assert abs(float(psnr(_t(out), _t(gt), 0, True)) - float(psnr(_t(out), _t(gt), 0, False))) > 0.1


def test_identical_images() -> None:
    x = _t(_photo("coffee"))
    assert torch.isinf(psnr(x, x, 0, False)).all()
    assert torch.allclose(ssim(x, x, 0, True), torch.ones(1, dtype=torch.float64, device=DEVICE))


def test_quantize_equals_tensor2img() -> None:
    g = torch.Generator().manual_seed(0)
    t01 = torch.rand(1, 3, 17, 23, generator=g) * 1.2 - 0.1  # out of range too
    t01[0, 0, 0, :4] = torch.tensor([0.5 / 255, 1.5 / 255, 2.5 / 255, 254.5 / 255])  # ties
    ref = tensor2img(t01, rgb2bgr=False)  # HWC uint8 RGB
    q = quantize(t01.to(DEVICE))
    assert q.dtype == torch.float32
    assert torch.equal(q.cpu()[0].permute(1, 2, 0).to(torch.uint8), torch.from_numpy(ref))


def test_registered_metrics_match_basicsr_validation() -> None:
    """calculate_metric as SRModel calls it: kit metrics on tensors == BasicSR's on tensor2img output."""
    gt = _photo("astronaut")
    sr01 = img2tensor(_degrade(gt, "blur").astype(np.float32) / 255.0 + 0.0013, bgr2rgb=False, float32=True)
    gt01 = img2tensor(gt.astype(np.float32) / 255.0, bgr2rgb=False, float32=True)
    sr_img, gt_img = tensor2img(sr01), tensor2img(gt01)  # BGR uint8, as SRModel.nondist_validation
    for kind in ("psnr", "ssim"):
        opt = {"type": f"calculate_{kind}", "crop_border": 4, "test_y_channel": True, "better": "higher"}
        ref = calculate_metric({"img": sr_img, "img2": gt_img}, opt)
        kit_opt = {**opt, "type": f"calculate_{kind}_kit"}
        on_tensors = calculate_metric({"img": sr01[None].to(DEVICE), "img2": gt01[None].to(DEVICE)}, kit_opt)
        on_numpy = calculate_metric({"img": sr_img, "img2": gt_img}, kit_opt)
        assert isinstance(on_tensors, float)
        tol = DB_TOL if kind == "psnr" else SSIM_TOL
        assert abs(on_tensors - ref) < tol and abs(on_numpy - ref) < tol


def test_registered_metric_rejects_unknown_option() -> None:
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(TypeError, match="test_y"):
        calculate_metric({"img": x, "img2": x}, {"type": "calculate_psnr_kit", "crop_border": 0, "test_y": True})


def test_clear_errors() -> None:
    a = torch.zeros(1, 3, 20, 20, device=DEVICE)
    with pytest.raises(ValueError, match=r"shapes differ: \(1, 3, 20, 20\) vs \(1, 3, 20, 21\)"):
        psnr(a, torch.zeros(1, 3, 20, 21, device=DEVICE), 0, False)
    with pytest.raises(ValueError, match="crop_border=10 leaves nothing"):
        psnr(a, a, 10, False)
    with pytest.raises(ValueError, match="smaller than the 11x11 window"):
        ssim(a, a, 5, False)
    with pytest.raises(ValueError, match="needs 3 \\(RGB\\) or 1 channels"):
        ssim(torch.zeros(1, 4, 20, 20), torch.zeros(1, 4, 20, 20), 0, True)
    with pytest.raises(TypeError, match="torch tensors"):
        psnr(np.zeros((20, 20, 3)), np.zeros((20, 20, 3)), 0, False)


def test_warns_on_unit_range_inputs(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1), device="cpu").to(DEVICE)
    logger = logging.getLogger("basicsr")
    logger.addHandler(caplog.handler)
    try:
        psnr(x, x * 0.9, 0, False)
    finally:
        logger.removeHandler(caplog.handler)
    assert "quantize" in caplog.text
