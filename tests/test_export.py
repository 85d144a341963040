"""export.py: size gate, ONNX parity, manifest numbers recounted independently, nothing lost, scale-1 students."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from basicsr.archs import build_network
from onnx import numpy_helper
from safetensors.torch import load_file

import kit.export.submission as submission
from kit.cli.export import main
from tests.helpers import REPO, tiny_options, write_options

RLFN = {"type": "RLFNStudent", "num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 1}
SMALL = ["--input-size", "32x32", "--latency-runs", "1"]


def _random_weights(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net


def _numel(state: dict) -> int:
    return sum(v.numel() for v in state.values())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its hash; {} when the folder does not exist."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (_sha(p) if p.is_file() else "dir") for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def rlfn(bundled_root, tmp_path_factory):
    """Tiny RLFNStudent x4 options and a checkpoint that also carries connector, teacher and optimizer tensors."""
    root = tmp_path_factory.mktemp("export_rlfn")
    opt = tiny_options(bundled_root, "export_rlfn", network_g=dict(RLFN))
    ema, raw = _random_weights(build_network(dict(RLFN)), 1), _random_weights(build_network(dict(RLFN)), 2)
    extra = {
        "connectors": {"mid.conv.weight": torch.randn(64, 8, 1, 1), "mid.bn.weight": torch.randn(64)},
        "net_t": _random_weights(
            build_network({"type": "SRVGGNetCompact", "num_feat": 16, "upscale": 4}), 3
        ).state_dict(),
        "optimizer": {"state": {"0": {"exp_avg": torch.randn(1000)}}},
    }
    ckpt = root / "net_g.pth"
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict(), **extra}, ckpt)
    return {
        "opt": opt,
        "opt_path": write_options(root / "opt.yml", opt),
        "ckpt": ckpt,
        "ema": ema.eval(),
        "params": _numel(ema.state_dict()),
        "extra_params": _numel(extra["connectors"]) + _numel(extra["net_t"]),
    }


def _args(rlfn: dict, out_dir: Path, *more: str) -> list[str]:
    return ["-opt", str(rlfn["opt_path"]), "--checkpoint", str(rlfn["ckpt"]), "--out-dir", str(out_dir), *SMALL, *more]


def test_export_at_the_limit_and_manifest_numbers_recounted(rlfn, tmp_path):
    out = tmp_path / "subs"
    n = rlfn["params"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "export.py"), *_args(rlfn, out, "--max-params", str(n), "--name", "tiny")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = out / "tiny"
    assert sorted(p.name for p in out.iterdir()) == ["tiny", "tiny.zip"]  # no temporary folder left
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.txt",
        "manifest.json",
        "model.onnx",
        "weights.safetensors",
    ]
    m = json.loads((folder / "manifest.json").read_text())

    # Parameters: the student's own Σ numel (params_ema); --max-params n passed, so the checkpoint's connector,
    # teacher and optimizer tensors (rlfn["extra_params"] more) did not count.
    weights = load_file(str(folder / "weights.safetensors"))
    assert m["params"]["torch"] == n == _numel(weights)
    for k, v in rlfn["ema"].state_dict().items():
        assert torch.equal(weights[k], v), f"{k} is not the params_ema tensor"
    model = onnx.load(str(folder / "model.onnx"))
    floats = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    assert m["params"]["onnx"] == sum(a.size for a in floats) == n

    # Files: sha256 recomputed; the zip holds the same bytes.
    for name in ("model.onnx", "weights.safetensors", "README.txt"):
        assert m["files"][name] == _sha(folder / name)
    with zipfile.ZipFile(out / "tiny.zip") as zf:
        assert sorted(zf.namelist()) == sorted(f"tiny/{p.name}" for p in folder.iterdir())
        assert zf.read("tiny/manifest.json") == (folder / "manifest.json").read_bytes()

    # PSNR: the evaluation CLI on the exported ONNX file gives the manifest's number; the .pth path agrees.
    from kit.cli.eval import main as eval_main

    eval_json = tmp_path / "eval.json"
    argv = ["-opt", str(rlfn["opt_path"]), "--onnx", str(folder / "model.onnx"), "--checkpoint", str(rlfn["ckpt"])]
    assert eval_main([*argv, "--json", str(eval_json)]) == 0
    means = json.loads(eval_json.read_text())["means"]
    assert m["validation"]["psnr"] == pytest.approx(means["onnx"]["psnr"], abs=1e-9)
    assert m["validation"]["ssim"] == pytest.approx(means["onnx"]["ssim"], abs=1e-12)
    assert m["validation"]["psnr"] == pytest.approx(means["student"]["psnr"], abs=1e-3)
    assert (m["validation"]["y_channel"], m["validation"]["crop_border"], m["validation"]["num_images"]) == (True, 4, 3)

    # The model runs in onnxruntime at two sizes (batch 2, odd size too) like the PyTorch student.
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 32, 32), (2, 3, 19, 27)]:
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
        (y,) = session.run(["output"], {"input": x.numpy()})
        with torch.no_grad():
            ref = rlfn["ema"](x).numpy()
        assert y.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
        assert np.abs(y - ref).max() <= 1e-4
    assert [c["input_shape"] for c in m["parity"]["checks"]] == [[1, 3, 32, 32], [2, 3, 25, 21]]
    assert all(c["max_abs_error"] <= m["parity"]["tolerance"] == 1e-4 for c in m["parity"]["checks"])

    # Size, provenance, and the README for the organisers.
    assert m["macs"]["reference_input"] == [1, 3, 32, 32] and m["macs"]["gmacs"] > 0
    assert (m["scale"], m["onnx"]["input_name"], m["onnx"]["output_name"], m["onnx"]["opset"]) == (
        4,
        "input",
        "output",
        17,
    )
    assert m["latency"]["onnxruntime_cpu_ms_median"] > 0
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert m["git"]["commit"] == head and isinstance(m["git"]["dirty"], bool)
    assert m["options"]["network_g"] == RLFN and m["checkpoint"]["param_key"] == "params_ema"
    readme = (folder / "README.txt").read_text()
    assert f"{n:,d}" in readme and "InferenceSession" in readme and f"{m['validation']['psnr']:.3f}" in readme


def test_over_the_limit_is_refused_and_nothing_is_written(rlfn, tmp_path, capsys):
    n = rlfn["params"]
    missing = tmp_path / "not_there"
    assert main(_args(rlfn, missing, "--max-params", str(n - 1))) == 1
    err = capsys.readouterr().err
    assert f"{n:,d}" in err and f"{n - 1:,d}" in err and "over by 1" in err
    assert not missing.exists()

    existing = tmp_path / "subs"
    existing.mkdir()
    (existing / "other.txt").write_text("keep")
    before = _listing(existing)
    assert main(_args(rlfn, existing, "--max-gmacs", "1e-6")) == 1
    err = capsys.readouterr().err
    assert "GMACs at 1x3x32x32" in err and "> limit 1e-06" in err
    assert _listing(existing) == before


def test_failed_parity_leaves_nothing(rlfn, tmp_path, monkeypatch, capsys):
    out = tmp_path / "subs"
    out.mkdir()
    monkeypatch.setattr(submission, "FP32_TOLERANCE", -1.0)  # no export can pass
    assert main(_args(rlfn, out)) == 1
    assert "onnxruntime differs from PyTorch" in capsys.readouterr().err
    assert _listing(out) == {}


def test_corrupt_and_wrong_architecture_checkpoints(rlfn, tmp_path, capsys):
    out = tmp_path / "subs"
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(rlfn["ckpt"].read_bytes()[:300])
    other = tmp_path / "srvgg.pth"
    torch.save({"params": build_network({"type": "SRVGGNetCompact", "upscale": 4}).state_dict()}, other)
    for ckpt, expected in ((corrupt, "not a readable checkpoint"), (other, "does not fit RLFNStudent")):
        argv = ["-opt", str(rlfn["opt_path"]), "--checkpoint", str(ckpt), "--out-dir", str(out), *SMALL]
        assert main(argv) == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert (
            len(lines) == 1 and lines[0].startswith("export: error:") and expected in lines[0] and str(ckpt) in lines[0]
        )
        assert not out.exists()


def test_existing_submission_is_kept_unless_forced(rlfn, tmp_path, capsys):
    out = tmp_path / "subs"
    assert main(_args(rlfn, out)) == 0
    first = _listing(out)
    capsys.readouterr()
    assert main(_args(rlfn, out)) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "--name" in err
    assert _listing(out) == first

    assert main(_args(rlfn, out, "--force")) == 0
    names = sorted(p.name for p in out.iterdir())
    aside = [n for n in names if n.startswith("export_rlfn_replaced_")]
    assert len(aside) == 2 and any(n.endswith(".zip") for n in aside), names
    old = next(out / n for n in aside if not n.endswith(".zip"))
    assert _sha(old / "manifest.json") == first["export_rlfn/manifest.json"]
    assert (out / "export_rlfn" / "manifest.json").is_file() and (out / "export_rlfn.zip").is_file()


def test_fp16_export(rlfn, tmp_path):
    out = tmp_path / "subs"
    assert main(_args(rlfn, out, "--fp16", "--name", "half")) == 0
    m = json.loads((out / "half" / "manifest.json").read_text())
    assert m["onnx"]["weights_dtype"] == "float16" and m["parity"]["tolerance"] == 1e-2
    model = onnx.load(str(out / "half" / "model.onnx"))
    kinds = {
        t.data_type
        for t in model.graph.initializer
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    }
    assert kinds == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O
    assert m["params"]["onnx"] == m["params"]["torch"] == rlfn["params"]


def test_same_size_naf_student_exports(bundled_root, tmp_path):
    naf = {"type": "NAFStudent", "width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]}
    noise = [{"type": "GaussianNoise", "sigma": 15}]
    opt = tiny_options(bundled_root, "export_naf", scale=1, network_g=naf)
    for phase in ("train", "val"):
        opt["datasets"][phase] = {
            "name": f"noisy_{phase}",
            "type": "DegradedImageDataset",
            "dataroot_gt": str(bundled_root / f"{phase}/HR"),
            "degradations": noise,
        }
    opt["val"]["metrics"] = {"psnr": {"type": "calculate_psnr", "crop_border": 0, "test_y_channel": False}}
    net = _random_weights(build_network(dict(naf)), 4)
    torch.save({"params": net.state_dict()}, tmp_path / "naf.pth")
    argv = ["-opt", str(write_options(tmp_path / "naf.yml", opt)), "--checkpoint", str(tmp_path / "naf.pth")]
    assert main([*argv, "--out-dir", str(tmp_path / "subs"), *SMALL]) == 0
    m = json.loads((tmp_path / "subs" / "export_naf" / "manifest.json").read_text())
    assert m["scale"] == 1 and m["params"]["torch"] == _numel(net.state_dict()) == m["params"]["onnx"]
    assert (m["validation"]["y_channel"], m["validation"]["crop_border"]) == (False, 0)
    assert "GaussianNoise" in m["validation"]["data"] and m["checkpoint"]["param_key"] == "params"
    session = ort.InferenceSession(
        str(tmp_path / "subs" / "export_naf" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    x = torch.rand(1, 3, 21, 30)
    (y,) = session.run(["output"], {"input": x.numpy()})
    with torch.no_grad():
        assert np.abs(y - net.eval()(x).numpy()).max() <= 1e-4
