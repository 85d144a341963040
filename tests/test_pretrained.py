"""``path.pretrain_network_g``: published weights into the student and its EMA copy, strictly, readable errors."""

from __future__ import annotations

from pathlib import Path

import kit  # noqa: F401  (first: compat + registries)

# isort: split
import pytest
import torch
from safetensors.torch import save_file

from kit.archs import RLFNStudent, SPANStudent
from kit.checkpoint import CheckpointError, extract_state_dict, load_checkpoint
from kit.pretrained import load_weights, looks_like
from tests.helpers import build, tiny_options

SHARED_TEACHERS = Path(__file__).resolve().parents[2] / "shared" / "teachers"
OFFICIAL = SHARED_TEACHERS / "spanx4_ch48.pth"
TINY_SPAN = {"type": "SPANStudent", "num_feat": 8, "num_block": 2, "scale": 4}


def _span_model(bundled_root: Path, tmp_path: Path, checkpoint: Path, network: dict | None = None, **path_opts):
    opt = tiny_options(bundled_root, "pretrained", network_g=dict(network or TINY_SPAN))
    opt["path"] = {"pretrain_network_g": str(checkpoint), **path_opts}
    return build(opt, tmp_path)


def _assert_weights(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = net.state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(own[key], value, atol=1e-6, rtol=0, msg=key)


@pytest.mark.parametrize("layout", ["params", "params_ema", "bare_pth", "bare_safetensors"])
def test_student_and_ema_get_the_weights(bundled_root, tmp_path, layout):
    """Every published layout gives net_g and net_g_ema the same weights (a 'params'-only file included)."""
    torch.manual_seed(3)
    source = SPANStudent(num_feat=8, num_block=2)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    state = source.state_dict()
    path = tmp_path / ("w.safetensors" if layout == "bare_safetensors" else "w.pth")
    if layout == "bare_safetensors":
        save_file(state, str(path))
    else:
        torch.save(state if layout == "bare_pth" else {layout: state}, path)
    model = _span_model(bundled_root, tmp_path, path)
    _assert_weights(model.net_g, state)
    _assert_weights(model.net_g_ema, state)


def test_params_and_params_ema_go_to_their_networks(bundled_root, tmp_path):
    """A BasicSR checkpoint with both: net_g gets 'params', the EMA copy 'params_ema' (BasicSR's semantics)."""
    a, b = SPANStudent(num_feat=8, num_block=2), SPANStudent(num_feat=8, num_block=2)
    torch.save({"params": a.state_dict(), "params_ema": b.state_dict()}, tmp_path / "both.pth")
    model = _span_model(bundled_root, tmp_path, tmp_path / "both.pth")
    _assert_weights(model.net_g, a.state_dict())
    _assert_weights(model.net_g_ema, b.state_dict())


def test_foreign_weights_name_keys_and_architecture(bundled_root, tmp_path):
    """RLFN weights into the SPAN student: missing and unexpected keys, and what the weights look like."""
    torch.save({"params": RLFNStudent(num_feat=8, num_block=2, esa_channels=4).state_dict()}, tmp_path / "rlfn.pth")
    with pytest.raises(CheckpointError) as err:
        _span_model(bundled_root, tmp_path, tmp_path / "rlfn.pth")
    msg = str(err.value)
    assert "does not fit SPANStudent" in msg
    assert "missing (e.g. conv_1.sk.weight" in msg and "unexpected (e.g. conv_first.weight" in msg
    assert "They look like RLFNStudent weights" in msg


def test_spandrel_architecture_is_named(tmp_path):
    """Weights of an architecture no kit student has (BasicSR's RRDBNet = spandrel's ESRGAN) are named as such."""
    from basicsr.archs.rrdbnet_arch import RRDBNet

    torch.save({"params_ema": RRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4).state_dict()}, tmp_path / "r.pth")
    with pytest.raises(CheckpointError, match=r"does not fit SPANStudent.*look like ESRGAN weights \(spandrel\)"):
        load_weights(SPANStudent(num_feat=8, num_block=2), tmp_path / "r.pth")


def test_other_widths_and_fused_form_are_told_apart():
    """Same architecture with other arguments: the arguments to use; fused weights: deploy: true."""
    state = SPANStudent(num_feat=12, num_block=3, scale=2).state_dict()
    hint = looks_like(state, SPANStudent(num_feat=8, num_block=2))
    assert "same architecture with other arguments" in hint
    assert "{type: SPANStudent, num_in_ch: 3, num_out_ch: 3, scale: 2, num_feat: 12, num_block: 3}" in hint
    fused = SPANStudent(num_feat=8, num_block=2).fuse().state_dict()
    assert "set deploy: true" in looks_like(fused, SPANStudent(num_feat=8, num_block=2))
    assert "Neither spandrel nor" in looks_like({"foo.weight": torch.zeros(1)}, SPANStudent(num_feat=8))


@pytest.mark.skipif(not OFFICIAL.is_file(), reason=f"the official SPAN x4 weights are not at {OFFICIAL}")
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_official_checkpoint_through_pretrain_network_g(bundled_root, tmp_path, suffix):
    """The published SPAN x4 ch48 file ({'params'} .pth, bare .safetensors) loads strictly as net_g and EMA."""
    path = OFFICIAL.with_suffix(suffix)
    state = extract_state_dict(load_checkpoint(path))
    model = _span_model(bundled_root, tmp_path, path, network={"type": "SPANStudent", "scale": 4}, strict_load_g=True)
    _assert_weights(model.net_g, state)
    _assert_weights(model.net_g_ema, state)
    with pytest.raises(CheckpointError, match="with another shape.*num_feat: 48, num_block: 6"):
        load_weights(SPANStudent(num_feat=32), path)
