"""kit-inspect: module paths and shapes of a student and a teacher, and connector advice for feature pairs."""

from __future__ import annotations

import pytest
import torch
import yaml

import kit  # noqa: F401  (adapts BasicSR to current torchvision before basicsr is imported)
from kit.checkpoint import save_atomic
from kit.cli.inspect import main, pair_advice
from kit.distill.pairs.connectors import build_connector
from kit.options import parse_yaml

# Student: SRVGGNetCompact ×2, 16 features, 4 convs -> body.0 conv, body.1..9 act/conv, body.10 conv 16 -> 3·2² = 12.
STUDENT = {"type": "SRVGGNetCompact", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 16, "num_conv": 4, "upscale": 2}
# Teacher: BasicSR RRDBNet ×2 pixel-unshuffles a 64×64 input to 12×32×32, so its body runs at 32×32.
TEACHER = {
    "type": "RRDBNet",
    "num_in_ch": 3,
    "num_out_ch": 3,
    "num_feat": 24,
    "num_block": 1,
    "num_grow_ch": 8,
    "scale": 2,
}


def _build(opt: dict) -> torch.nn.Module:
    from basicsr.archs import build_network  # after ``import kit`` (kit.compat)

    return build_network(dict(opt))


@pytest.fixture
def options(tmp_path):
    """An options file whose teacher checkpoint exists (written by the test)."""
    ckpt = tmp_path / "teacher.pth"
    save_atomic({"params_ema": _build(TEACHER).state_dict()}, ckpt)
    opt = {"scale": 2, "network_g": STUDENT, "network_t": TEACHER, "path": {"pretrain_network_t": str(ckpt)}}
    path = tmp_path / "x.yml"
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def _sections(text: str) -> dict[str, dict[str, tuple[str, str, str]]]:
    """``{role line: {path: (shape, C, note)}}`` from the inspector's tables."""
    out = {}
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        if len(lines) < 3 or lines[2].split()[:2] != ["path", "output"]:
            continue
        table = {}
        for line in lines[3:]:
            path, shape, channels, *note = line.split(None, 3)
            table[path] = (shape, channels, " ".join(note))
        out[lines[0]] = table
    return out


def test_lists_paths_and_shapes(options, capsys):
    assert main(["-opt", options]) == 0
    text = capsys.readouterr().out
    sections = _sections(text)
    (student_key,) = [k for k in sections if k.startswith("student:")]
    (teacher_key,) = [k for k in sections if k.startswith("teacher:")]
    assert "SRVGGNetCompact" in student_key
    assert "RRDBNet ×2" in teacher_key and "teacher.pth" in teacher_key
    s, t = sections[student_key], sections[teacher_key]
    # student at the LR size, 64×64: 16 features, last conv 3·2² = 12 channels, pixel shuffle to 128×128
    assert s["body.0"] == ("1×16×64×64", "16", "")
    assert s["body.10"] == ("1×12×64×64", "12", "")
    assert s["upsampler"] == ("1×3×128×128", "3", "")
    assert s["body"] == ("-", "-", "not called")  # SRVGG loops over body's layers itself
    # teacher: pixel-unshuffle 64 -> 32, two ×2 upsamplings 32 -> 64 -> 128
    assert t["conv_first"] == ("1×24×32×32", "24", "")
    assert t["body.0.rdb1.conv1"] == ("1×8×32×32", "8", "")
    assert t["conv_up1"] == ("1×24×64×64", "24", "")
    assert t["conv_last"] == ("1×3×128×128", "3", "")
    assert t["lrelu"] == ("-", "-", "called 3×: pick one with lrelu#k, k = 0..2")
    assert t["lrelu#0"] == ("1×24×64×64", "24", "") and t["lrelu#2"] == ("1×24×128×128", "24", "")
    assert t["body.0.rdb1.lrelu"][2].startswith("called 4×")
    assert "input 1×3×64×64 → output 1×3×128×128" in text


def test_filter_depth_and_input_size(options, capsys):
    assert main(["-opt", options, "--filter", "conv_up", "--input-size", "32x48"]) == 0
    sections = _sections(capsys.readouterr().out)
    teacher = next(v for k, v in sections.items() if k.startswith("teacher"))
    assert teacher == {"conv_up1": ("1×24×32×48", "24", ""), "conv_up2": ("1×24×64×96", "24", "")}
    assert main(["-opt", options, "--depth", "1"]) == 0
    sections = _sections(capsys.readouterr().out)
    paths = [p for table in sections.values() for p in table]
    assert paths and all("." not in p.split("#")[0] for p in paths)
    assert "conv_first" in paths and "body.0" not in paths


def test_missing_teacher_checkpoint_uses_random_weights(tmp_path, capsys):
    opt = {"scale": 2, "network_g": STUDENT, "network_t": TEACHER, "path": {"pretrain_network_t": "nope/t.pth"}}
    path = tmp_path / "x.yml"
    path.write_text(yaml.safe_dump(opt))
    assert main(["-opt", str(path), "--depth", "1"]) == 0
    text = capsys.readouterr().out
    assert "random weights: checkpoint" in text and "nope/t.pth not found" in text
    teacher = next(v for k, v in _sections(text).items() if k.startswith("teacher"))
    assert teacher["conv_first"] == ("1×24×32×32", "24", "")


PLAIN = {"norm": None, "act": None}  # a plain 1×1 conv, as the shipped CWD pair


def _snippet(text: str) -> dict:
    return parse_yaml(text[text.index("train:") :])["train"]["distill"]["mid"]


@pytest.mark.parametrize(
    ("student", "teacher", "reason", "connector"),
    [
        # channels only: student's last conv (12 ch at 64×64) vs the teacher's first upsampling conv (24 ch at 64×64)
        (
            "body.10",
            "conv_up1",
            "channels 12→24: ConvConnector in_channels 12, out_channels 24",
            {"type": "ConvConnector", "in_channels": 12, "out_channels": 24, **PLAIN},
        ),
        # spatial and channels: the teacher's body runs at 32×32 after pixel-unshuffle
        (
            "body.0",
            "body.0",
            "spatial 64×64 vs 32×32: set resize: bilinear in the connector, or pick another layer",
            {"type": "ConvConnector", "in_channels": 16, "out_channels": 24, **PLAIN, "resize": "bilinear"},
        ),
        ("upsampler", "conv_last", "shapes match: connector optional", None),
        (
            "body.10",
            "lrelu#0",
            "channels 12→24",
            {"type": "ConvConnector", "in_channels": 12, "out_channels": 24, **PLAIN},
        ),
    ],
)
def test_pair_reports_connector(options, capsys, student, teacher, reason, connector):
    assert main(["-opt", options, "--pair", student, teacher]) == 0
    text = capsys.readouterr().out
    assert reason in text
    entry = _snippet(text)
    assert entry["student"] == student and entry["teacher"] == teacher
    assert entry.get("connector") == connector
    assert entry["loss"]["type"] == "ChannelWiseDivergence"


def test_pair_connector_maps_student_to_teacher_shape(options, capsys):
    assert main(["-opt", options, "--pair", "body.0", "body.0"]) == 0
    conn = build_connector(_snippet(capsys.readouterr().out)["connector"])
    out = conn(torch.rand(1, 16, 64, 64), size=(32, 32))
    assert out.shape == (1, 24, 32, 32)


def test_pair_advice_function():
    assert pair_advice((1, 16, 8, 8), (1, 16, 16, 16))[1] == {"type": "IdentityConnector", "resize": "bilinear"}
    with pytest.raises(ValueError, match="4-D maps"):
        pair_advice((1, 64, 12), (1, 12, 8, 8))


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        (["body.0", "lrelu"], "runs 3 times; write 'lrelu#k' with k in 0..2"),
        (["body.0", "lrelu#3"], "use k in 0..2"),
        (["body.00", "conv_up1"], "student path 'body.00' not found; closest: body.0"),
        (["body", "conv_up1"], "did not run"),
    ],
)
def test_pair_errors(options, capsys, pair, message):
    assert main(["-opt", options, "--pair", *pair]) == 2
    assert message in capsys.readouterr().err


def test_checkpoint_detected_with_spandrel(tmp_path, capsys):
    swin = {
        "type": "SwinIR",
        "upscale": 2,
        "img_size": 16,
        "window_size": 4,
        "depths": [2],
        "embed_dim": 12,
        "num_heads": [2],
        "mlp_ratio": 2.0,
        "upsampler": "pixelshuffle",
    }
    path = tmp_path / "swinir.safetensors"
    save_atomic(_build(swin).state_dict(), path)
    assert main(["--checkpoint", str(path), "--input-size", "16", "--depth", "2"]) == 0
    text = capsys.readouterr().out
    (table,) = _sections(text).values()
    assert "SwinIR ×2" in text and "(spandrel: SwinIR)" in text
    assert table["conv_first"] == ("1×12×16×16", "12", "")
    assert table["layers.0"] == ("1×256×12", "12", "(tokens)")  # (N, H·W, C)
    assert table["conv_last"] == ("1×3×32×32", "3", "")


def test_kit_student_paths_and_shapes(tmp_path, capsys):
    """The shipped student of options/distill.yml, as the inspector shows it (the paths the pairs use)."""
    from kit.options import REPO_ROOT, load_options

    opt = load_options(REPO_ROOT / "options/distill.yml")
    opt["path"] = {}  # no teacher checkpoint needed: a random teacher of the declared architecture
    path = tmp_path / "d.yml"
    path.write_text(yaml.safe_dump(opt))
    assert main(["-opt", str(path), "--input-size", "24x20"]) == 0
    sections = _sections(capsys.readouterr().out)
    (student_key,) = [k for k in sections if k.startswith("student:")]
    (teacher_key,) = [k for k in sections if k.startswith("teacher:")]
    s, t = sections[student_key], sections[teacher_key]
    assert "RLFNStudent" in student_key and "EDSR" in teacher_key
    assert s["conv_first"] == ("1×32×24×20", "32", "")
    assert s["body.3"] == ("1×32×24×20", "32", "")  # the shipped last CWD pair's student side
    assert s["upsampler"] == ("1×3×96×80", "3", "")
    assert t["body.7"] == ("1×64×24×20", "64", "")  # ... and its teacher side
    assert t["upsample"] == ("1×64×96×80", "64", "")


def test_pair_suggests_the_shipped_cwd_pair(tmp_path, capsys):
    """``--pair body.3 body.7`` on options/distill.yml prints the entry that file ships for it (the last pair)."""
    from kit.options import REPO_ROOT, load_options

    opt = load_options(REPO_ROOT / "options/distill.yml")
    shipped = opt["train"]
    opt["path"] = {}
    path = tmp_path / "d.yml"
    path.write_text(yaml.safe_dump(opt))
    assert main(["-opt", str(path), "--pair", "body.3", "body.7", "--name", "cwd_3"]) == 0
    text = capsys.readouterr().out
    printed = parse_yaml(text[text.index("train:") :])["train"]
    assert printed["distill"]["cwd_3"] == shipped["distill"]["cwd_3"]
    assert printed["recipes"] == shipped["recipes"]
