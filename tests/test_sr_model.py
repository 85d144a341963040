"""KitSRModel: EMA warm-up, non-mutated options, AMP option validation, any optimizer by name."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import copy
from pathlib import Path

import pytest
import torch
from basicsr.models import build_model

from kit.options import finalize
from tests.helpers import build, tiny_options


def step(model, i: int) -> None:
    g = torch.Generator().manual_seed(i)
    lq = torch.rand(2, 3, 8, 8, generator=g)
    model.feed_data({"lq": lq, "gt": torch.rand(2, 3, 32, 32, generator=g)})
    model.optimize_parameters(i)


def test_ema_warms_up_instead_of_staying_at_init(bundled_root: Path, tmp_path: Path) -> None:
    opt = tiny_options(bundled_root, "m", **{"train:ema_decay": 0.999, "train:optim_g:lr": 0.05})
    model = build(opt, tmp_path)
    init = [p.detach().clone() for p in model.net_g_ema.parameters()]
    for i in range(1, 6):
        step(model, i)
    for p_ema, p, p0 in zip(model.net_g_ema.parameters(), model.net_g.parameters(), init):
        # with a plain 0.999 EMA the copy would still be 99.5% the init; warmed up it follows the net
        assert (p_ema - p).abs().sum() < (p_ema - p0).abs().sum()


def test_options_not_mutated_and_optimizer_by_name(bundled_root: Path, tmp_path: Path) -> None:
    opt = tiny_options(bundled_root, "m", **{"train:optim_g": {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.01}})
    finalized = finalize(copy.deepcopy(opt), is_train=True, root=tmp_path)
    finalized.update(dist=False, rank=0, world_size=1, num_gpu=0)
    model = build_model(finalized)
    assert isinstance(model.optimizer_g, torch.optim.AdamW)
    assert finalized["train"]["optim_g"]["type"] == "AdamW"
    assert finalized["train"]["scheduler"]["type"] == "MultiStepLR"
    build_model(finalized)  # a second build from the same options works


def test_amp_option_checked(bundled_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train.amp 'fp8'"):
        build(tiny_options(bundled_root, "m", **{"train:amp": "fp8"}), tmp_path)
    model = build(tiny_options(bundled_root, "m", **{"train:amp": "bf16", "train:channels_last": True}), tmp_path)
    step(model, 1)
    assert model.output.dtype == torch.bfloat16 and torch.isfinite(model.output.float()).all()


def test_non_finite_loss_stops_with_the_terms(bundled_root: Path, tmp_path: Path) -> None:
    model = build(tiny_options(bundled_root, "m"), tmp_path)
    model.feed_data({"lq": torch.full((1, 3, 8, 8), float("nan")), "gt": torch.zeros(1, 3, 32, 32)})
    with pytest.raises(FloatingPointError, match="l_pix=nan"):
        model.optimize_parameters(1)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_step(bundled_root: Path, tmp_path: Path, amp: str) -> None:
    model = build(tiny_options(bundled_root, "amp", **{"train:amp": amp}), tmp_path)
    before = [p.detach().clone() for p in model.net_g.parameters()]
    step(model, 1)
    assert torch.isfinite(torch.tensor(model.log_dict["l_pix"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.net_g.parameters(), strict=True))
