"""L2Loss and ChannelWiseDivergence: kornia-style checks, values pinned by independent numpy loops."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision, registers the kit)

# isort: split
from basicsr.utils.registry import LOSS_REGISTRY

from kit.losses import ChannelWiseDivergence, L2Loss, channel_wise_divergence, l2_loss

DEVICE = torch.device(os.environ.get("KIT_TEST_DEVICE", "cpu"))


def _pair(shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(shape, generator=g, dtype=dtype)
    t = torch.randn(shape, generator=g, dtype=dtype) * 3 + 0.5
    return s.to(DEVICE), t.to(DEVICE)


# ---------------------------------------------------------------- independent references (numpy, loops)
def _ref_l2(s: np.ndarray, t: np.ndarray, normalize: bool, div_element: bool) -> float:
    total = 0.0
    for i in range(s.shape[0]):
        a = s[i].ravel().astype(np.float64)
        b = t[i].ravel().astype(np.float64)
        if normalize:
            a = a / math.sqrt(sum(v * v for v in a))
            b = b / math.sqrt(sum(v * v for v in b))
        total += sum((x - y) ** 2 for x, y in zip(a, b))
    return total / (s.size if div_element else s.shape[0])


def _ref_cwd(s: np.ndarray, t: np.ndarray, tau: float) -> float:
    n, c = s.shape[:2]
    total = 0.0
    for i in range(n):
        for j in range(c):
            xs = s[i, j].ravel().astype(np.float64) / tau
            xt = t[i, j].ravel().astype(np.float64) / tau
            ps = [math.exp(v) for v in xs]
            pt = [math.exp(v) for v in xt]
            zs, zt = sum(ps), sum(pt)
            for a, b in zip(ps, pt):
                q, p = a / zs, b / zt
                total += p * (math.log(p) - math.log(q))
    return tau**2 * total / (n * c)


# ---------------------------------------------------------------- L2Loss
class TestL2Loss:
    def test_registered(self):
        assert LOSS_REGISTRY.get("L2Loss") is L2Loss

    def test_smoke(self):
        s, t = _pair((2, 4, 5, 6))
        loss = L2Loss()(s, t)
        assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0

    @pytest.mark.parametrize("shape", [(3, 7), (2, 4, 5, 6), (1, 2, 3, 4, 2)])
    @pytest.mark.parametrize("normalize", [True, False])
    @pytest.mark.parametrize("div_element", [True, False])
    def test_value_matches_reference(self, shape, normalize, div_element):
        s, t = _pair(shape, seed=len(shape))
        got = l2_loss(s, t, normalize=normalize, div_element=div_element).item()
        want = _ref_l2(s.cpu().numpy(), t.cpu().numpy(), normalize, div_element)
        assert got == pytest.approx(want, rel=1e-5)

    def test_known_value(self):
        # Hand-computed: s=(3,4)->(0.6,0.8), t=(1,0); sum of squares = 0.16+0.64 = 0.8; /N=1.
        s = torch.tensor([[3.0, 4.0]], device=DEVICE)
        t = torch.tensor([[2.0, 0.0]], device=DEVICE)
        assert l2_loss(s, t).item() == pytest.approx(0.8)
        assert l2_loss(s, t, normalize=False, div_element=True).item() == pytest.approx((1 + 16) / 2)

    @pytest.mark.parametrize("normalize", [True, False])
    def test_zero_on_identical(self, normalize):
        s, _ = _pair((2, 3, 4, 4))
        assert l2_loss(s, s.clone(), normalize=normalize).item() == pytest.approx(0.0, abs=1e-12)

    def test_normalize_ignores_scale(self):
        s, t = _pair((2, 3, 4, 4))
        assert l2_loss(5 * s, 0.1 * t).item() == pytest.approx(l2_loss(s, t).item(), rel=1e-5)

    @pytest.mark.parametrize("normalize", [True, False])
    def test_module_equals_function(self, normalize):
        s, t = _pair((2, 3, 4, 4))
        mod = L2Loss(loss_weight=1.0, normalize=normalize, div_element=True)
        assert torch.equal(mod(s, t), l2_loss(s, t, normalize=normalize, div_element=True))

    def test_loss_weight_linear(self):
        s, t = _pair((2, 3, 4, 4))
        base = L2Loss(loss_weight=1.0)(s, t)
        torch.testing.assert_close(L2Loss(loss_weight=2.5)(s, t), 2.5 * base)
        assert L2Loss(loss_weight=0.0)(s, t).item() == 0.0

    @pytest.mark.parametrize("normalize", [True, False])
    def test_gradcheck(self, normalize):
        s, t = _pair((2, 3, 3, 2), dtype=torch.float64)
        s.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x: l2_loss(x, t, normalize=normalize), (s,))

    def test_teacher_is_constant(self):
        s, t = _pair((2, 3, 4, 4))
        s.requires_grad_(True)
        t.requires_grad_(True)
        l2_loss(s, t).backward()
        assert s.grad is not None and s.grad.abs().sum() > 0
        assert t.grad is None

    def test_teacher_from_inference_mode(self):
        s, t = _pair((2, 3, 4, 4))
        with torch.inference_mode():
            t = t.clone()
        s.requires_grad_(True)
        for normalize in (True, False):
            l2_loss(s, t, normalize=normalize).backward()
        assert s.grad is not None

    def test_half_inputs_computed_in_float32(self):
        # Sum of squares over 16*64*64 values of 40 overflows float16 (max 65504) unless cast up.
        s = torch.full((1, 16, 64, 64), 40.0, dtype=torch.bfloat16, device=DEVICE)
        t = torch.zeros_like(s)
        loss = l2_loss(s, t, normalize=False)
        assert loss.dtype == torch.float32
        assert loss.item() == pytest.approx(16 * 64 * 64 * 1600.0, rel=1e-3)

    def test_shape_mismatch_error(self):
        s, _ = _pair((2, 48, 4, 4))
        _, t = _pair((2, 64, 4, 4))
        with pytest.raises(ValueError, match=r"\(2, 48, 4, 4\).*\(2, 64, 4, 4\).*connector"):
            L2Loss()(s, t)

    def test_1d_error(self):
        with pytest.raises(ValueError, match="at least 2"):
            l2_loss(torch.ones(4, device=DEVICE), torch.ones(4, device=DEVICE))

    def test_strict_constructor(self):
        with pytest.raises(TypeError):
            L2Loss(loss_wieght=1.0)


# ---------------------------------------------------------------- ChannelWiseDivergence
class TestChannelWiseDivergence:
    def test_registered(self):
        assert LOSS_REGISTRY.get("ChannelWiseDivergence") is ChannelWiseDivergence

    def test_smoke(self):
        s, t = _pair((2, 4, 5, 6))
        loss = ChannelWiseDivergence(tau=2.0)(s, t)
        assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0

    @pytest.mark.parametrize("tau", [0.5, 1.0, 4.0])
    @pytest.mark.parametrize("shape", [(1, 1, 2, 3), (2, 3, 4, 5), (3, 2, 1, 7)])
    def test_value_matches_reference(self, tau, shape):
        s, t = _pair(shape, seed=int(tau * 10))
        got = channel_wise_divergence(s, t, tau).item()
        want = _ref_cwd(s.cpu().numpy(), t.cpu().numpy(), tau)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7)

    @pytest.mark.parametrize("tau", [1.0, 3.0])
    def test_zero_on_identical(self, tau):
        s, _ = _pair((2, 3, 4, 4))
        assert channel_wise_divergence(s, s.clone(), tau).item() == pytest.approx(0.0, abs=1e-6)

    def test_invariant_to_per_channel_shift(self):
        # softmax over positions ignores a constant added to a whole channel.
        s, t = _pair((2, 3, 4, 4))
        shift = torch.randn(2, 3, 1, 1, device=DEVICE) * 10
        assert channel_wise_divergence(s + shift, t, 2.0).item() == pytest.approx(
            channel_wise_divergence(s, t, 2.0).item(), rel=1e-4
        )

    def test_module_equals_function(self):
        s, t = _pair((2, 3, 4, 4))
        torch.testing.assert_close(ChannelWiseDivergence(tau=3.0)(s, t), channel_wise_divergence(s, t, 3.0))

    def test_loss_weight_linear(self):
        s, t = _pair((2, 3, 4, 4))
        base = ChannelWiseDivergence(tau=2.0, loss_weight=1.0)(s, t)
        torch.testing.assert_close(ChannelWiseDivergence(tau=2.0, loss_weight=3.0)(s, t), 3.0 * base)

    @pytest.mark.parametrize("tau", [1.0, 4.0])
    def test_gradcheck(self, tau):
        s, t = _pair((2, 2, 3, 2), dtype=torch.float64)
        s.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x: channel_wise_divergence(x, t, tau), (s,))

    def test_stable_for_large_values(self):
        s, t = _pair((1, 2, 4, 4))
        loss = channel_wise_divergence(s * 1e4, t * 1e4, 1.0)
        assert torch.isfinite(loss)

    def test_float32_under_autocast(self):
        s, t = _pair((2, 3, 4, 4))
        with torch.autocast(device_type=DEVICE.type, dtype=torch.bfloat16):
            loss = channel_wise_divergence(s.bfloat16(), t.bfloat16(), 2.0)
        assert loss.dtype == torch.float32
        want = _ref_cwd(s.bfloat16().float().cpu().numpy(), t.bfloat16().float().cpu().numpy(), 2.0)
        assert loss.item() == pytest.approx(want, rel=1e-5)

    def test_teacher_is_constant_and_inference_tensor_ok(self):
        s, t = _pair((2, 3, 4, 4))
        with torch.inference_mode():
            t_inf = t.clone()
        s.requires_grad_(True)
        channel_wise_divergence(s, t_inf, 2.0).backward()
        assert s.grad is not None and s.grad.abs().sum() > 0

    def test_shape_mismatch_error(self):
        s, _ = _pair((2, 48, 4, 4))
        _, t = _pair((2, 64, 4, 4))
        with pytest.raises(ValueError, match=r"\(2, 48, 4, 4\).*\(2, 64, 4, 4\)"):
            ChannelWiseDivergence()(s, t)

    def test_not_4d_error(self):
        s, t = _pair((2, 16))
        with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\).*\(2, 16\)"):
            channel_wise_divergence(s, t)

    def test_bad_tau(self):
        with pytest.raises(ValueError, match="tau"):
            ChannelWiseDivergence(tau=0.0)
