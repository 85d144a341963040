"""The ``--int8`` step of the export: quantise ``model.onnx``, then verify the INT8 file like the fp32 one.

Verified: the full ONNX checker; onnxruntime runs it at the two parity inputs (export size and an odd size,
batch 2) and its output is compared with the fp32 file's (max abs error and PSNR between the two); PSNR/SSIM
on the validation set with the options' metric and on RGB with a 4-px border, each beside the fp32 number;
file sizes; onnxruntime CPU latency of both files timed in alternation at the export size. A file that does not
run or gives the wrong shape fails the export; the quality drop is recorded, not judged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from kit.export.int8 import Int8Settings, calibration_crops, quantize_int8, side_by_side_latency
from kit.export.onnx_export import ExportError, check_onnx

if TYPE_CHECKING:
    from kit.export.manifest import ValidationRecord

__all__ = ["INT8_FILE", "int8_model"]

INT8_FILE = "model_int8.onnx"


def _psnr(a: Tensor, b: Tensor) -> float:
    """PSNR (dB) of ``a`` against ``b`` on [0, 1], both clipped."""
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def int8_model(
    folder: Path,
    opt: Mapping[str, Any],
    scale: int,
    inputs: list[Tensor],
    fp32: ValidationRecord,
    settings: Int8Settings,
    runs: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Write ``folder/model_int8.onnx`` from ``folder/model.onnx`` and return the manifest's ``int8`` entry.

    Args:
        folder: The staged submission folder (holds ``model.onnx``).
        opt: The options (training set for calibration, validation set for scoring).
        scale: The network's scale.
        inputs: The parity inputs (the first is the export size).
        fp32: The fp32 model's validation record (its PSNR/SSIM and metric settings).
        settings: Quantisation settings.
        runs: Timed runs per model.
        say: One line per step.

    Raises:
        ExportError: quantisation failed, or the INT8 file fails the checker, does not run or has the wrong shape.
    """
    from kit.runners import OnnxRunner

    fp32_path, path = folder / "model.onnx", folder / INT8_FILE
    record = _write_int8(fp32_path, path, opt, scale, inputs, settings)
    check_onnx(path)
    runner = OnnxRunner(path)
    checks = _parity_vs_fp32(runner, OnnxRunner(fp32_path), inputs)
    validation, metric = _validation(runner, opt, scale, fp32)
    if settings.qat is not None:
        agreement = _agreement(settings.qat, runner, opt, scale, inputs, fp32, validation["psnr"])
        record["simulation_vs_onnxruntime"] = agreement
        say(
            f"INT8 (QAT): the simulation scores {agreement['validation_psnr_simulated']:.3f} dB, onnxruntime "
            f"{validation['psnr']:.3f} dB; max abs difference "
            f"{max(c['max_abs_error'] for c in agreement['parity']):.2e}"
        )
    ms_fp32, ms_int8 = side_by_side_latency([fp32_path, path], inputs[0].numpy(), runs)
    size_fp32, size_int8 = fp32_path.stat().st_size, path.stat().st_size
    record.update(
        parity_vs_fp32=checks,
        validation=validation,
        size_bytes={"fp32": size_fp32, "int8": size_int8, "ratio": size_fp32 / size_int8},
        latency=_latency(list(inputs[0].shape), runs, ms_fp32, ms_int8),
    )
    say(
        f"INT8 {INT8_FILE}: PSNR {validation['psnr']:.3f} dB (fp32 {fp32.means['psnr']:.3f}, drop "
        f"{validation['psnr_drop_vs_fp32']:+.3f}; {metric}), onnxruntime CPU {ms_int8:.1f} ms vs "
        f"fp32 {ms_fp32:.1f} ms ({ms_fp32 / ms_int8:.2f}x), {size_int8 / 1e6:.2f} MB vs {size_fp32 / 1e6:.2f} MB"
    )
    return record


def _write_int8(
    fp32_path: Path, path: Path, opt: Mapping[str, Any], scale: int, inputs: list[Tensor], settings: Int8Settings
) -> dict[str, Any]:
    """Write ``path``: the QAT network's own QDQ export, else ``fp32_path`` calibrated and quantised statically.

    Raises:
        ExportError: the export or the quantisation failed.
    """
    if settings.qat is not None:
        from kit.quant.qdq import export_qdq

        return export_qdq(settings.qat, path, list(inputs[0].shape))
    try:
        crops, calibration = calibration_crops(opt, scale, settings.crops, settings.crop_size, settings.seed)
        record = quantize_int8(fp32_path, path, crops, settings)
    except (RuntimeError, ValueError, OSError) as err:
        raise ExportError(f"INT8: {err}") from err
    record.update(calibration=calibration, calibration_crops=settings.crops, calibration_crop_size=settings.crop_size)
    return record


def _agreement(
    qat: Any,
    runner: Callable[[Tensor], Tensor],
    opt: Mapping[str, Any],
    scale: int,
    inputs: list[Tensor],
    fp32: ValidationRecord,
    psnr_int8: float,
) -> dict[str, Any]:
    """The manifest's ``int8.simulation_vs_onnxruntime``: the PyTorch simulation against the file onnxruntime ran."""
    from kit.evaluation import evaluate, validation_pairs
    from kit.quant.qdq import frozen_copy, simulation_agreement
    from kit.runners import TorchRunner

    simulated = TorchRunner(frozen_copy(qat))
    result = evaluate({"simulated": simulated}, validation_pairs(opt, scale), scale, fp32.y_channel, fp32.crop_border)
    psnr_simulated = result.means()["simulated"]["psnr"]
    return {
        "how": "the QAT network in PyTorch (fake quantisation, observers frozen) vs model_int8.onnx in onnxruntime",
        "parity": simulation_agreement(qat, runner, inputs),
        "validation_psnr_simulated": psnr_simulated,
        "validation_psnr_onnxruntime": psnr_int8,
        "psnr_onnxruntime_minus_simulated": psnr_int8 - psnr_simulated,
    }


def _latency(shape: list[int], runs: int, ms_fp32: float, ms_int8: float) -> dict[str, Any]:
    """The manifest's ``int8.latency``: both files timed side by side."""
    return {
        "provider": "CPUExecutionProvider",
        "input_shape": shape,
        "runs": runs,
        "fp32_ms_median": ms_fp32,
        "int8_ms_median": ms_int8,
        "speedup": ms_fp32 / ms_int8,
        "how": "both files timed in alternation in one process (median of the runs after two warm-ups each)",
    }


def _parity_vs_fp32(
    runner: Callable[[Tensor], Tensor], reference: Callable[[Tensor], Tensor], inputs: list[Tensor]
) -> list[dict[str, Any]]:
    """Max abs error and PSNR of the INT8 output against the fp32 file's at each parity input.

    Raises:
        ExportError: the INT8 output does not have the fp32 output's shape.
    """
    checks = []
    for x in inputs:
        out, ref = runner(x), reference(x)
        if out.shape != ref.shape:
            raise ExportError(
                f"INT8 model returns {tuple(out.shape)} for {tuple(x.shape)}; fp32 returns {tuple(ref.shape)}"
            )
        checks.append(
            {
                "input_shape": list(x.shape),
                "max_abs_error": float((out - ref).abs().max()),
                "psnr_vs_fp32": _psnr(out, ref),
            }
        )
    return checks


def _validation(
    runner: Callable[[Tensor], Tensor], opt: Mapping[str, Any], scale: int, fp32: ValidationRecord
) -> tuple[dict[str, Any], str]:
    """The manifest's ``int8.validation`` (the fp32 metric and RGB border 4, each beside fp32) and the metric label."""
    from kit.evaluation import evaluate, validation_pairs

    pairs = lambda: validation_pairs(opt, scale)  # noqa: E731  (fresh iterator per evaluation)
    y = evaluate({"int8": runner}, pairs(), scale, fp32.y_channel, fp32.crop_border)
    rgb = evaluate({"int8": runner}, pairs(), scale, False, 4)
    means, means_rgb = y.means()["int8"], rgb.means()["int8"]
    fp32_rgb = fp32.rgb_border4 or {}
    validation = {
        "metric": y.metric_label,
        "psnr": means["psnr"],
        "ssim": means["ssim"],
        "psnr_drop_vs_fp32": fp32.means["psnr"] - means["psnr"],
        "ssim_drop_vs_fp32": fp32.means["ssim"] - means["ssim"],
        "rgb_border4": {
            "psnr": means_rgb["psnr"],
            "ssim": means_rgb["ssim"],
            "psnr_drop_vs_fp32": fp32_rgb.get("psnr", math.nan) - means_rgb["psnr"],
        },
        "num_images": len(y.images()),
    }
    return validation, y.metric_label
