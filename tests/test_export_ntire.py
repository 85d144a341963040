"""export.py --ntire-team --int8, per student family: the NTIRE file runs with the kit hidden and matches, its FLOPs
are fvcore's, the INT8 model runs and its PSNR drop is recorded, and the zip holds no machine path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from fvcore.nn import FlopCountAnalysis

import kit.export.ntire.families as families
from kit.archs import deploy_network
from kit.cli.export import main
from tests.helpers import REPO, tiny_options, write_options

SMALL = ["--input-size", "32x32", "--latency-runs", "1", "--int8-crops", "4", "--int8-crop-size", "16"]
NAF_NOISE = [{"type": "GaussianNoise", "sigma": 15}]

FAMILIES = {
    "rlfn": {
        "type": "RLFNStudent",
        "scale": 4,
        "num_feat": 8,
        "num_block": 1,
        "esa_channels": 4,
        "img_residual": "bicubic",
    },
    "repsr": {"type": "RepSRStudent", "scale": 4, "num_feat": 8, "num_block": 1},  # trained form: fused at export
    "span": {"type": "SPANStudent", "scale": 4, "num_feat": 8, "num_block": 2},  # trained form: Conv3XC fused
    "naf": {"type": "NAFStudent", "width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]},
}

# Runs in `python -I` with its own guard (not the kit's check script): the kit cannot be imported, then the package
# is used exactly as NTIRE's test_demo.py uses it.
_ORGANISER = textwrap.dedent(
    """
    import importlib.abc, sys
    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("kit", "basicsr", "spandrel"):
                raise ModuleNotFoundError(name)
    sys.meta_path.insert(0, Hide())
    import os.path
    def kit_free(p):
        return p and os.path.realpath(p) != {repo!r} and not os.path.isdir(os.path.join(p, "kit"))
    sys.path[:] = [p for p in sys.path if kit_free(p)]
    try:
        import kit
        raise SystemExit("kit is importable")
    except ImportError:
        pass
    import os, torch
    os.chdir({package!r})
    sys.path.insert(0, {package!r})
    from models.team{team}_{name} import {name}
    model = {name}()
    model.load_state_dict(torch.load(os.path.join("model_zoo", "team{team}_{name}.pth")), strict=True)
    model.eval()
    data = torch.load({inputs!r}, weights_only=True)
    with torch.no_grad():
        torch.save([model(x) for x in data], {outputs!r})
    print(sorted(m for m in sys.modules if m.split(".")[0] in ("kit", "basicsr", "spandrel")))
    """
)


def _random(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return net.eval()


def _options(family: str, bundled_root: Path) -> dict:
    net = dict(FAMILIES[family])
    if family != "naf":
        return tiny_options(bundled_root, f"ntire_{family}", network_g=net)
    opt = tiny_options(bundled_root, f"ntire_{family}", scale=1, network_g=net)
    for phase in ("train", "val"):
        opt["datasets"][phase] = {
            "name": f"noisy_{phase}",
            "type": "DegradedImageDataset",
            "dataroot_gt": str(bundled_root / f"{phase}/HR"),
            "degradations": NAF_NOISE,
        }
    opt["val"]["metrics"] = {"psnr": {"type": "calculate_psnr", "crop_border": 0, "test_y_channel": False}}
    return opt


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def exported(request, bundled_root, tmp_path_factory):
    """One export per family with the NTIRE package and the INT8 model (tiny random student, 32x32 reference)."""
    family = request.param
    if FAMILIES[family]["type"] not in ARCH_REGISTRY:
        pytest.skip(f"{FAMILIES[family]['type']} is not in this checkout (SPANStudent lands with issue 16)")
    root = tmp_path_factory.mktemp(f"ntire_{family}")
    opt = _options(family, bundled_root)
    net = _random(build_network(dict(FAMILIES[family])), 5)
    torch.save({"params": net.state_dict()}, root / "net.pth")
    argv = ["-opt", str(write_options(root / "opt.yml", opt)), "--checkpoint", str(root / "net.pth")]
    out = root / "subs"
    assert main([*argv, "--out-dir", str(out), "--ntire-team", "7", "--int8", *SMALL]) == 0
    name = opt["name"]
    return {
        "family": family,
        "root": root,
        "folder": out / name,
        "zip": out / f"{name}.zip",
        "manifest": json.loads((out / name / "manifest.json").read_text()),
        "deployed": deploy_network(net),
        "opt_path": root / "opt.yml",
        "cls": "Ntire" + family.capitalize(),
    }


def test_ntire_file_runs_with_the_kit_hidden_and_matches(exported, tmp_path):
    m, cls = exported["manifest"], exported["cls"]
    assert m["ntire"]["class"] == cls and m["ntire"]["team"] == "07"
    # The package is taken out of the zip, as the organisers get it.
    with zipfile.ZipFile(exported["zip"]) as zf:
        zf.extractall(tmp_path)
    package = tmp_path / exported["folder"].name / "ntire"
    model_file = package / "models" / f"team07_{cls}.py"
    assert sorted(p.name for p in (package / "models").iterdir()) == [model_file.name]  # exactly one file
    source = model_file.read_text()
    imports = [line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports and all(i == "torch" or i.startswith("torch.") for i in imports), imports
    snippet = (package / "select_model.txt").read_text()
    assert f"from models.team07_{cls} import {cls}" in snippet and "strict=True" in snippet and "1.0" in snippet

    g = torch.Generator().manual_seed(3)
    inputs = [torch.rand(1, 3, 24, 24, generator=g), torch.rand(2, 3, 19, 26, generator=g)]  # two sizes, one odd
    torch.save(inputs, tmp_path / "in.pt")
    script = _ORGANISER.format(
        repo=os.path.realpath(REPO),
        package=str(package),
        team="07",
        name=cls,
        inputs=str(tmp_path / "in.pt"),
        outputs=str(tmp_path / "out.pt"),
    )
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"  # no kit, BasicSR or spandrel module was loaded
    outputs = torch.load(tmp_path / "out.pt", weights_only=True)
    with torch.no_grad():
        for x, y in zip(inputs, outputs):
            ref = exported["deployed"](x)
            assert y.shape == ref.shape
            assert float((y - ref).abs().max()) <= 1e-5
    checks = m["ntire"]["verified"]["checks"]
    assert [c["input_shape"] for c in checks] == [[1, 3, 32, 32], [2, 3, 25, 21]]
    assert all(c["max_abs_error"] <= 1e-5 for c in checks)


def test_flops_are_fvcore_s_and_the_gate_uses_them(exported):
    m, net = exported["manifest"], exported["deployed"]

    def fvcore(h: int, w: int) -> int:
        return int(FlopCountAnalysis(net, torch.rand(1, 3, h, w)).total())

    assert m["counts"]["flops"] == fvcore(256, 256) == m["ntire"]["verified"]["fvcore_flops_of_the_file"]
    assert m["macs"]["macs"] == fvcore(32, 32) and m["macs"]["reference_input"] == [1, 3, 32, 32]
    assert m["counts"]["params"] == m["params"]["torch"] == sum(p.numel() for p in net.parameters())
    convs = [mod for mod in net.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert m["counts"]["num_conv"] >= len(convs) > 0 and m["counts"]["activations"] > 0


def test_int8_model_runs_and_its_drop_is_recorded(exported, tmp_path):
    m, folder = exported["manifest"], exported["folder"]
    q = m["int8"]
    model = onnx.load(str(folder / "model_int8.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert int8_weights, "no int8 convolution weights"
    scales = {t.name: t for t in model.graph.initializer}
    per_channel = [
        n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in {t.name for t in int8_weights}
    ]
    assert any(len(scales[n.input[1]].dims) == 1 and scales[n.input[1]].dims[0] > 1 for n in per_channel)

    if exported["family"] == "rlfn":  # the bicubic residual: rewritten exactly, and left in float by INT8
        fp32_ops = onnx.load(folder / "model.onnx").graph.node
        modes = [a.s for n in fp32_ops if n.op_type == "Resize" for a in n.attribute if a.name == "mode"]
        cubic = [m for m in modes if m == b"cubic"]
        assert modes.count(b"linear") == 1  # ESA's bilinear resize stays
        assert len(m["onnx"]["rewrites"]) == 1 and not cubic
        producers = {o: n.op_type for n in model.graph.node for o in n.output}
        (conv,) = [n for n in model.graph.node if n.name.startswith("kit_bicubic") and n.op_type == "Conv"]
        assert producers.get(conv.input[1]) != "DequantizeLinear" and conv.name in q["float_nodes"]
    session = ort.InferenceSession(str(folder / "model_int8.onnx"), providers=["CPUExecutionProvider"])
    fp32 = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 21, 30), dtype=np.float32)
    (y8,) = session.run(["output"], {"input": x})
    (y32,) = fp32.run(["output"], {"input": x})
    assert y8.shape == y32.shape and np.isfinite(y8).all()

    # The recorded PSNR is the evaluation CLI's on the INT8 file; the drop is fp32 minus it.
    from kit.cli.eval import main as eval_main

    out = tmp_path / "eval.json"
    metric = [] if m["validation"]["y_channel"] else ["--rgb"]
    metric += ["--crop-border", str(m["validation"]["crop_border"]), "--json", str(out)]
    assert eval_main(["-opt", str(exported["opt_path"]), "--onnx", str(folder / "model_int8.onnx"), *metric]) == 0
    psnr = json.loads(out.read_text())["means"]["onnx"]["psnr"]
    assert q["validation"]["psnr"] == pytest.approx(psnr, abs=1e-9)
    assert q["validation"]["psnr_drop_vs_fp32"] == pytest.approx(m["validation"]["psnr"] - psnr, abs=1e-9)
    assert q["size_bytes"]["int8"] == (folder / "model_int8.onnx").stat().st_size
    assert q["latency"]["int8_ms_median"] > 0 and q["latency"]["fp32_ms_median"] > 0
    assert q["calibration_crops"] == 4 and "training" in q["calibration"]
    assert m["files"]["model_int8.onnx"] and m["files"][f"ntire/models/team07_{exported['cls']}.py"]


def test_zip_holds_no_machine_path(exported):
    m = exported["manifest"]
    assert m["options"]["datasets"]["val"]["dataroot_gt"].startswith("datasets/bundled/")  # was absolute
    assert m["checkpoint"]["path"] == "net.pth" and m["options_file"] == "opt.yml"
    expected = "cuda_events" if torch.cuda.is_available() else "onnxruntime_cpu"
    assert m["runtime"]["method"] == expected and m["runtime"]["ms"] > 0
    if expected == "onnxruntime_cpu":
        assert m["runtime"]["ms"] == m["latency"]["onnxruntime_cpu_ms_median"]
    assert m["validation"]["rgb_border4"]["metric"].startswith("PSNR (dB) / SSIM on RGB, border 4 px")
    forbidden = [str(REPO), str(exported["root"]), str(Path.home())]
    with zipfile.ZipFile(exported["zip"]) as zf:
        names = zf.namelist()
        assert f"{exported['folder'].name}/model_int8.onnx" in names
        for member in names:
            data = zf.read(member)
            for path in forbidden:
                assert path.encode() not in data, f"{member} holds {path}"


def test_unknown_family_and_bad_name_are_refused_before_work(bundled_root, tmp_path, capsys):
    opt = tiny_options(bundled_root, "ntire_bad")  # SRVGGNetCompact: no torch-only source
    torch.save({"params": build_network(dict(opt["network_g"])).state_dict()}, tmp_path / "net.pth")
    argv = ["-opt", str(write_options(tmp_path / "o.yml", opt)), "--checkpoint", str(tmp_path / "net.pth")]
    assert main([*argv, "--out-dir", str(tmp_path / "subs"), "--ntire-team", "1", *SMALL]) == 2
    assert "no NTIRE source for network_g type 'SRVGGNetCompact'" in capsys.readouterr().err
    opt["network_g"] = dict(FAMILIES["rlfn"])
    argv[1] = str(write_options(tmp_path / "o.yml", opt))
    assert main([*argv, "--out-dir", str(tmp_path / "subs"), "--ntire-team", "1", "--ntire-name", "RLFN"]) == 2
    assert "clashes" in capsys.readouterr().err
    assert not (tmp_path / "subs").exists()


def test_a_file_that_needs_the_kit_fails_the_check_and_nothing_is_written(bundled_root, tmp_path, monkeypatch, capsys):
    """The hiding is real: a source that reaches for the kit at run time (past the static import check) fails."""
    sources = tmp_path / "sources"
    sources.mkdir()
    text = (families.SOURCES / "rlfn.py").read_text()
    (sources / "rlfn.py").write_text(text.replace("import torch\n", "import torch\n\n__import__('kit')\n", 1))
    monkeypatch.setattr(families, "SOURCES", sources)
    opt = tiny_options(bundled_root, "ntire_needs_kit", network_g=dict(FAMILIES["rlfn"]))
    torch.save({"params": _random(build_network(dict(FAMILIES["rlfn"])), 1).state_dict()}, tmp_path / "net.pth")
    out = tmp_path / "subs"
    out.mkdir()
    argv = ["-opt", str(write_options(tmp_path / "o.yml", opt)), "--checkpoint", str(tmp_path / "net.pth")]
    assert main([*argv, "--out-dir", str(out), "--ntire-team", "3", *SMALL[:4]]) == 1
    err = capsys.readouterr().err
    assert "does not run with the kit hidden" in err and "hidden for the NTIRE package check" in err
    assert list(out.iterdir()) == []


def test_a_qat_run_is_pointed_at_the_run_it_fine_tuned() -> None:
    from kit.export.ntire.families import family_for

    with pytest.raises(ValueError, match="export the run the QAT fine-tuned from with --ntire-team"):
        family_for("QATStudent")
