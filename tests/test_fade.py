"""The channel fade (``train.recipes.fade``): the channels a prune would cut reach exactly zero on schedule, and
``kit-prune`` then cuts exactly them, so the pruned network computes the faded one's function."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split

import pytest
import torch

from kit.archs import SPANStudent
from kit.distill.recipes.fade import ChannelFade, fade_slices
from kit.prune import PruneSettings, PruneTarget, prune_teacher
from kit.registry import OptionsKeyError
from tests.helpers import build, distill_options, free_port, tiny_teacher_checkpoint

SPAN = {"type": "SPANStudent", "num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 2}


def _options(bundled_root, tmp_path, network_g: dict, **fade) -> dict:
    net, ckpt = tiny_teacher_checkpoint(tmp_path / "t.pth")
    opt = distill_options(bundled_root, "fade", net, ckpt)
    opt["network_g"] = dict(network_g)
    opt["train"]["distill"] = {"output": {"loss": {"type": "L1Loss", "loss_weight": 1.0}}}
    opt["train"]["recipes"] = {"fade": {"width": 5, "end_iter": 4, **fade}}
    opt["train"]["ema_decay"] = 0
    return opt


def test_the_schedule_is_linear_to_zero_at_end_iter() -> None:
    fade = ChannelFade(width=4, end_iter=4)
    assert [fade.remaining(i) for i in (0, 1, 2, 4, 9)] == [1.0, 0.75, 0.5, 0.0, 0.0]
    with pytest.raises(OptionsKeyError, match="end_iter must be >= 1"):
        ChannelFade(width=4, end_iter=0)


def test_the_cut_channels_are_those_kit_prune_cuts() -> None:
    torch.manual_seed(0)
    net = SPANStudent(num_feat=8, num_block=2, deploy=True).eval()
    x = torch.rand(4, 3, 12, 12)
    cut = fade_slices(net, 5, x)
    assert cut and all(len(channels) == 3 for channels in cut.values())
    with pytest.raises(OptionsKeyError, match="cuts nothing"):
        fade_slices(net, 8, x)


def test_fading_in_training_zeroes_the_cut_channels_and_the_prune_then_keeps_the_function(
    bundled_root, tmp_path
) -> None:
    model = build(_options(bundled_root, tmp_path, {**SPAN, "deploy": True}), tmp_path)
    fade = model.recipes.get("fade")
    torch.manual_seed(0)
    batches = [(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)) for _ in range(6)]
    norms = []
    for step, (lq, gt) in enumerate(batches, 1):
        model.feed_data({"lq": lq, "gt": gt})
        model.optimize_parameters(step)
        norms.append(fade.cut_norm())
    assert norms[0] > norms[1] > norms[2] > 0  # scaled down step by step, while the rest trains
    assert norms[3:] == [0.0, 0.0, 0.0]  # exactly zero from end_iter on, and kept there
    net = model.get_bare_model(model.net_g).eval()
    crops = torch.rand(6, 3, 12, 12)
    settings = PruneSettings(PruneTarget(width=5), refit=False)
    pruned = prune_teacher("SPANStudent", net.state_dict(), crops, settings).deployed
    with torch.no_grad():
        torch.testing.assert_close(pruned(crops), net(crops), atol=1e-5, rtol=0)


def test_the_cut_is_kept_in_the_resume_state() -> None:
    fade = ChannelFade(width=4, end_iter=4)
    fade.cut = {"conv_1.eval_conv": [1, 5]}
    again = ChannelFade(width=4, end_iter=4)
    again.load_state_dict(fade.state_dict())
    assert again.cut == fade.cut


@pytest.mark.parametrize(
    ("network_g", "message"),
    [
        ({**SPAN, "deploy": False}, "set network_g:deploy: true"),
        (
            {"type": "SRVGGNetCompact", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 4},
            "SRVGGNetCompact",
        ),
    ],
)
def test_a_network_that_cannot_be_faded_is_refused_in_one_line(bundled_root, tmp_path, network_g, message) -> None:
    with pytest.raises(OptionsKeyError, match=message) as err:
        build(_options(bundled_root, tmp_path, network_g), tmp_path)
    assert "\n" not in str(err.value)


def test_an_ema_is_refused_in_one_line(bundled_root, tmp_path) -> None:
    opt = _options(bundled_root, tmp_path, {**SPAN, "deploy": True})
    opt["train"]["ema_decay"] = 0.999
    with pytest.raises(OptionsKeyError, match="needs train:ema_decay: 0") as err:
        build(opt, tmp_path)
    assert "\n" not in str(err.value)


def _fade_rank(rank: int, world: int, port: int, out: str) -> None:
    """One gloo rank: the same network, a first batch of its own; write the channels it fades."""
    import json
    import os
    from types import SimpleNamespace

    import torch.distributed as dist

    from kit.distill.recipes.base import Step

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        net = SPANStudent(num_feat=8, num_block=2, deploy=True)
        torch.manual_seed(100 + rank)  # each rank's batch differs
        lq = torch.rand(4, 3, 12, 12) * (1 + 3 * rank)
        host = SimpleNamespace(opt={"network_g": {**SPAN, "deploy": True}, "train": {}}, net_g=net, lq=lq)
        host.get_bare_model = lambda m: m
        fade = ChannelFade(width=5, end_iter=4)
        fade.bind(host)
        fade.terms(Step(host, 1, torch.zeros(1), {}, torch.zeros(1), {}))
        with open(f"{out}.{rank}", "w") as f:
            json.dump(fade.cut, f)
    finally:
        dist.destroy_process_group()


def test_every_ddp_rank_fades_rank_0s_channels(tmp_path) -> None:
    import json

    import torch.multiprocessing as mp

    out = str(tmp_path / "cut")
    mp.spawn(_fade_rank, args=(2, free_port(), out), nprocs=2, join=True)
    cuts = [json.loads((tmp_path / f"cut.{r}").read_text()) for r in range(2)]
    assert cuts[0] and cuts[0] == cuts[1]
