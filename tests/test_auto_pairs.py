"""Automatic feature pairs (train.distill.auto): block sequences, same-depth placement, connectors, and the step.

Every teacher family is loaded from a checkpoint file, random weights, tiny sizes: spandrel's families through
``AutoTeacher`` (SPAN, RRDBNet/ESRGAN, SwinIR, HAT, RCAN, OmniSR) and the kit's own students as declared teachers.
"""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import copy

import pytest
import torch
import yaml
from safetensors.torch import save_file

from kit.cli import inspect as kit_inspect
from kit.distill.pairs.auto import (
    AutoSpec,
    auto_entries,
    find_layout,
    merge_auto,
    pairs_yaml,
    parse_auto,
    same_depth,
)
from kit.distill.pairs.tokens import as_map, token_grid
from kit.distill.pairs.wiring import DistillOptionsError
from kit.losses.cwd import ChannelWiseDivergence, channel_wise_divergence, cwd_target
from tests.helpers import REPO, build, tiny_options, write_options

CWD = {"type": "ChannelWiseDivergence", "tau": 4.0, "loss_weight": 1.0}
STUDENT = {"type": "RLFNStudent", "num_feat": 8, "num_block": 2, "scale": 4, "img_residual": "bicubic"}
SPAN_CH48 = REPO.parent / "shared" / "teachers" / "spanx4_ch48.safetensors"
# The four pairs options/distill_pretrained.yml carried by hand before train.distill.auto (SPAN x4 ch48 teacher).
HAND_WRITTEN_SPAN = {
    f"auto_{i}": {
        "student": f"body.{i}",
        "teacher": teacher,
        "connector": {"type": "ConvConnector", "in_channels": 32, "out_channels": 48, "norm": None, "act": None},
        "loss": CWD,
    }
    for i, teacher in enumerate(["block_2", "block_3", "block_5", "conv_cat"])
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second OpenMP thread only spin-waits (seconds per test on a shared 2-core CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _save(net: torch.nn.Module, path) -> str:
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return str(path)


def _spandrel(family: str) -> torch.nn.Module:
    """A tiny network of a spandrel-detected family (random weights)."""
    torch.manual_seed(0)
    if family == "span":
        from spandrel.architectures.SPAN import SPAN

        return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=4)
    if family == "rrdbnet":  # BasicSR's RRDBNet, detected by spandrel as ESRGAN (old key names)
        from basicsr.archs.rrdbnet_arch import RRDBNet

        return RRDBNet(3, 3, scale=4, num_feat=16, num_block=2, num_grow_ch=32)
    if family == "swinir":
        from basicsr.archs.swinir_arch import SwinIR

        return SwinIR(
            upscale=4, in_chans=3, img_size=16, window_size=4, img_range=1.0, depths=[2, 2], embed_dim=12,
            num_heads=[2, 2], mlp_ratio=2.0, upsampler="pixelshuffle", resi_connection="1conv",
        )  # fmt: skip
    if family == "hat":
        from spandrel.architectures.HAT import HAT

        return HAT(
            img_size=16, embed_dim=12, depths=(2, 2), num_heads=(2, 2), window_size=4, compress_ratio=3,
            squeeze_factor=3, upscale=4, upsampler="pixelshuffle", num_feat=16, mlp_ratio=2.0,
        )  # fmt: skip
    if family == "rcan":
        from spandrel.architectures.RCAN import RCAN

        return RCAN(scale=4, n_resgroups=3, n_resblocks=1, n_feats=16, reduction=4)
    from spandrel.architectures.OmniSR import OmniSR

    return OmniSR(num_feat=16, block_num=1, res_num=2, up_scale=4, window_size=8)


# family -> (teacher blocks, its last feature before upsampling, LR crop side), as read off each architecture's forward
SPANDREL = {
    "span": ([f"block_{k}" for k in range(1, 7)], "conv_cat", 8),
    "rrdbnet": (["model.1.sub.0", "model.1.sub.1"], "model.1", 8),  # model.1: body + shortcut, fed to upsampling
    "swinir": (["layers.0", "layers.1"], "conv_before_upsample", 8),  # token layers (N, L, C)
    "hat": (["layers.0", "layers.1"], "conv_before_upsample", 8),
    "rcan": (["body.0", "body.1", "body.2"], "body", 8),
    "omnisr": (["residual_layer.0", "residual_layer.1"], "output", 16),  # its ESA needs more than 8 px
}
KIT = {  # the kit's own students as declared teachers
    "rlfn": ({"type": "RLFNStudent", "num_feat": 16, "num_block": 3, "scale": 4}, ["body.0", "body.1", "body.2"]),
    "span_student": (
        {"type": "SPANStudent", "num_feat": 16, "num_block": 3, "scale": 4},
        ["block_1", "block_2", "block_3"],
    ),
}


def _teacher_options(family: str, tmp_path) -> tuple[dict, str]:
    if family in SPANDREL:
        return {"type": "AutoTeacher"}, _save(_spandrel(family), tmp_path / f"{family}.safetensors")
    from kit.registry import build_network

    net_opt = KIT[family][0]
    torch.manual_seed(0)
    path = tmp_path / f"{family}.pth"
    torch.save({"params": build_network(dict(net_opt), "network_t").state_dict()}, path)
    return dict(net_opt), str(path)


def _auto_options(bundled_root, tmp_path, family: str, lr_side: int = 8, **auto) -> dict:
    opt = tiny_options(bundled_root, f"auto_{family}")
    opt["datasets"]["train"]["gt_size"] = lr_side * 4
    opt["model_type"] = "DistillModel"
    opt["network_g"] = dict(STUDENT)
    opt["network_t"], opt["path"]["pretrain_network_t"] = _teacher_options(family, tmp_path)
    opt["train"]["distill"] = {
        "output": {"loss": {"type": "L1Loss", "loss_weight": 1.0}},
        "auto": {"loss": CWD, **auto},
    }
    opt["train"]["recipes"] = {"balance": {"ratio": 0.1}}
    return opt


# ------------------------------------------------------------------------------------------------ the rule
def test_same_depth_places_student_blocks_at_the_teachers_relative_depth() -> None:
    assert [same_depth(i, 4, 6) for i in range(4)] == [2, 3, 5, 6]  # SPAN's 6 blocks, a 4-block student
    assert [same_depth(i, 8, 6) for i in range(8)] == [1, 2, 3, 3, 4, 5, 6, 6]  # more student blocks than teacher's
    assert [same_depth(i, 4, 8) for i in range(4)] == [2, 4, 6, 8]
    assert [same_depth(i, 3, 3) for i in range(3)] == [1, 2, 3]


def test_token_sequences_read_as_the_maps_patch_unembed_makes() -> None:
    from basicsr.archs.swinir_arch import PatchUnEmbed

    tokens = torch.randn(2, 6 * 10, 5)  # (N, L, C) of a 6x10 grid
    unembed = PatchUnEmbed(img_size=6, patch_size=1, in_chans=5, embed_dim=5)
    torch.testing.assert_close(as_map(tokens, (12, 20)), unembed(tokens, (6, 10)))
    assert token_grid(24 * 24, (24, 24)) == (24, 24) and token_grid(32 * 24, (30, 20)) == (32, 24)
    maps = torch.randn(2, 3, 4, 4)
    assert as_map(maps, (4, 4)) is maps


@pytest.mark.parametrize("family", sorted(SPANDREL))
def test_layout_of_each_spandrel_family(family, tmp_path) -> None:
    from kit.teachers import load_teacher_with_info

    blocks, last, side = SPANDREL[family]
    net, _ = load_teacher_with_info({"type": "AutoTeacher"}, _teacher_options(family, tmp_path)[1], scale=4)
    layout = find_layout(net, torch.rand(1, 3, side, side), "teacher")
    assert (layout.blocks, layout.last) == (blocks, last)
    assert all(len(shape) == 4 for shape in layout.shapes.values())  # token layers count as maps


def test_layout_of_the_kits_students() -> None:
    from kit.registry import build_network

    for net_opt, blocks in KIT.values():
        layout = find_layout(build_network(dict(net_opt), "t"), torch.rand(1, 3, 8, 8))
        assert layout.blocks == blocks
    rlfn = find_layout(build_network(dict(KIT["rlfn"][0]), "t"), torch.rand(1, 3, 8, 8))
    span = find_layout(build_network(dict(KIT["span_student"][0]), "t"), torch.rand(1, 3, 8, 8))
    assert (rlfn.last, span.last) == ("conv_after_body", "conv_cat")
    wrapped = torch.nn.DataParallel(build_network(dict(KIT["rlfn"][0]), "t"))  # as DDP: paths of the bare model
    assert find_layout(wrapped, torch.rand(1, 3, 8, 8)).blocks == KIT["rlfn"][1]


def test_no_block_sequence_says_what_to_write_by_hand() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3, padding=1), torch.nn.PixelShuffle(4))
    with pytest.raises(DistillOptionsError) as err:
        find_layout(net, torch.rand(1, 3, 8, 8), "teacher")
    message = str(err.value)
    assert "\n" not in message and "no sequence of repeated blocks in the teacher" in message
    assert "train:distill" in message and "kit-inspect" in message


# ------------------------------------------------------------------------------------------------ options
def test_auto_options_are_checked() -> None:
    assert parse_auto({"loss": CWD}, ["teacher"]) == AutoSpec(CWD, "block", {"type": "ConvConnector", "norm": None,
                                                                           "act": None}, "teacher")  # fmt: skip
    for bad, match in (
        ({"loss": CWD, "evry": "block"}, r"unknown key\(s\) \['evry'\]"),
        ({"every": "block"}, "needs 'loss"),
        ({"loss": CWD, "every": "layer"}, "every must be one of block, last"),
        ({"loss": CWD, "teacher_name": "b"}, "teacher_name 'b' is not a teacher"),
    ):
        with pytest.raises(DistillOptionsError, match=match):
            parse_auto(bad, ["teacher"])


def test_explicit_pairs_win_and_the_yaml_pastes_back() -> None:
    from kit.distill.pairs.auto import Layout

    student = Layout(["body.0", "body.1", "body.2"], "RLFB", "conv_after_body", {})
    student.shapes = {p: (1, 8, 8, 8) for p in [*student.blocks, student.last]}
    teacher = Layout(["l.0", "l.1", "l.2", "l.3"], "Block", "tail", {})
    teacher.shapes = {p: (1, 16, 10, 10) for p in [*teacher.blocks, teacher.last]}
    entries = auto_entries(parse_auto({"loss": CWD}, ["teacher"]), student, teacher)
    assert [(e["student"], e["teacher"]) for e in entries.values()] == [
        ("body.0", "l.1"),
        ("body.1", "l.2"),
        ("body.2", "tail"),
    ]
    conn = entries["auto_0"]["connector"]
    assert (conn["in_channels"], conn["out_channels"], conn["resize"]) == (8, 16, "bilinear")  # 8x8 vs 10x10
    pasted = yaml.safe_load(pairs_yaml(entries))["train"]["distill"]
    assert pasted == entries
    mine = {"student": "body.1", "teacher": "l.0", "loss": CWD}
    merged = merge_auto({"output": {"loss": {}}, "auto": {"loss": CWD}, "auto_0": None, "mine": mine}, entries)
    assert list(merged) == ["output", "auto_2", "auto_0", "mine"]  # auto_1 lost to 'mine' (same student module)
    assert merged["auto_0"] is None and merged["mine"] == mine
    last = auto_entries(parse_auto({"loss": CWD, "every": "last"}, ["teacher"]), student, teacher)
    assert [(e["student"], e["teacher"]) for e in last.values()] == [("body.2", "tail")]


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("family", [*sorted(SPANDREL), *sorted(KIT)])
def test_twenty_steps_with_automatic_pairs(family, bundled_root, tmp_path) -> None:
    side = SPANDREL[family][2] if family in SPANDREL else 8
    model = build(_auto_options(bundled_root, tmp_path, family, side), tmp_path)  # + the pairs' dry forward
    assert [p.student for p in model.pairs] == ["body.0", "body.1"]
    teacher_last = SPANDREL[family][1] if family in SPANDREL else {"rlfn": "conv_after_body"}.get(family, "conv_cat")
    assert model.pairs[-1].teacher == teacher_last
    before = [p.detach().clone() for p in model.connectors.parameters()]
    g = torch.Generator().manual_seed(0)
    for it in range(1, 21):
        lq = torch.rand(2, 3, side, side, generator=g)
        model.feed_data({"lq": lq, "gt": torch.rand(2, 3, 4 * side, 4 * side, generator=g)})
        model.optimize_parameters(it)
    assert {"l_pix", "l_out", "l_auto_0", "l_auto_1"} <= set(model.log_dict)
    assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.connectors.parameters()))  # every pair trains


def test_the_chosen_pairs_are_logged_as_yaml(bundled_root, tmp_path, caplog) -> None:
    import logging

    logger = logging.getLogger("basicsr")  # BasicSR's logger does not propagate to the root (caplog)
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.INFO, logger="basicsr"):  # its level is set only with a log file
            model = build(_auto_options(bundled_root, tmp_path, "span"), tmp_path)
    finally:
        logger.removeHandler(caplog.handler)
    text = caplog.text
    assert "Automatic feature pairs" in text and "6 × SPAB (block_1 … block_6" in text
    lines = text[text.index("train:\n") :].splitlines()
    block = [lines[0], *(line for line in lines[1:] if line.startswith("  "))][: 2 + 2 * 5]  # two pairs of 5 lines
    logged = yaml.safe_load("\n".join(block))["train"]["distill"]
    assert list(logged) == [p.name for p in model.pairs]
    assert [e["teacher"] for e in logged.values()] == ["block_3", "conv_cat"]  # 2 student blocks of SPAN's 6
    assert logged["auto_1"]["connector"]["out_channels"] == 16


def test_teacher_side_of_cwd_is_computed_once_per_teacher_feature(bundled_root, tmp_path, monkeypatch) -> None:
    """An 8-block student on SPAN's 6 blocks: two pairs read block_3 and block_6, each teacher softmax made once."""
    opt = _auto_options(bundled_root, tmp_path, "span")
    opt["network_g"]["num_block"] = 8
    model = build(opt, tmp_path)
    teachers = [p.teacher for p in model.pairs]
    assert teachers == ["block_1", "block_2", "block_3", "block_3", "block_4", "block_5", "block_6", "conv_cat"]
    calls = []
    original = ChannelWiseDivergence.prepare_target
    monkeypatch.setattr(ChannelWiseDivergence, "prepare_target", lambda self, t: calls.append(1) or original(self, t))
    model.feed_data({"lq": torch.rand(2, 3, 8, 8), "gt": torch.rand(2, 3, 32, 32)})
    model.optimize_parameters(1)
    assert len(calls) == len(set(teachers)) == 7
    s = model.connectors.connectors["auto_3"](model.student_features(model.lq)["auto_3"].detach())
    alone = ChannelWiseDivergence(tau=4.0)(s, model.teacher_features(model.lq)["auto_3"])
    scale = model.recipes.pair_scale("auto_3", alone, None, 1)
    torch.testing.assert_close(model.log_dict["l_auto_3"], float(alone * scale), rtol=1e-5, atol=1e-8)


def test_a_shared_cwd_target_gives_the_same_loss_and_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64), torch.randn(2, 3, 5, 4, generator=g) * 3
    a, b = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    direct = channel_wise_divergence(a, t.double(), 2.0)
    shared = channel_wise_divergence(b, cwd_target(t.double(), 2.0), 2.0)
    direct.backward()
    shared.backward()
    torch.testing.assert_close(shared, direct)
    torch.testing.assert_close(b.grad, a.grad)
    with pytest.raises(ValueError, match="computed at tau 2.0, not 3.0"):
        channel_wise_divergence(s, cwd_target(t.double(), 2.0), 3.0)


# ------------------------------------------------------------------------------------------------ kit-inspect --auto
@pytest.mark.parametrize("family", [*sorted(SPANDREL), *sorted(KIT)])
def test_inspect_auto_prints_pairs_whose_connectors_fit(family, bundled_root, tmp_path, capsys) -> None:
    """The printed pairs, pasted by hand, pass the training's own dry forward and are the pairs auto makes."""
    opt = _auto_options(bundled_root, tmp_path, family, SPANDREL[family][2] if family in SPANDREL else 8)
    path = write_options(tmp_path / "auto.yml", opt)
    assert kit_inspect.main(["-opt", str(path), "--auto"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out[out.index("train:\n") :])["train"]["distill"]
    assert [e["student"] for e in printed.values()] == ["body.0", "body.1"]
    hand = copy.deepcopy(opt)
    hand["train"]["distill"] = {"output": opt["train"]["distill"]["output"], **printed}
    model = build(hand, tmp_path / "hand")  # its dry forward fails on a connector that does not fit
    if family in SPANDREL:
        blocks, last, _ = SPANDREL[family]
        assert [p.teacher for p in model.pairs] == [blocks[same_depth(0, 2, len(blocks)) - 1], last]
    auto = build(opt, tmp_path / "auto")
    assert [(p.student, p.teacher, p.connector) for p in auto.pairs] == [
        (p.student, p.teacher, p.connector) for p in model.pairs
    ]


def test_inspect_auto_on_a_checkpoint_prints_its_blocks(tmp_path, capsys) -> None:
    path = _save(_spandrel("rcan"), tmp_path / "rcan.safetensors")
    assert kit_inspect.main(["--checkpoint", path, "--auto", "--input-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "3 × ResidualGroup (body.0, body.1, body.2" in out and "last feature before upsampling: body" in out


# ------------------------------------------------------------------------------------------------ the shipped file
def _shipped_pretrained(bundled_root, tmp_path, checkpoint) -> dict:
    from kit.options import load_options

    opt = load_options(REPO / "options/distill_pretrained.yml")
    opt["path"]["pretrain_network_t"] = str(checkpoint)
    opt["datasets"] = tiny_options(bundled_root, "x")["datasets"]
    opt["datasets"]["train"]["gt_size"] = 96  # the shipped crop (the dry forward's size)
    opt["train"]["recipes"].pop("pool")  # labelling the pool is not what this checks
    opt["num_gpu"] = 0
    return opt


def test_shipped_auto_pairs_on_a_span_ch48_are_the_four_written_by_hand(bundled_root, tmp_path) -> None:
    from tests.test_shipped_options import random_span_checkpoint

    opt = _shipped_pretrained(bundled_root, tmp_path, random_span_checkpoint(tmp_path / "span.safetensors"))
    model = build(opt, tmp_path)
    got = {p.name: {"student": p.student, "teacher": p.teacher, "connector": p.connector, "loss": p.loss} for p in
           model.pairs}  # fmt: skip
    assert got == HAND_WRITTEN_SPAN


@pytest.mark.skipif(not SPAN_CH48.is_file(), reason=f"{SPAN_CH48} is absent (the official SPAN x4 weights)")
def test_shipped_auto_pairs_on_the_official_span_ch48_are_the_four_written_by_hand(bundled_root, tmp_path) -> None:
    model = build(_shipped_pretrained(bundled_root, tmp_path, SPAN_CH48), tmp_path)
    got = {p.name: {"student": p.student, "teacher": p.teacher, "connector": p.connector, "loss": p.loss} for p in
           model.pairs}  # fmt: skip
    assert got == HAND_WRITTEN_SPAN


def test_automatic_pairs_draw_no_random_numbers(bundled_root, tmp_path) -> None:
    """The search runs beside the run's random streams: the pasted pairs build the same connectors, and the next
    draw after building is the same (the automatic form trains like the hand-written one, number for number)."""
    opt = _auto_options(bundled_root, tmp_path, "span")
    torch.manual_seed(0)
    auto_model = build(opt, tmp_path)
    auto_next = torch.rand(4)
    explicit = copy.deepcopy(opt)
    explicit["train"]["distill"] = auto_model.resolve_auto_pairs(copy.deepcopy(opt["train"]["distill"]))  # the YAML
    assert "auto" not in explicit["train"]["distill"] and len(auto_model.pairs) == 2
    torch.manual_seed(0)
    hand_model = build(explicit, tmp_path)
    assert torch.equal(torch.rand(4), auto_next)
    auto_state, hand_state = auto_model.connectors.state_dict(), hand_model.connectors.state_dict()
    assert list(auto_state) == list(hand_state)
    assert all(torch.equal(auto_state[k], hand_state[k]) for k in auto_state)
