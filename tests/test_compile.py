"""``train.compile``: compiled steps equal eager steps, a compiled run resumes, its exported weights load into an
uncompiled student, checkpoints hold plain names.

Inductor compiles C++ kernels with gcc on this CPU: each compile costs tens of seconds (minutes on a loaded
machine), so the networks are tiny (a 2-block RLFN student, a 2-block EDSR teacher) and the models of a test
share their compiled graphs (inductor's cache: the same graph compiles once per machine).
"""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import copy
import os
from pathlib import Path

import pytest
import torch
from basicsr.archs import build_network
from safetensors.torch import load_file

from kit.cli.train import parse_args
from kit.models.compiling import compile_options, eager, is_compiled
from kit.run import run_training
from tests.helpers import build, distill_options, tiny_teacher_checkpoint, write_options

pytestmark = pytest.mark.slow

STUDENT = {"type": "RLFNStudent", "num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 2}
# Equality of a compiled and an eager step, fp32 on the CPU: inductor reorders the sums of its fused kernels,
# so the results agree to float32 rounding accumulated over 3 steps, not bit for bit.
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-5


def _options(bundled_root: Path, tmp_path: Path, name: str, **overrides) -> dict:
    teacher_opt, ckpt = tiny_teacher_checkpoint(tmp_path / "teacher.pth")
    distill = {
        "output": {"loss": {"type": "L1Loss", "loss_weight": 1.0}},
        "cwd": {
            "student": "body.1",
            "teacher": "body.1",
            "connector": {"type": "ConvConnector", "in_channels": 8, "out_channels": 16, "norm": None, "act": None},
            "loss": {"type": "ChannelWiseDivergence", "tau": 4.0, "loss_weight": 1.0},
        },
    }
    opt = distill_options(bundled_root, name, teacher_opt, ckpt, network_g=dict(STUDENT), **overrides)
    opt["train"]["distill"] = distill
    return opt


def _batches(n: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"lq": torch.rand(2, 3, 8, 8, generator=g), "gt": torch.rand(2, 3, 32, 32, generator=g)} for _ in range(n)]


def _copy_weights(src, dst) -> None:
    dst.get_bare_model(dst.net_g).load_state_dict(src.get_bare_model(src.net_g).state_dict())
    dst.net_g_ema.load_state_dict(src.net_g_ema.state_dict())
    dst.get_bare_model(dst.connectors).load_state_dict(src.get_bare_model(src.connectors).state_dict())


def test_compile_options() -> None:
    assert compile_options({}) is None and compile_options({"compile": False, "compile_mode": "max-autotune"}) is None
    assert compile_options({"compile": True}) == "default"
    assert compile_options({"compile": True, "compile_mode": "reduce-overhead"}) == "reduce-overhead"
    with pytest.raises(ValueError, match="train.compile must be true or false"):
        compile_options({"compile": "yes"})
    with pytest.raises(ValueError, match="compile_mode 'fast' is not one of default, reduce-overhead"):
        compile_options({"compile": True, "compile_mode": "fast"})


def test_hooks_of_a_second_network_of_the_same_class_are_traced() -> None:
    """A network compiled after another of its class (the student after the teacher stage in one process, a
    teacher of the student's class): its recorder's hooks still run (dynamo would reuse the hook-less graph)."""
    from kit.distill.pairs.recorder import FeatureRecorder
    from kit.models.compiling import compile_in_place

    x = torch.rand(2, 3, 8, 8)
    first = compile_in_place(build_network(dict(STUDENT)), "default")
    first(x)
    second = build_network(dict(STUDENT))
    rec = FeatureRecorder(second, {"mid": "body.1"}, role="student").attach()
    compile_in_place(second, "default")
    out = second(x)
    assert rec.calls("mid") == 1 and rec.get("mid").shape == (2, 8, 8, 8)
    with eager():
        second(x)
    assert rec.calls("mid") == 1 and out.shape == (2, 3, 32, 32)


def test_compiled_steps_equal_eager_steps(bundled_root: Path, tmp_path: Path) -> None:
    """Three distillation steps (student, teacher, CWD connector, EMA): compiled == eager within LOSS_RTOL;
    the same compiled under a DDP wrapper (gloo, one rank); names stay plain; validation does not recompile."""
    opt = _options(bundled_root, tmp_path, "cmp")
    eager_model = build(opt, tmp_path)
    compiled_opt = copy.deepcopy(opt)
    compiled_opt["train"]["compile"] = True
    compiled = build(compiled_opt, tmp_path)
    _copy_weights(eager_model, compiled)
    assert (
        is_compiled(compiled.net_g) and is_compiled(compiled.teachers["teacher"]) and is_compiled(compiled.connectors)
    )
    assert not is_compiled(eager_model.net_g) and not is_compiled(compiled.net_g_ema)
    assert list(compiled.net_g.state_dict()) == list(eager_model.net_g.state_dict())  # no _orig_mod. prefix

    losses = {"eager": [], "compiled": []}
    for it, batch in enumerate(_batches(3), start=1):
        for key, model in (("eager", eager_model), ("compiled", compiled)):
            model.feed_data(batch)
            model.optimize_parameters(it)
            losses[key].append(float(model.log_dict["l_total"]))
    assert losses["eager"][0] != losses["eager"][2]  # the steps trained: the comparison is not of constants
    torch.testing.assert_close(losses["compiled"], losses["eager"], rtol=LOSS_RTOL, atol=0)
    for (name, a), b in zip(compiled.net_g.state_dict().items(), eager_model.net_g.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=WEIGHT_ATOL, msg=name)
    for a, b in zip(compiled.net_g_ema.state_dict().values(), eager_model.net_g_ema.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=WEIGHT_ATOL)

    # Validation-sized inputs run eagerly: no new graph for an image of another size.
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    compiled.feed_data({"lq": torch.rand(1, 3, 13, 11), "gt": torch.rand(1, 3, 52, 44)})
    compiled.test()
    compiled.comparison_images(compiled.lq)
    assert counters["stats"]["unique_graphs"] == graphs
    with eager():
        ref = eager_model.net_g_ema(compiled.lq)
    torch.testing.assert_close(compiled.output, ref, rtol=0, atol=1e-4)

    # Under DDP (gloo, world of one): the wrapper calls the compiled module, the names saved stay plain.
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    from tests.helpers import free_port

    os.environ["MASTER_PORT"] = str(free_port())
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    try:
        from kit.options import finalize
        from kit.registry import build_model

        ddp_opt = finalize(copy.deepcopy(compiled_opt), is_train=True, root=tmp_path)
        ddp_opt.update(dist=True, rank=0, world_size=1, num_gpu=0)
        ddp = build_model(ddp_opt)
        assert isinstance(ddp.net_g, torch.nn.parallel.DistributedDataParallel) and is_compiled(ddp.net_g)
        assert is_compiled(ddp.connectors)
        fresh = build(opt, tmp_path)
        _copy_weights(fresh, ddp)
        ddp_losses = []
        for it, batch in enumerate(_batches(3), start=1):
            ddp.feed_data(batch)
            ddp.optimize_parameters(it)
            ddp_losses.append(float(ddp.log_dict["l_total"]))
        # fresh's weights are another random start: compare with an eager twin of it
        for it, batch in enumerate(_batches(3), start=1):
            fresh.feed_data(batch)
            fresh.optimize_parameters(it)
            torch.testing.assert_close(ddp_losses[it - 1], float(fresh.log_dict["l_total"]), rtol=LOSS_RTOL, atol=0)
    finally:
        torch.distributed.destroy_process_group()


def test_compiled_run_resumes_and_exports_plain_weights(bundled_root: Path, tmp_path: Path) -> None:
    """train.py with compile, bf16 autocast and channels_last: 4 iters, resumed to 6; the checkpoints and the
    resume state hold plain names; export.py's weights load strictly into an uncompiled student."""
    from kit.cli.export import main as export_main

    opt = _options(
        bundled_root,
        tmp_path,
        "compiled_run",
        **{"train:total_iter": 4, "logger:save_checkpoint_freq": 2, "val:val_freq": 4},
    )
    opt["train"].update(compile=True, amp="bf16", channels_last=True)
    opt["datasets"]["train"]["num_worker_per_gpu"] = "auto"
    opt_file = write_options(tmp_path / "o.yml", opt)
    first = run_training(parse_args(["-opt", str(opt_file)]), root=tmp_path)
    assert first["iters"] == 4
    exp = Path(first["experiments_root"])
    log = "".join(p.read_text() for p in exp.glob("train_*.log"))
    assert "train.compile: student, teacher 'teacher', connectors (mode default)" in log
    assert "Train loader: 0 worker(s) per GPU (training on the CPU" in log  # auto, on the CPU

    resumed = run_training(
        parse_args(["-opt", str(opt_file), "--auto_resume", "--force_yml", "train:total_iter=6"]), root=tmp_path
    )
    assert resumed["iters"] == 6
    log = "".join(p.read_text() for p in exp.glob("train_*.log"))
    assert "Resuming from" in log and "iter 4" in log

    state = torch.load(exp / "training_states/6.state", weights_only=True)
    ckpt = torch.load(exp / "models/net_g_latest.pth", weights_only=True)
    names = [*state["connectors"], *ckpt["params"], *ckpt["params_ema"]]
    assert names and not [n for n in names if "_orig_mod" in n or n.startswith("module.")]
    student = build_network(dict(STUDENT))
    student.load_state_dict(ckpt["params_ema"], strict=True)

    out_dir = tmp_path / "subs"
    args = ["-opt", str(opt_file), "--checkpoint", str(exp / "models/net_g_latest.pth"), "--out-dir", str(out_dir)]
    assert export_main([*args, "--input-size", "32x32", "--latency-runs", "1", "--name", "compiled"]) == 0
    exported = build_network(dict(STUDENT))
    exported.load_state_dict(load_file(out_dir / "compiled" / "weights.safetensors"), strict=True)
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(exported.eval()(x), student.eval()(x), rtol=0, atol=1e-6)
