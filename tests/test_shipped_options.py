"""Every shipped options file builds, wires its pairs (module paths exist) and takes a step; students < 5M."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import copy

import pytest
import torch

from kit.archs.deploy import count_params, deploy_network
from kit.distill.gt_free import train_provides_gt
from kit.options import load_options
from tests.helpers import REPO, build, use_tiny_pool

SHIPPED = sorted((REPO / "options").glob("*.yml"))
TWINS = {"distill_pretrained": "student"}  # a downloaded teacher, the same student as the main job


def twin_of(stem: str) -> str:
    """The scratch baseline of a distillation file: ``student<suffix>``, or the listed exception."""
    return TWINS.get(stem, "student" + stem[len("distill") :])


def random_span_checkpoint(path):
    """A random SPAN x4 (48 channels, the official layout) as .safetensors: what AutoTeacher detects."""
    from safetensors.torch import save_file
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=4)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def test_the_shipped_set() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"distill", "student", "teacher"} <= names
    for stem in names:  # every distillation file has its scratch baseline (same student)
        if stem.startswith("distill") and train_provides_gt(load_options(REPO / f"options/{stem}.yml")):
            twin = twin_of(stem)
            assert twin in names, f"{stem}.yml has no scratch baseline {twin}.yml"
            d, s = load_options(REPO / f"options/{stem}.yml"), load_options(REPO / f"options/{twin}.yml")
            assert d["network_g"] == s["network_g"] and d["train"]["total_iter"] == s["train"]["total_iter"]
            assert d["datasets"] == s["datasets"]


@pytest.mark.parametrize("amp", [None, "bf16"], ids=["fp32", "bf16"])
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_builds_and_steps(path, tmp_path, amp) -> None:
    opt = copy.deepcopy(load_options(path))
    if amp:  # as on a GPU: autocast and channels_last (both also run on the CPU)
        opt["train"].update(amp=amp, channels_last=True)
    opt["path"].pop("teacher_recipe", None)
    opt["path"].pop("pretrain_network_t", None)  # a random teacher of the declared architecture
    opt["path"].pop("pretrain_network_g", None)  # a pruned start (kit-prune's output) is not made here
    if opt["network_g"].get("type") == "QATStudent":  # the downloaded weights it quantises: random ones here
        opt["network_g"].pop("weights", None)
    if path.stem == "distill_pretrained":  # AutoTeacher with a pair on SPAN's conv_cat: a random SPAN
        opt["path"]["pretrain_network_t"] = str(random_span_checkpoint(tmp_path / "span.safetensors"))
    elif opt.get("network_t", {}).get("type") == "AutoTeacher":  # detected from a checkpoint: a tiny RRDBNet one
        opt["path"]["pretrain_network_t"] = str(_tiny_rrdbnet(tmp_path / "rrdbnet.pth", int(opt["scale"])))
    opt["train"].pop("teacher_cache", None)  # the cache's own tests cover it; this checks the wiring
    use_tiny_pool(opt, tmp_path)  # the teacher labels one small image here, in memory
    opt["num_gpu"] = 0
    opt["datasets"]["train"]["gt_size"] = 32
    if "lq_size" in opt["datasets"]["train"]:
        opt["datasets"]["train"]["lq_size"] = 32 // int(opt.get("scale", 1))
    model = build(opt, tmp_path)  # includes the dry forward that checks every feature pair
    scale = int(opt.get("scale", 1))
    lq = torch.rand(1, 3, 32 // scale, 32 // scale)
    gt = {"gt": torch.rand(1, 3, 32, 32)} if train_provides_gt(opt) else {}  # an LQ-only file trains without GT
    model.feed_data({"lq": lq, **gt})
    model.optimize_parameters(1)
    assert torch.isfinite(torch.tensor(list(model.log_dict.values()))).all()
    if not path.stem.startswith("teacher"):
        assert count_params(deploy_network(model.net_g)) < 5_000_000


def _tiny_rrdbnet(path, scale: int):
    """A random 1-block RRDBNet in BasicSR's layout (``params_ema``), which spandrel detects as ESRGAN."""
    from basicsr.archs.rrdbnet_arch import RRDBNet

    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=scale, num_feat=16, num_block=1, num_grow_ch=32)
    torch.save({"params_ema": net.state_dict()}, path)
    return path
