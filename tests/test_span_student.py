"""SPANStudent: the official SPAN semantics and key names, exact fusion, feature paths, the official weights."""

from __future__ import annotations

import os
from pathlib import Path

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision, registers the students)

# isort: split
import pytest
import torch

from kit.archs import SPANStudent, count_params, deploy_network
from kit.archs.span_student import span_arguments
from kit.checkpoint import extract_state_dict, load_checkpoint
from kit.distill.pairs.recorder import FeatureRecorder

DEVICE = torch.device(os.environ.get("KIT_TEST_DEVICE", "cpu"))
SHARED = Path(__file__).resolve().parents[2] / "shared"
OFFICIAL = SHARED / "teachers" / "spanx4_ch48.pth"
SET5 = SHARED / "benchmarks" / "Set5"
needs_official = pytest.mark.skipif(
    not OFFICIAL.is_file(), reason=f"the official SPAN x4 weights are not at {OFFICIAL} (../shared is absent here)"
)


def _spandrel_span(num_feat: int, scale: int) -> torch.nn.Module:
    """The reference implementation (spandrel's copy of the official SPAN code), random weights."""
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(1)
    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=num_feat, upscale=scale)


def _perturbed(net: torch.nn.Module, std: float = 0.02) -> torch.nn.Module:
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * std)
    return net


def _photo(height: int, width: int) -> torch.Tensor:
    """A crop of a real photo (scikit-image's astronaut), 1×3×height×width in [0, 1]."""
    from skimage import data

    img = torch.from_numpy(data.astronaut()).float().div(255).permute(2, 0, 1)[None]
    return img[:, :, 100 : 100 + height, 150 : 150 + width].contiguous()


def test_official_layout_and_sizes():
    """Keys equal the reference implementation's; deployed x4 ch48 = 426,288 params, ch28 = 150,688 (NTIRE)."""
    assert set(SPANStudent().state_dict()) == set(_spandrel_span(48, 4).state_dict())
    assert count_params(deploy_network(SPANStudent())) == 426_288
    assert count_params(deploy_network(SPANStudent(num_feat=28))) == 150_688
    # in training, eval_conv is derived (a buffer), not a parameter: only the branches train
    assert count_params(SPANStudent()) == 2_236_728 - (426_288 - 48 * 192 - 48 - 48 * 48 * 9 - 48)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_equals_reference_implementation(train):
    """Weights of the reference SPAN load strictly and give its output, in training and in eval mode."""
    ref = _perturbed(_spandrel_span(16, 3)).to(DEVICE)
    net = SPANStudent(scale=3, num_feat=16).to(DEVICE)
    net.load_state_dict(ref.state_dict(), strict=True)
    ref.train(train)
    net.train(train)
    x = _photo(20, 17).to(DEVICE)
    with torch.no_grad():
        expected, out = ref(x), net(x)
    scale = float(expected.abs().max())  # random weights on 255-scaled inputs: outputs far outside [0, 1]
    assert scale > 0.1
    torch.testing.assert_close(out, expected, atol=1e-6 * scale, rtol=0)


@pytest.mark.parametrize("shape", [(1, 3, 24, 32), (2, 3, 17, 13)])
def test_fused_equals_unfused_branches(shape):
    """The deployed network (one 3×3 conv per Conv3XC) equals the training-form branches to 1e-5.

    Random weights with ``img_range`` 1 keep the output near the [0, 1] range of a trained network, where the
    1e-5 tolerance means what it says; :func:`test_official_weights_fuse_exactly` checks the real network.
    """
    torch.manual_seed(0)
    net = _perturbed(SPANStudent(num_feat=16, num_block=3, img_range=1.0)).to(DEVICE)
    fused = net.fuse()
    assert fused.deploy and all(not hasattr(m, "sk") for m in fused.modules())
    x = torch.cat([_photo(shape[2], shape[3])] * shape[0]).to(DEVICE)
    net.train()  # the branches: conv(pad(x)) + sk(x)
    with torch.no_grad():
        ref, out = net(x), fused(x)
    assert ref.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4) and ref.abs().max() > 0.1
    assert (out - ref).abs().max() <= 1e-5
    assert (out - ref).abs().max() > 0  # really two computations (branches vs one conv), not one twice


def test_state_dict_holds_the_fused_kernel():
    """Saved weights carry a consistent eval_conv, so the official code (which reads it) agrees with them."""
    net = _perturbed(SPANStudent(num_feat=8, num_block=2))
    state = net.state_dict()
    fused = net.fuse().state_dict()
    for key, value in fused.items():
        torch.testing.assert_close(state[key], value, atol=1e-6, rtol=0)
    # deployed weights load into a network built with deploy=True
    SPANStudent(num_feat=8, num_block=2, deploy=True).load_state_dict(fused, strict=True)


@pytest.mark.parametrize("deployed", [False, True], ids=["unfused", "fused"])
def test_feature_paths_for_pairs(deployed):
    """block_1..block_N, conv_cat, conv_1, conv_2 are recordable (N, C, H, W) features, equal in both forms."""
    net = _perturbed(SPANStudent(num_feat=8, num_block=3)).eval()
    model = net.fuse() if deployed else net
    paths = ["conv_1", "block_1", "block_2", "block_3", "block_1.c1_r", "conv_2", "conv_cat"]
    x = _photo(12, 10)
    with FeatureRecorder(net, {p: p for p in paths}) as ref_rec, torch.no_grad():
        net(x)
        expected = {p: ref_rec.get(p) for p in paths}
    with FeatureRecorder(model, {p: p for p in paths}) as rec, torch.no_grad():
        model(x)
        for p in paths:
            feat = rec.get(p)
            assert feat.shape == (1, 8, 12, 10), p
            torch.testing.assert_close(feat, expected[p], atol=1e-4, rtol=1e-5)
    # block_k's output is the block's image features, not its attention map
    with torch.no_grad():
        out, _, attention = net.block_1(expected["conv_1"])
    torch.testing.assert_close(expected["block_1"], out)
    assert not torch.allclose(out, attention)


def test_bad_arguments_fail_with_the_fix():
    with pytest.raises(ValueError, match="scale 5"):
        SPANStudent(scale=5)
    with pytest.raises(ValueError, match="rgb_mean has 3 values for 1 input channels"):
        SPANStudent(num_in_ch=1, num_out_ch=1)
    with pytest.raises(ValueError, match="num_block"):
        SPANStudent(num_block=0)
    with pytest.raises(TypeError):
        SPANStudent(feature_channels=48)  # strict: the official keyword is num_feat here


def test_arguments_read_from_weights():
    for kwargs in (dict(num_feat=8, num_block=2, scale=2), dict(num_feat=12, num_block=4, scale=3)):
        net = SPANStudent(**kwargs)
        expected = dict(num_in_ch=3, num_out_ch=3, **kwargs)
        assert span_arguments(net.state_dict()) == {k: expected[k] for k in span_arguments(net.state_dict())}
        assert span_arguments(net.fuse().state_dict()) == span_arguments(net.state_dict())


@needs_official
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_official_weights_load_strictly_and_match_spandrel(suffix):
    from spandrel import ModelLoader

    state = extract_state_dict(load_checkpoint(OFFICIAL.with_suffix(suffix)))
    net = SPANStudent().eval()
    net.load_state_dict(state, strict=True)
    ref = ModelLoader(device="cpu").load_from_state_dict(dict(state)).model.eval()
    x = _photo(40, 36)
    with torch.no_grad():
        expected, out, fused = ref(x), net(x), net.fuse()(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=0)


@needs_official
@pytest.mark.parametrize("shape", [(1, 3, 48, 40), (2, 3, 23, 31)])
def test_official_weights_fuse_exactly(shape):
    """The official network: deployed form vs its training-form branches, on a photo, at two sizes."""
    net = SPANStudent()
    net.load_state_dict(extract_state_dict(load_checkpoint(OFFICIAL)), strict=True)
    fused = deploy_network(net)
    x = torch.cat([_photo(shape[2], shape[3])] * shape[0])
    with torch.no_grad():
        ref, out = net.train()(x), fused(x)
    assert 0.2 < float(ref.mean()) < 0.8
    assert (out - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("student_path", ["block_2", "conv_cat"])
def test_distillation_pair_on_span_features(bundled_root, tmp_path, student_path):
    """A DistillModel pair from a SPAN feature to the teacher's: the dry forward accepts it, a step trains it."""
    from tests.helpers import build, distill_options, tiny_teacher_checkpoint

    teacher_opt, ckpt = tiny_teacher_checkpoint(tmp_path / "teacher.pth")
    pair = {
        "student": student_path,
        "teacher": "body.1",
        "connector": {"type": "ConvConnector", "in_channels": 8, "out_channels": teacher_opt["num_feat"]},
        "loss": {"type": "L2Loss", "loss_weight": 1.0},
    }
    opt = distill_options(
        bundled_root,
        "span_pair",
        teacher_opt,
        ckpt,
        network_g={"type": "SPANStudent", "num_feat": 8, "num_block": 2, "scale": 4},
        **{"train:distill": {"mid": pair}},
    )
    model = build(opt, tmp_path)
    model.feed_data({"lq": torch.rand(2, 3, 8, 8), "gt": torch.rand(2, 3, 32, 32)})
    before = model.net_g.get_submodule(student_path.split(".")[0]).state_dict()
    before = {k: v.clone() for k, v in before.items()}
    model.optimize_parameters(1)
    assert model.log_dict["l_mid"] > 0
    after = model.net_g.get_submodule(student_path.split(".")[0]).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if "eval_conv" not in k)
