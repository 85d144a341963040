"""kit-eval and the evaluation API: ONNX = PyTorch, CSV/JSON = printed means, GT-only degradation, bad inputs."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network

from kit.cli.eval import main
from kit.evaluation import EvalSettings, degraded_pairs, evaluate, folder_pairs, training_degradation
from kit.export.onnx_export import export_onnx
from kit.runners import BicubicRunner, OnnxRunner, TorchRunner, load_student
from tests.helpers import DEVICE, REPO, distill_options, tiny_options, tiny_teacher_checkpoint, write_options

RLFN = {"type": "RLFNStudent", "num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 1}


def _random_weights(net: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.fixture(scope="module")
def student(bundled_root, tmp_path_factory):
    """A tiny random RLFNStudent x4: options file, checkpoint (params_ema != params) and ONNX export."""
    root = tmp_path_factory.mktemp("eval_student")
    opt = tiny_options(bundled_root, "eval_rlfn", network_g=dict(RLFN))
    opt_path = write_options(root / "opt.yml", opt)
    net, ema = build_network(dict(RLFN)), build_network(dict(RLFN))
    _random_weights(net, 1)
    _random_weights(ema, 2)
    ckpt = root / "net_g.pth"
    torch.save({"params": net.state_dict(), "params_ema": ema.state_dict()}, ckpt)
    onnx_path = export_onnx(ema.eval(), root / "student.onnx", (1, 3, 24, 24))
    return {"opt": opt, "opt_path": opt_path, "ckpt": ckpt, "onnx": onnx_path, "ema": ema.eval(), "root": root}


def _mean_row(stdout: str) -> list[float]:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("mean"))
    return [float(v) for v in line.split()[1:]]


def test_onnx_and_pytorch_give_the_same_psnr(student, tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["-opt", str(student["opt_path"]), "--checkpoint", str(student["ckpt"]), "--onnx", str(student["onnx"])]
    assert main([*args, "--json", str(out), "--device", DEVICE]) == 0
    result = json.loads(out.read_text())
    assert result["models"] == ["onnx", "student"]
    rows = {(r["image"], r["model"]): r for r in result["per_image"]}
    images = sorted({r["image"] for r in result["per_image"]})
    assert images == ["chelsea", "coffee", "rocket"]
    for img in images:
        assert abs(rows[img, "onnx"]["psnr"] - rows[img, "student"]["psnr"]) <= 1e-3
        assert abs(rows[img, "onnx"]["ssim"] - rows[img, "student"]["ssim"]) <= 1e-5
    # The PyTorch path loaded params_ema and measures as BasicSR's numpy reference does (tensor2img, Y, border 4).
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img

    lq = cv2.imread(str(REPO / "datasets/bundled/val/LR_bicubic/X4/chelsea.png"))[:, :, ::-1] / 255.0
    x = torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1))).float()[None]
    with torch.no_grad():
        sr = tensor2img(student["ema"](x))
    gt = cv2.imread(str(REPO / "datasets/bundled/val/HR/chelsea.png"))
    expected = calculate_psnr(sr, gt, crop_border=4, test_y_channel=True)
    assert abs(rows["chelsea", "student"]["psnr"] - expected) <= 1e-3


def test_csv_and_json_match_the_printed_means(student, bundled_root, tmp_path, capsys):
    teacher_opt, teacher_ckpt = tiny_teacher_checkpoint(tmp_path / "teacher.pth")
    opt = distill_options(bundled_root, "eval_distill", teacher_opt, teacher_ckpt, network_g=dict(RLFN))
    opt_path = write_options(tmp_path / "distill.yml", opt)
    csv_path, json_path, cmp_dir = tmp_path / "e.csv", tmp_path / "e.json", tmp_path / "cmp"
    argv = ["-opt", str(opt_path), "--checkpoint", str(student["ckpt"]), "--teacher", "--bicubic"]
    argv += ["--csv", str(csv_path), "--json", str(json_path), "--compare", str(cmp_dir)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "on Y (BT.601" in printed and "border 4 px" in printed and "MATLAB imresize" in printed
    data = json.loads(json_path.read_text())
    assert data["models"] == ["student", "teacher", "bicubic"]
    printed_means = _mean_row(printed)
    json_means = [data["means"][m][k] for m in data["models"] for k in ("psnr", "ssim")]
    assert printed_means == pytest.approx(json_means, abs=6e-4)
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    for model in data["models"]:
        per_image = [float(r["psnr"]) for r in rows if r["model"] == model and r["image"] != "mean"]
        (mean_row,) = [r for r in rows if r["model"] == model and r["image"] == "mean"]
        assert len(per_image) == 3
        assert float(mean_row["psnr"]) == pytest.approx(np.mean(per_image), abs=1e-9)
        assert float(mean_row["psnr"]) == pytest.approx(data["means"][model]["psnr"], abs=1e-9)
    assert 25 < data["means"]["bicubic"]["psnr"] < 35  # real photos, MATLAB bicubic
    assert sorted(p.name for p in cmp_dir.iterdir()) == ["chelsea.png", "coffee.png", "rocket.png"]
    assert cv2.imread(str(cmp_dir / "chelsea.png")) is not None

    # RGB with another border: stated in the header, different numbers.
    assert main(["-opt", str(opt_path), "--checkpoint", str(student["ckpt"]), "--rgb", "--crop-border", "2"]) == 0
    printed_rgb = capsys.readouterr().out
    assert "on RGB, border 2 px" in printed_rgb
    assert _mean_row(printed_rgb)[0] != pytest.approx(printed_means[0], abs=1e-3)


def test_gt_only_uses_the_training_degradation(bundled_root, tmp_path, capsys):
    from kit.data.degraded_dataset import DegradedImageDataset

    noise = [{"type": "GaussianNoise", "sigma": 25}]
    opt = tiny_options(bundled_root, "eval_denoise", scale=1)
    opt["network_g"] = {"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2, "upscale": 1}
    opt["datasets"]["train"] = {
        "name": "noisy",
        "type": "DegradedImageDataset",
        "dataroot_gt": str(bundled_root / "train/HR"),
        "degradations": noise,
        "seed": 7,
        "gt_size": 32,
    }
    specs, seed, _ = training_degradation(opt, 1)
    assert (specs, seed) == (noise, 7)
    pairs = list(degraded_pairs(bundled_root / "val/HR", specs, 1, seed))
    # The same LQ as the training-side dataset's validation draw.
    ds = DegradedImageDataset(
        {
            "name": "v",
            "phase": "val",
            "scale": 1,
            "dataroot_gt": str(bundled_root / "val/HR"),
            "degradations": noise,
            "seed": 7,
        }
    )
    for i, pair in enumerate(pairs):
        np.testing.assert_array_equal(pair.lq, ds[i]["lq"].numpy().transpose(1, 2, 0))
    # Through the CLI: identity "bicubic" at scale 1 measures the noise, sigma 25 on 0-255 → about 20.2 dB.
    out = tmp_path / "n.json"
    argv = ["-opt", str(write_options(tmp_path / "n.yml", opt)), "--onnx", str(_identity_onnx(tmp_path))]
    assert main([*argv, "--gt", str(bundled_root / "val/HR"), "--rgb", "--crop-border", "0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert "GaussianNoise" in result["data"] and "seed 7" in result["data"]
    assert 19.5 < result["means"]["onnx"]["psnr"] < 21.5

    # Paired training data at x4: GT-only LQ is MATLAB bicubic, as the bundled LR folder (rounded to 8 bits).
    sr_opt = tiny_options(bundled_root, "eval_bic")
    specs, _, label = training_degradation(sr_opt, 4)
    assert "bicubic" in label
    for pair in degraded_pairs(bundled_root / "val/HR", specs, 4):
        lr = cv2.imread(str(bundled_root / "val/LR_bicubic/X4" / f"{pair.name}.png"))[:, :, ::-1] / 255.0
        assert np.abs(pair.lq - lr).max() <= 0.5 / 255 + 1e-6


def _identity_onnx(folder: Path) -> Path:
    net = torch.nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    return export_onnx(net, folder / "identity.onnx", (1, 3, 8, 8))


def test_mismatched_names_are_listed(tmp_path, capsys):
    lq, gt = tmp_path / "lq", tmp_path / "gt"
    for folder, names in ((lq, ["a", "b"]), (gt, ["a", "c"])):
        folder.mkdir()
        for n in names:
            cv2.imwrite(str(folder / f"{n}.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(["--onnx", str(_identity_onnx(tmp_path)), "--lq", str(lq), "--gt", str(gt)]) == 2
    err = capsys.readouterr().err
    assert "b.png" in err and "c.png" in err and "Traceback" not in err


def test_undecodable_file_is_named(tmp_path, capsys):
    lq, gt = tmp_path / "lq", tmp_path / "gt"
    lq.mkdir(), gt.mkdir()
    cv2.imwrite(str(lq / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (gt / "a.png").write_bytes(b"not a png at all")
    assert main(["--onnx", str(_identity_onnx(tmp_path)), "--lq", str(lq), "--gt", str(gt)]) == 2
    err = capsys.readouterr().err
    assert str(gt / "a.png") in err and "cannot decode" in err


def test_grayscale_16bit_rgba_and_mod_crop(tmp_path, capsys):
    lq, gt = tmp_path / "lq", tmp_path / "gt"
    lq.mkdir(), gt.mkdir()
    rng = np.random.default_rng(0)
    hr16 = (rng.random((34, 30)) * 65535).astype(np.uint16)  # 16-bit grayscale, not a multiple of 4
    cv2.imwrite(str(gt / "p.png"), hr16)
    cv2.imwrite(str(lq / "px4.png"), (rng.random((8, 7, 4)) * 255).astype(np.uint8))  # RGBA, DIV2K-style name
    assert main(["--lq", str(lq), "--gt", str(gt), "--scale", "4", "--onnx", str(_x4_onnx(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "mod-cropped from 34x30 to 32x28" in out
    assert re.search(r"^p\s+\d+\.\d{3}\s+-?\d\.\d{4}$", out, re.M)


def _x4_onnx(folder: Path) -> Path:
    return export_onnx(torch.nn.Upsample(scale_factor=4, mode="nearest"), folder / "nearest.onnx", (1, 3, 8, 8))


def test_tiled_evaluation_equals_whole_image(bundled_root):
    spec = {"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2, "upscale": 4}
    net = build_network(dict(spec))
    _random_weights(net, 3)
    models = {"student": TorchRunner(net, DEVICE)}
    pairs = folder_pairs(bundled_root / "val/LR_bicubic/X4", bundled_root / "val/HR", 4)
    whole = evaluate(models, pairs, 4)
    tiled = evaluate(models, pairs, 4, settings=EvalSettings(tile=32, tile_overlap=10))  # receptive field 7 < overlap
    assert tiled.tile == 32
    for a, b in zip(whole.rows, tiled.rows):
        assert a.image == b.image and a.psnr == pytest.approx(b.psnr, abs=1e-4)


def test_lpips_random_backbone_and_missing_weights(bundled_root, student, tmp_path, monkeypatch, capsys):
    from kit.metrics.lpips_metric import LPIPSMetric

    pairs = folder_pairs(bundled_root / "val/LR_bicubic/X4", bundled_root / "val/HR", 4)
    settings = EvalSettings(lpips=LPIPSMetric("alex", False), lpips_name="alex")
    result = evaluate({"bicubic": BicubicRunner(4, "torch")}, pairs, 4, settings=settings)
    assert all(r.lpips is not None and np.isfinite(r.lpips) for r in result.rows)
    result.write_csv(tmp_path / "l.csv")
    assert "lpips" in (tmp_path / "l.csv").read_text().splitlines()[0]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    assert main(["--onnx", str(student["onnx"]), "--lpips", "alex"]) == 2
    assert "alexnet" in capsys.readouterr().err


def test_student_loads_params_ema_and_wrong_checkpoint_errors(student, tmp_path):
    net, info = load_student(student["opt"], student["ckpt"])
    assert info["param_key"] == "params_ema"
    for k, v in net.state_dict().items():
        assert torch.equal(v, student["ema"].state_dict()[k])
    other = build_network({"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2, "upscale": 4})
    torch.save({"params": other.state_dict()}, tmp_path / "other.pth")
    with pytest.raises(Exception, match="does not fit RLFNStudent"):
        load_student(student["opt"], tmp_path / "other.pth")


def test_onnx_runner_probes_scale(student):
    assert OnnxRunner(student["onnx"]).probe_scale() == 4


def test_cli_entry_point_runs(student, tmp_path):
    """``python -m kit.cli.eval`` (what ``kit-eval`` calls) on the ONNX file, scale measured from the model."""
    proc = subprocess.run(
        [sys.executable, "-m", "kit.cli.eval", "--onnx", str(student["onnx"]), "--json", str(tmp_path / "j.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "x4, 3 images" in proc.stdout
    assert json.loads((tmp_path / "j.json").read_text())["scale"] == 4


def test_progress_after_every_image_and_lines_with_an_eta_without_a_terminal(bundled_root, capsys, monkeypatch):
    """kit-eval's progress: the callback sees every image; without a TTY, a line with an ETA on stderr."""
    from kit.cli.eval import ProgressLines

    pairs = folder_pairs(bundled_root / "val/LR_bicubic/X4", bundled_root / "val/HR", 4)
    seen: list[tuple[int, int | None]] = []
    evaluate(
        {"bicubic": BicubicRunner(4)}, pairs, 4, settings=EvalSettings(progress=lambda d, t, s: seen.append((d, t)))
    )
    n = len(pairs)
    assert seen == [(i, n) for i in range(1, n + 1)]

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    lines = ProgressLines(every=10.0)
    lines(1, 4, 5.0)  # before the first interval: silent
    lines(2, 4, 12.0)  # 6 s per image, 2 left: 12 s
    lines(4, 4, 24.0)  # the end: the report follows, no progress line
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["kit-eval: 2/4 images, ETA 0.2 min"]
