"""Real pretrained teachers (../shared/teachers): AutoTeacher loads them, and one distillation step runs.

These files are test inputs, not part of the project: the tests skip, saying why, where they are absent.
"""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import pytest
import torch

from kit.checkpoint import load_checkpoint
from kit.teachers import load_teacher_with_info
from tests.helpers import REPO, build, tiny_options

TEACHERS = REPO.parent / "shared" / "teachers"
pytestmark = pytest.mark.skipif(
    not TEACHERS.is_dir(), reason=f"{TEACHERS} is absent (the real pretrained teachers live there on CI only)"
)


def _need(name: str):
    path = TEACHERS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def test_span_loads_from_pth_params_and_safetensors_alike() -> None:
    pth, st = _need("spanx4_ch48.pth"), _need("spanx4_ch48.safetensors")
    a, info_a = load_teacher_with_info({"type": "AutoTeacher"}, str(pth), scale=4)
    b, info_b = load_teacher_with_info({"type": "AutoTeacher"}, str(st), scale=4)
    assert "SPAN" in info_a.describe() and "SPAN" in info_b.describe()
    assert set(load_checkpoint(pth)) == {"params"}  # the .pth layout: {'params': state_dict}
    names = {n for n, _ in a.named_modules()}
    assert {"block_1", "block_6", "conv_cat", "upsampler"} <= names
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        out_a, out_b = a(x), b(x)
    assert out_a.shape == (1, 3, 48, 40)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)


def test_realesrgan_loads_from_params_ema() -> None:
    path = _need("RealESRGAN_x4plus.pth")
    net, info = load_teacher_with_info({"type": "AutoTeacher"}, str(path), scale=4)
    assert set(load_checkpoint(path)) == {"params_ema"}
    assert info.detected_as == "ESRGAN"
    assert sum(p.numel() for p in net.parameters()) == 16_697_987
    with torch.no_grad():
        out = net(torch.rand(1, 3, 8, 8))
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


def test_one_distillation_step_with_a_pair_on_spans_conv_cat(bundled_root, tmp_path) -> None:
    path = _need("spanx4_ch48.safetensors")
    opt = tiny_options(bundled_root, "span_pair")
    opt["model_type"] = "DistillModel"
    opt["network_g"] = {"type": "RLFNStudent", "num_feat": 16, "num_block": 2, "scale": 4, "img_residual": "bicubic"}
    opt["network_t"] = {"type": "AutoTeacher"}
    opt["path"]["pretrain_network_t"] = str(path)
    opt["train"]["distill"] = {
        "output": {"loss": {"type": "L1Loss", "loss_weight": 1.0}},
        "cwd": {
            "student": "body.1",
            "teacher": "conv_cat",
            "connector": {"type": "ConvConnector", "in_channels": 16, "out_channels": 48, "norm": None, "act": None},
            "loss": {"type": "ChannelWiseDivergence", "tau": 4.0, "loss_weight": 1.0},
        },
    }
    opt["train"]["recipes"] = {"balance": {"ratio": 0.1}}
    model = build(opt, tmp_path)  # the dry forward checks the pair's shapes
    before = [p.detach().clone() for p in model.connectors.parameters()]
    model.feed_data({"lq": torch.rand(2, 3, 8, 8), "gt": torch.rand(2, 3, 32, 32)})
    model.optimize_parameters(1)
    assert {"l_pix", "l_out", "l_cwd"} <= set(model.log_dict)
    assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values())
    assert model.log_dict["l_cwd"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.connectors.parameters()))  # the pair trains
