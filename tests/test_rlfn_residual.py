"""RLFNStudent's optional image residual: starts exactly at the interpolation, exports to ONNX."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import io

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from kit.archs.rlfn_student import RLFNStudent


@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "nearest"])
def test_starts_at_the_interpolation(mode: str) -> None:
    net = RLFNStudent(num_feat=8, num_block=1, img_residual=mode).eval()
    x = torch.rand(1, 3, 9, 11)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    torch.testing.assert_close(net(x), F.interpolate(x, scale_factor=4, mode=mode, **kwargs))
    same_size = RLFNStudent(num_feat=8, num_block=1, scale=1, img_residual=mode).eval()
    torch.testing.assert_close(same_size(x), x)


def test_bicubic_residual_onnx_parity_at_two_sizes() -> None:
    torch.manual_seed(0)
    net = RLFNStudent(num_feat=8, num_block=1, img_residual="bicubic").eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    f = io.BytesIO()
    axes = {"lq": {0: "n", 2: "h", 3: "w"}, "out": {0: "n", 2: "H", 3: "W"}}
    torch.onnx.export(
        net,
        torch.rand(1, 3, 16, 16),
        f,
        input_names=["lq"],
        output_names=["out"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 16, 16), (2, 3, 17, 23)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            ref = net(x).numpy()
        assert np.abs(session.run(None, {"lq": x.numpy()})[0] - ref).max() < 1e-4


def test_bad_residual_option() -> None:
    with pytest.raises(ValueError, match="img_residual must be"):
        RLFNStudent(img_residual="lanczos")
