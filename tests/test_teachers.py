"""Teacher loading: spandrel detection of public checkpoint layouts, safe loading, clear errors, freezing."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

import kit  # noqa: F401  (adapts BasicSR to current torchvision before basicsr is imported)
from kit.checkpoint import CheckpointError, save_atomic
from kit.teachers import (
    LoadedTeacher,
    TeacherError,
    load_teacher,
    load_teacher_with_info,
    load_teachers,
    teacher_entries,
    teachers_from_options,
    weighted_mean_output,
)

DEVICE = torch.device(os.environ.get("KIT_TEST_DEVICE", "cpu"))

# Tiny configs spandrel can read back: its ESRGAN builder assumes num_grow_ch 32, its SwinIR reads img_size
# from blocks.1's attention mask (depth >= 2) and assumes img_range 255 only for window 7.
RRDB_X4 = {"type": "RRDBNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 16, "num_block": 1, "num_grow_ch": 32}
RRDB_X2 = {**RRDB_X4, "scale": 2}
RRDB_X4 = {**RRDB_X4, "scale": 4}
SWIN_X2 = {
    "type": "SwinIR",
    "upscale": 2,
    "in_chans": 3,
    "img_size": 16,
    "window_size": 4,
    "img_range": 1.0,
    "depths": [2],
    "embed_dim": 12,
    "num_heads": [2],
    "mlp_ratio": 2.0,
    "upsampler": "pixelshuffle",
    "resi_connection": "1conv",
}
SRVGG_X4 = {"type": "SRVGGNetCompact", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 16, "num_conv": 4, "upscale": 4}


def build_network(opt: dict) -> torch.nn.Module:
    from basicsr.archs import build_network as build  # after ``import kit`` (kit.compat)

    return build(opt)


def _net(opt: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_network(dict(opt)).eval()
    with torch.no_grad():  # random, not default init: a wrongly mapped tensor must change the output
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def _save(tmp_path, name: str, net: torch.nn.Module, layout: str) -> str:
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    obj = {"params_ema": sd, "bare": sd, "params": sd}[layout]
    obj = obj if layout == "bare" else {layout: sd}
    path = tmp_path / name
    save_atomic(obj, path)
    return str(path)


def _x(size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


@pytest.mark.parametrize(
    ("opt", "layout", "filename", "arch_id", "scale"),
    [
        (RRDB_X4, "params_ema", "esrgan.pth", "ESRGAN", 4),  # ESRGAN / Real-ESRGAN
        (RRDB_X2, "params", "realesrgan_x2.pth", "ESRGAN", 2),  # Real-ESRGAN ×2 (pixel-unshuffle)
        (RRDB_X2, "bare", "rrdb.safetensors", "ESRGAN", 2),
        (SRVGG_X4, "params", "realesr-general.pth", "Compact", 4),  # Real-ESRGAN Compact
        (SWIN_X2, "params", "swinir_official.pth", "SwinIR", 2),  # SwinIR official release
        (SWIN_X2, "bare", "swinir.safetensors", "SwinIR", 2),
    ],
)
def test_auto_teacher_detects_public_layouts(tmp_path, opt, layout, filename, arch_id, scale):
    ref = _net(opt).to(DEVICE)
    path = _save(tmp_path, filename, ref.cpu(), layout)
    net, info = load_teacher_with_info({"type": "AutoTeacher"}, path, scale=scale)
    assert (info.detected_as, info.scale, info.in_channels, info.out_channels) == (arch_id, scale, 3, 3)
    assert info.source == "spandrel" and info.checkpoint == path
    assert info.num_params == sum(p.numel() for p in ref.parameters())
    ref.to(DEVICE)
    net.to(DEVICE)
    x = _x()
    with torch.no_grad():
        want, got = ref(x), net(x)
    assert got.shape == (1, 3, 16 * scale, 16 * scale)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_declared_teacher_matches_hand_built(tmp_path):
    ref = _net(RRDB_X2)
    path = _save(tmp_path, "rrdb.pth", ref, "params_ema")
    net, info = load_teacher_with_info(RRDB_X2, path, scale=2)
    assert (info.source, info.architecture, info.scale, info.in_channels, info.out_channels) == (
        "declared",
        "RRDBNet",
        2,
        3,
        3,
    )
    with torch.no_grad():
        torch.testing.assert_close(net.to(DEVICE)(_x()), ref.to(DEVICE)(_x()))


@pytest.mark.parametrize("how", ["torch_save_open", "torch_save_system", "raw_pickle_open"])
@pytest.mark.parametrize("network", [{"type": "AutoTeacher"}, RRDB_X4])
def test_code_carrying_pickle_is_refused_and_never_runs(tmp_path, how, network):
    victim = tmp_path / "pwned.txt"

    class Evil:
        def __reduce__(self):
            if how.endswith("system"):
                return (os.system, (f"touch {victim}",))
            return (open, (str(victim), "w"))

    path = tmp_path / "teacher.pth"
    payload = {"params_ema": {"conv_first.weight": torch.zeros(1)}, "x": Evil()}
    if how.startswith("torch_save"):
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    assert not victim.exists()
    with pytest.raises(CheckpointError, match="arbitrary Python objects.*refused"):
        load_teacher(network, str(path))
    assert not victim.exists()


@pytest.mark.parametrize(("network", "net_opt"), [({"type": "AutoTeacher"}, RRDB_X2), (RRDB_X2, RRDB_X2)])
def test_scale_mismatch_names_both_numbers(tmp_path, network, net_opt):
    path = _save(tmp_path, "x2.pth", _net(net_opt), "params_ema")
    with pytest.raises(TeacherError, match=r"×2 but the options say scale 4"):
        load_teacher(network, path, scale=4)


def test_channel_mismatch_is_refused(tmp_path):
    gray = {**SRVGG_X4, "num_in_ch": 1, "num_out_ch": 1}
    path = _save(tmp_path, "gray.pth", _net(gray), "params")
    with pytest.raises(TeacherError, match=r"1→1 channels but the task uses 3-channel"):
        load_teacher({"type": "AutoTeacher"}, path, scale=4)
    with pytest.raises(TeacherError, match=r"1→1 channels"):
        load_teacher(gray, path, scale=4)


def test_wrong_keys_summarised_with_looks_like_hint(tmp_path):
    path = _save(tmp_path, "swin.pth", _net(SWIN_X2), "params")
    with pytest.raises(CheckpointError) as err:
        load_teacher(RRDB_X4, path)
    msg = str(err.value)
    assert "does not fit teacher RRDBNet" in msg
    assert "missing (e.g." in msg and "unexpected (e.g." in msg
    assert "It looks like a SwinIR ×2" in msg and "not RRDBNet" in msg
    assert msg.count("\n") == 0  # one summarised line, not torch's list of every key


def test_same_architecture_other_arguments_hint(tmp_path):
    path = _save(tmp_path, "rrdb.pth", _net(RRDB_X4), "params_ema")
    with pytest.raises(CheckpointError, match=r"with another shape.*reads it as ESRGAN ×4 \(16nf, 1nb\).*same arch"):
        load_teacher({**RRDB_X4, "num_feat": 8}, path)


def test_auto_teacher_errors(tmp_path):
    with pytest.raises(TeacherError, match="needs one"):
        load_teacher({"type": "AutoTeacher"}, None)
    with pytest.raises(TeacherError, match="takes no other keys .got scale"):
        load_teacher({"type": "AutoTeacher", "scale": 4}, "whatever.pth")
    edsr = {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1, "upscale": 2}
    path = _save(tmp_path, "edsr.pth", _net(edsr), "params")
    with pytest.raises(CheckpointError, match="spandrel does not recognise"):
        load_teacher({"type": "AutoTeacher"}, path)
    grow8 = {**RRDB_X4, "num_grow_ch": 8}
    path = _save(tmp_path, "grow8.pth", _net(grow8), "params_ema")
    with pytest.raises(CheckpointError, match=r"recognised ESRGAN but could not build.*type: RRDBNet"):
        load_teacher({"type": "AutoTeacher"}, path)
    with pytest.raises(TypeError, match="cannot be built without its checkpoint"):
        build_network({"type": "AutoTeacher"})


def test_declared_options_are_strict():
    with pytest.raises(TeacherError, match="no argument 'upscal' \\(did you mean 'upscale'"):
        load_teacher({**SWIN_X2, "upscal": 4}, None)  # BasicSR's SwinIR would swallow it in **kwargs
    with pytest.raises(TeacherError, match="unknown type 'RRDBNett'.*closest: RRDBNet.*AutoTeacher"):
        load_teacher({"type": "RRDBNett"}, None)


def test_teacher_is_frozen_in_eval(tmp_path):
    opt = {**SWIN_X2, "drop_path_rate": 0.5}
    path = _save(tmp_path, "swin.pth", _net(opt), "params")
    net = load_teacher(opt, path, scale=2).to(DEVICE)
    assert not any(p.requires_grad for p in net.parameters())
    assert not any(m.training for m in net.modules())
    x = _x()
    torch.manual_seed(0)
    a = net(x)
    torch.manual_seed(1)
    b = net(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    net.train()  # the same network in train mode drops paths: the check above can fail
    torch.manual_seed(0)
    c = net(x)
    torch.manual_seed(1)
    assert not torch.allclose(c, net(x))


def test_weighted_mean_output():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.rand(2, 3, 4, 4, generator=g) for _ in range(3))
    got = weighted_mean_output({"a": a, "b": b, "c": c}, {"a": 1.0, "b": 3.0, "c": 4})
    torch.testing.assert_close(got, (1 * a + 3 * b + 4 * c) / 8)
    torch.testing.assert_close(weighted_mean_output({"a": a}, {"a": 0.2}), a)
    with pytest.raises(TeacherError, match="without a weight \\['b'\\]"):
        weighted_mean_output({"a": a, "b": b}, {"a": 1.0})
    with pytest.raises(TeacherError, match="positive"):
        weighted_mean_output({"a": a, "b": b}, {"a": 1.0, "b": -1.0})
    with pytest.raises(TeacherError, match="differ in shape"):
        weighted_mean_output({"a": a, "b": b[:, :, :2]}, {"a": 1.0, "b": 1.0})


def test_load_two_teachers(tmp_path):
    rrdb, swin = _net(RRDB_X2), _net(SWIN_X2)
    entries = {
        "rrdb": {"network": RRDB_X2, "checkpoint": _save(tmp_path, "a.pth", rrdb, "params_ema"), "weight": 1},
        "swin": {"network": {"type": "AutoTeacher"}, "checkpoint": _save(tmp_path, "b.safetensors", swin, "bare")},
    }
    entries["swin"]["weight"] = 3.0
    teachers = load_teachers(entries, scale=2)
    assert list(teachers) == ["rrdb", "swin"]
    assert all(isinstance(t, LoadedTeacher) for t in teachers.values())
    assert [t.weight for t in teachers.values()] == [0.25, 0.75]
    assert teachers["swin"].info.detected_as == "SwinIR" and teachers["rrdb"].info.source == "declared"
    x = _x()
    outs = {n: t.net.to(DEVICE)(x) for n, t in teachers.items()}
    mean = weighted_mean_output(outs, {n: t.weight for n, t in teachers.items()})
    with torch.no_grad():
        want = 0.25 * rrdb.to(DEVICE)(x) + 0.75 * swin.to(DEVICE)(x)
    torch.testing.assert_close(mean, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(TeacherError, match="teacher 'rrdb'.*×2 but the options say scale 4"):
        load_teachers(entries, scale=4)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"network": {"type": "AutoTeacher"}, "checkpoint": "b.pth", "weight": 0}, "teachers.bad: weight must be"),
        ({"network": {"type": "AutoTeacher"}, "checkpoint": "b.pth", "weight": True}, "teachers.bad: weight must be"),
        ({"network": {"type": "AutoTeacher"}, "checkpoint": "b.pth", "wieght": 1}, "teachers.bad: unknown key.*wieght"),
        ({"checkpoint": "b.pth"}, "teachers.bad: 'network' must be a mapping"),
        ({"network": {"type": "AutoTeacher"}, "checkpoint": 3}, "teachers.bad: 'checkpoint' must be a file path"),
        ("b.pth", "teachers.bad: expected a mapping"),
    ],
)
def test_load_teachers_validates_before_loading(entry, match):
    good = {"network": {"type": "AutoTeacher"}, "checkpoint": "/nonexistent/a.pth"}
    with pytest.raises(TeacherError, match=match):
        load_teachers({"good": good, "bad": entry})  # "good" would fail to load: validation comes first


def test_teacher_entries_from_options(tmp_path):
    path = _save(tmp_path, "rrdb.pth", _net(RRDB_X2), "params")
    opt = {"scale": 2, "network_t": RRDB_X2, "path": {"pretrain_network_t": path, "param_key_t": "params"}}
    entries = teacher_entries(opt)
    assert entries == {
        "teacher": {"network": RRDB_X2, "checkpoint": path, "weight": 1.0, "param_key": "params", "strict": True}
    }
    (teacher,) = teachers_from_options(opt).values()
    assert teacher.weight == 1.0 and teacher.info.scale == 2
    assert teacher_entries({"network_g": {}}) == {}
    with pytest.raises(TeacherError, match="both 'network_t' and 'teachers:'"):
        teacher_entries({**opt, "teachers": {"a": {"network": RRDB_X2}}})
    rel = teacher_entries({"teachers": {"a": {"network": RRDB_X2, "checkpoint": "pretrained/a.pth"}}})
    assert os.path.isabs(rel["a"]["checkpoint"]) and rel["a"]["checkpoint"].endswith("pretrained/a.pth")
