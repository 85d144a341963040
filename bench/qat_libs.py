"""Issue #27's library question, measured: torch.ao (the kit's QAT path) beside brevitas, on one network.

    /tmp/bv/bin/python -m bench qat_libs [--weights experiments/pretrained/spanx4_ch48.safetensors] [--threads 1]

Installing brevitas (0.13.x): it pins ``setuptools<81`` and the kit's ``.venv`` has a newer one, so it lives in a
side venv that shares the kit's packages: ``python3 -m venv /tmp/bv``; a ``.pth`` file in its site-packages listing
``.venv``'s site-packages and the repository; ``/tmp/bv/bin/pip install brevitas onnxoptimizer`` (brevitas' ONNX
export imports onnxoptimizer). Run from the repository with ``/tmp/bv/bin/python``. Without brevitas the torch.ao
half is measured and brevitas is recorded as not measured, with that line as the reason.

For each network (a tiny ``SPANStudent``: 8 features, 2 blocks, x4, ``deploy=True``, random weights of seed 0; and
the official SPAN x4 ch48 when ``--weights`` exists) and each library, on the same deployed fp32 weights:

1. **simulation** of onnxruntime's static INT8 scheme (int8 per-output-channel symmetric weights on [-127, 127],
   scale max|w| / 127, as onnxruntime's ``quantize_static``, in both libraries; uint8 per-tensor asymmetric
   activations, min/max ranges; every convolution's input and output quantised, everything between convolutions
   float), with the kit's defaults: ``conv_cat`` split per concatenated part (``split_concat``,
   :mod:`kit.quant.split`, applied to the graph both libraries get) and ``keep_float: [image]``.

   * ``torch.ao``: :class:`kit.quant.QATStudent` (FX ``prepare_qat_fx``, :mod:`kit.quant.scheme`).
   * ``brevitas``: the split graph traced by ``brevitas.graph.quantize.preprocess_for_quantize``, then
     ``brevitas.graph.quantize_impl.layer_handler``, the convolution step of brevitas' graph-mode ``quantize``:
     ``QuantConv2d`` with ``Int8WeightPerChannelFloat`` weights and a ``QuantIdentity`` of
     ``ShiftedUint8ActPerTensorFloat`` (min/max statistics instead of its default percentiles) where a
     convolution's input or output is not quantised yet. Nothing is wrapped by hand.
   * ``brevitas, whole quantize``: brevitas' whole graph-mode ``quantize`` with the same quantisers. It also
     quantises the network's input and gives the inputs of every add one shared quantiser, so it is not
     onnxruntime's scheme: measured as what the library does with its own graph flow.

2. **calibration**: the 64 LR crops of 48 px of the bundled train photos (seed 0) in one batch, so each range is
   the min/max over all of them of the float activations, as onnxruntime's MinMax calibration: the kit's observers
   in train mode with fake quantisation off, brevitas in ``brevitas.graph.calibrate.calibration_mode``. Nothing is
   trained.
3. **export** to QDQ ONNX: torch.ao by :func:`kit.quant.qdq.export_qdq` (``export.py --int8``'s path), brevitas by
   ``brevitas.export.export_onnx_qcdq`` (the torchscript exporter, as the kit's; opset 17, dynamic height and width,
   and ``keep_initializers_as_inputs=False``: brevitas' default ``True`` leaves the biases as graph inputs, so
   onnxruntime quantises them at run time, a Div, Round and Cast per convolution).
4. **onnxruntime** (CPU) with its default optimisations and with ``ORT_DISABLE_ALL``, against the library's own
   PyTorch simulation. It records whether the file runs; max and mean abs difference ×255 and in steps of the
   simulation's output quantiser (against :data:`TOLERANCE`, the kit's in tests/test_qat.py) at a 1x3x64x64
   uniform random input and on the bundled val photos; PSNR-Y (border 4) of the simulation and of onnxruntime on
   those photos; the node types of onnxruntime's optimised graph (written with
   ``SessionOptions.optimized_model_filepath``); and CPU latency at 1x3x256x256, all files of the network timed in
   alternation with its fp32 export (:func:`kit.export.int8.side_by_side_latency`, median of ``--runs``).

Writes ``bench/results/qat_libs.json``; ``python -m bench render`` puts the table in docs/export.md. Not a test:
timings vary with the machine's load.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import ROOT, write_result

TINY = {"type": "SPANStudent", "num_feat": 8, "num_block": 2, "scale": 4, "deploy": True}
SPAN = {"type": "SPANStudent", "num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 48, "num_block": 6}
DEFAULT_WEIGHTS = ROOT / "experiments" / "pretrained" / "spanx4_ch48.safetensors"
LEVELS = ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL")
TOLERANCE = {"ORT_DISABLE_ALL": (2.0, 0.02), "ORT_ENABLE_ALL": (4.0, 0.25)}  # output-quantiser steps: max, mean
BREVITAS_FLOWS = {"brevitas": "layers", "brevitas, whole quantize": "whole"}
INSTALL = (
    "brevitas is not importable here; install it in a side venv: python3 -m venv /tmp/bv, a .pth file in its "
    f"site-packages listing {ROOT}/.venv's site-packages and {ROOT}, /tmp/bv/bin/pip install brevitas onnxoptimizer, "
    "then /tmp/bv/bin/python -m bench qat_libs"
)
WEIGHTS = "weights in [-127, 127], scale max|w| / 127, as onnxruntime's quantize_static (no difference)"
BIAS = (
    "the bias stays float in the simulation; onnxruntime quantises it to int32 (input scale × weight scale) when it "
    "fuses a QLinearConv"
)
MINMAX = "stock ShiftedUint8ActPerTensorFloat takes percentile ranges (0.001 to 99.999); set to min/max here"
DIFFERS = {
    "torch.ao": [
        WEIGHTS,
        "calibrated here with fake quantisation off (float activations, as onnxruntime and brevitas calibrate); a "
        "training forward of QATStudent observes with it on, each range seeing the rounded activations upstream",
        BIAS,
    ],
    "brevitas": [
        WEIGHTS,
        "a tensor read by two convolutions gets one input quantiser per convolution (same calibration, so the same "
        "scale and zero point, two QDQ pairs in the file)",
        MINMAX,
        BIAS,
    ],
    "brevitas, whole quantize": [
        WEIGHTS,
        "the network's input is quantised to uint8 (not keep_float image); the inputs of each add share one quantiser "
        "and its output is requantised: roundings onnxruntime's scheme does not have",
        MINMAX,
        BIAS,
    ],
}


@dataclass
class Built:
    """One library's quantised network: its simulation, its QDQ file, its output step and how it was made."""

    sim: Any
    path: Path
    step: float
    how: dict[str, Any]


def last_quantiser_step(net, is_quantiser: Callable[[str, Any], bool], scale: Callable[[Any], float]) -> float:
    """The scale of the activation quantiser ``net`` calls last on a small input (its output quantiser)."""
    import torch

    called: list[Any] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: called.append(m)) for n, m in net.named_modules() if is_quantiser(n, m)
    ]
    with torch.no_grad():
        net(torch.rand(1, 3, 16, 16))
    for h in hooks:
        h.remove()
    return float(scale(called[-1]))


def build_torch_ao(network: dict, weights: str | None, crops, folder: Path) -> tuple[Built, Any]:
    """The kit's path: :class:`QATStudent`, its observers run once on ``crops`` with fake quantisation off (float
    activations, as onnxruntime's MinMax calibration), :func:`export_qdq`; and the fp32 network."""
    import torch
    from torch.ao.quantization import FakeQuantize

    from kit.quant import QATStudent
    from kit.quant.qdq import export_qdq, frozen_copy
    from kit.quant.scheme import set_fake_quant

    torch.manual_seed(0)
    qat = QATStudent(network, weights, keep_float=["image"], split_concat=True).train()
    set_fake_quant(qat.quantised, False)
    with torch.no_grad():
        qat(crops)
    qat.eval()  # ranges frozen, fake quantisation on
    path = folder / "torch_ao.onnx"
    record = export_qdq(qat, path, (1, 3, 64, 64))
    sim = frozen_copy(qat)
    step = last_quantiser_step(
        sim, lambda n, m: isinstance(m, FakeQuantize) and not n.endswith("weight_fake_quant"), lambda m: m.scale
    )
    how = {
        "simulation": "kit.quant.QATStudent (torch.ao FX prepare_qat_fx), keep_float [image], split_concat",
        "calibration": "one observing forward over the crops, fake quantisation off",
        "export": record["tool"],
        "weights_folded_to_int8": record["weights_folded_to_int8"],
    }
    return Built(sim, path, step, how), qat.fp32_network()


def brevitas_network(fp32, flow: str):
    """``fp32`` split as the kit splits it, traced by brevitas and quantised by its graph-mode flow (``layers`` or
    ``whole``) with onnxruntime's scheme; eval mode, ranges not yet calibrated."""
    import brevitas.nn as qnn
    import torch
    from brevitas.core.stats import NegativeMinOrZero
    from brevitas.graph.quantize import preprocess_for_quantize, quantize
    from brevitas.graph.quantize_impl import layer_handler
    from brevitas.inject.enum import StatsOp
    from brevitas.quant import Int8WeightPerChannelFloat
    from brevitas.quant.shifted_scaled_int import ShiftedUint8ActPerTensorFloat
    from torch import nn

    from kit.quant.split import split_concat_convolutions

    class MinMaxUint8Act(ShiftedUint8ActPerTensorFloat):  # brevitas' injector override: min/max, not percentiles
        scaling_stats_op = StatsOp.MIN_MAX
        zero_point_stats_impl = NegativeMinOrZero

    act = (qnn.QuantIdentity, {"act_quant": MinMaxUint8Act, "return_quant_tensor": False})
    conv = {"weight_quant": Int8WeightPerChannelFloat, "bias_quant": None, "return_quant_tensor": False}
    identity, layers = {"signed": act, "unsigned": act}, {nn.Conv2d: (qnn.QuantConv2d, conv)}
    net = copy.deepcopy(fp32).eval()
    net = split_concat_convolutions(net, torch.rand(1, 3, 16, 16)) or net
    graph = preprocess_for_quantize(net, equalize_iters=0, merge_bn=False, relu6_to_relu=False)
    if flow == "whole":
        graph = quantize(graph, identity, layers, quant_act_map={}, unsigned_act_tuple=())
    else:
        graph = layer_handler(graph, layers, True, identity, quant_act_map={}, unsigned_act_tuple=())
    return graph.eval()


def build_brevitas(fp32, crops, folder: Path, flow: str) -> Built:
    """brevitas on the same fp32 network: quantised (:func:`brevitas_network`), calibrated on ``crops``, exported."""
    import brevitas
    import brevitas.nn as qnn
    import torch
    from brevitas.export import export_onnx_qcdq
    from brevitas.graph.calibrate import calibration_mode

    net = brevitas_network(fp32, flow)
    with torch.no_grad(), calibration_mode(net):
        net(crops)
    path = folder / f"brevitas_{flow}.onnx"
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx_qcdq(
            net, args=torch.rand(1, 3, 64, 64), export_path=str(path), opset_version=17, dynamo=False,
            keep_initializers_as_inputs=False, do_constant_folding=True, input_names=["input"],
            output_names=["output"], dynamic_axes={"input": dynamic, "output": dynamic},
        )  # fmt: skip
    step = last_quantiser_step(net, lambda n, m: isinstance(m, qnn.QuantIdentity), lambda m: m.act_quant.scale())
    how = {
        "brevitas": brevitas.__version__,
        "simulation": "brevitas.graph.quantize."
        + ("quantize" if flow == "whole" else "quantize_impl.layer_handler")
        + " on the kit's split graph (preprocess_for_quantize), Int8WeightPerChannelFloat weights, "
        "ShiftedUint8ActPerTensorFloat with min/max statistics",
        "export": "brevitas.export.export_onnx_qcdq (torchscript, opset 17, keep_initializers_as_inputs False)",
    }
    return Built(net, path, step, how)


def onnx_runner(path: Path, level: str, threads: int | None, optimised: Path | None = None) -> Callable:
    """The kit's :class:`~kit.runners.OnnxRunner` at optimisation ``level``, optionally writing its optimised graph."""
    import onnxruntime as ort

    from kit.runners import OnnxRunner

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if optimised is not None:
        so.optimized_model_filepath = str(optimised)
    return OnnxRunner(path, threads=threads, session_options=so)


def recording(run: Callable, outputs: list) -> Callable:
    """``run``, keeping each output in ``outputs`` (the val differences come from the very runs ``evaluate`` scores)."""

    def call(x):
        outputs.append(run(x))
        return outputs[-1]

    return call


def difference(expected: list, got: list, step: float, level: str) -> dict[str, Any]:
    """Max and mean abs difference over all outputs, ×255 and in output-quantiser steps, against :data:`TOLERANCE`."""
    diffs = [(g - e).abs() for e, g in zip(expected, got)]
    top = max(float(d.max()) for d in diffs)
    mean = sum(float(d.sum()) for d in diffs) / sum(d.numel() for d in diffs)
    worst, average = TOLERANCE[level]
    return {
        "max_x255": top * 255,
        "mean_x255": mean * 255,
        "max_steps": top / step,
        "mean_steps": mean / step,
        "within_kit_tolerance": top <= worst * step * (1 + 1e-5) and mean <= average * step,
    }


def count(kinds: dict[str, int], *names: str) -> int:
    """How many nodes of ``kinds`` (:func:`op_types`) have one of the types ``names``, whatever their domain."""
    return sum(n for kind, n in kinds.items() if kind.rpartition(":")[2] in names)


def op_types(path: Path) -> dict[str, int]:
    """Node types of an ONNX graph (``domain:type`` outside the default domain), most frequent first."""
    import onnx

    kinds = Counter(
        n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}" for n in onnx.load(path).graph.node
    )
    return dict(kinds.most_common())


def measure(built: Built, threads: int | None, folder: Path) -> dict[str, Any]:
    """Whether onnxruntime runs ``built.path``, how closely it follows the simulation, and its optimised graph."""
    import torch

    from kit.evaluation import bundled_pairs, evaluate
    from kit.runners import TorchRunner

    record = {"how": built.how, "output_step_x255": built.step * 255, "bytes": built.path.stat().st_size}
    optimised = folder / f"{built.path.stem}.optimised.onnx"
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    try:
        runners = {"simulation": TorchRunner(built.sim)} | {
            lv: onnx_runner(built.path, lv, threads, optimised if lv == LEVELS[0] else None) for lv in LEVELS
        }
        outputs = {"random_64": {k: [run(x)] for k, run in runners.items()}, "val": {k: [] for k in runners}}
        recorded = {k: recording(run, outputs["val"][k]) for k, run in runners.items()}
        means = evaluate(recorded, bundled_pairs(4), 4, crop_border=4).means()
    except Exception as err:  # onnxruntime raises its own exception types: recorded, the other files still measured
        return record | {"runs": False, "error": f"{type(err).__name__}: {str(err)[:300]}"}
    for part, out in outputs.items():
        record[part] = {lv: difference(out["simulation"], out[lv], built.step, lv) for lv in LEVELS}
    record["val_psnr"] = {k: means[k]["psnr"] for k in runners}
    return record | {"optimised_op_types": op_types(optimised), "runs": True}


def brevitas_missing() -> str | None:
    """Why brevitas cannot be measured here (the install line), or None."""
    try:
        import brevitas  # noqa: F401
        import onnxoptimizer  # noqa: F401  (brevitas' ONNX export needs it)
    except ImportError as err:
        return f"{INSTALL} ({type(err).__name__}: {err})"
    return None


def measure_network(network: dict, weights: str | None, crops, args: argparse.Namespace) -> dict[str, Any]:
    """One network: fp32 PSNR, each library built and measured (:func:`measure`), every file's latency side by side."""
    import numpy as np

    from kit.evaluation import bundled_pairs, evaluate
    from kit.export.int8 import side_by_side_latency
    from kit.export.onnx_export import export_onnx
    from kit.runners import TorchRunner

    with tempfile.TemporaryDirectory(prefix="bench-qat-libs-") as tmp:
        folder = Path(tmp)
        ao, fp32 = build_torch_ao(network, weights, crops, folder)
        built, libraries, reason = {"torch.ao": ao}, {}, brevitas_missing()
        for label, flow in BREVITAS_FLOWS.items():
            if reason is not None:
                libraries[label] = {"measured": False, "reason": reason}
                continue
            try:
                built[label] = build_brevitas(fp32, crops, folder, flow)
            except Exception as err:  # brevitas' own failures (tracing, calibration, export): recorded, not raised
                libraries[label] = {"measured": False, "reason": f"brevitas failed: {type(err).__name__}: {err}"[:320]}
        for label, b in built.items():
            print(f"  [{label}] onnxruntime vs its simulation ...", flush=True)
            libraries[label] = {"measured": True, **measure(b, args.threads, folder), "differs": DIFFERS[label]}
        export_onnx(fp32, folder / "fp32.onnx", (1, 3, 64, 64))
        fp32_psnr = evaluate({"fp32": TorchRunner(fp32)}, bundled_pairs(4), 4, crop_border=4).means()["fp32"]["psnr"]
        timed = {"fp32": folder / "fp32.onnx"} | {k: b.path for k, b in built.items() if libraries[k]["runs"]}
        x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
        ms = dict(zip(timed, side_by_side_latency(list(timed.values()), x, args.runs, args.threads)))
    latency = {"input_shape": [1, 3, args.size, args.size], "runs": args.runs, "threads": args.threads, "ms": ms}
    libraries = {k: libraries[k] for k in ("torch.ao", *BREVITAS_FLOWS)}
    return {"network": network, "weights": weights, "fp32_psnr": fp32_psnr, "libraries": libraries, "latency": latency}


LEGEND = (
    "Agreement cells: max / mean abs difference of onnxruntime's output from the library's own PyTorch simulation, "
    "×255 (in steps of the simulation's output quantiser; the kit's tolerance, tests/test_qat.py: {tolerance}). "
    "PSNR-Y on the bundled val photos (x4, border 4); latency: onnxruntime CPU at {shape}, {threads} thread(s), "
    "median of {runs} runs, each network's files timed in alternation."
)


def _cell(d: dict) -> str:
    return f"{d['max_x255']:.1f} / {d['mean_x255']:.2f} ({d['max_steps']:.1f} / {d['mean_steps']:.2f})"


def _row(name: str, label: str, lib: dict, net: dict) -> list[str]:
    """The table row of one library on one network."""
    if not lib["measured"]:
        return [name, label, "not measured: " + lib["reason"].split(";")[0]] + [""] * 7
    if not lib["runs"]:
        return [name, label, "does not run in onnxruntime: " + lib["error"]] + [""] * 7
    kinds, ms, psnr = lib["optimised_op_types"], net["latency"]["ms"], lib["val_psnr"]
    fused = f"{count(kinds, 'QLinearConv')} QLinearConv, {count(kinds, 'Conv', 'FusedConv')} float Conv"
    agreement = [_cell(lib[part][lv]) for part in ("random_64", "val") for lv in LEVELS]
    return [name, label, fused, f"{lib['output_step_x255']:.2f}", *agreement] + [
        f"{psnr['simulation']:.3f} / {psnr['ORT_ENABLE_ALL']:.3f}",
        f"{ms[label]:.1f} ({ms['fp32'] / ms[label]:.2f}×)",
    ]


def markdown(record: dict) -> str:
    """One row per network and library: fusion, agreement with the simulation, PSNR, latency; then the notes."""
    head = ["network", "library", "onnxruntime-optimised graph", "output step ×255"]
    head += [f"{part}, {lv}" for part in ("random 64²", "val photos") for lv in LEVELS]
    head += ["PSNR-Y simulation / ORT", "ORT CPU ms (speed-up vs fp32)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * 7]
    for net in record["networks"]:
        name = net["name"]
        if net.get("skipped"):
            lines.append(f"| {name} | | skipped: {net['skipped']} |" + " |" * 7)
            continue
        ms = net["latency"]["ms"]["fp32"]
        lines.append(f"| {name} | fp32 (no quantisation) | |" + " |" * 5 + f" {net['fp32_psnr']:.3f} | {ms:.1f} |")
        lines += ["| " + " | ".join(_row(name, k, lib, net)) + " |" for k, lib in net["libraries"].items()]
    timed = [net["latency"] for net in record["networks"] if "latency" in net]
    if timed:
        shape, threads = "x".join(map(str, timed[0]["input_shape"])), timed[0]["threads"] or "onnxruntime's default"
        tolerance = ", ".join("{:g} / {:g} with {}".format(*record["tolerance_steps"][lv], lv) for lv in LEVELS)
        lines += ["", LEGEND.format(tolerance=tolerance, shape=shape, threads=threads, runs=timed[0]["runs"])]
    notes = {
        k: v["differs"] for net in record["networks"] for k, v in net.get("libraries", {}).items() if "differs" in v
    }
    lines += ["", "What differs from onnxruntime's scheme, by library:", ""]
    lines += [f"- **{k}**: " + "; ".join(v) + "." for k, v in notes.items()]
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench qat_libs", description=__doc__.splitlines()[0])
    p.add_argument(
        "--weights", type=Path, default=DEFAULT_WEIGHTS, help="the official SPAN x4 ch48 (skipped if absent)"
    )
    p.add_argument("--crops", type=int, default=64, help="calibration crops (default 64)")
    p.add_argument("--crop-size", type=int, default=48, help="LR side of a calibration crop (default 48)")
    p.add_argument("--size", type=int, default=256, help="LR side of the latency input (default 256)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per file (median; default 5)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: its own)")
    p.add_argument("--result", default="qat_libs", help="result name under bench/results/, or a .json path")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    import kit
    from kit.prune.calibration import calibration_crops

    kit.install()
    crops = calibration_crops(ROOT / "datasets" / "bundled" / "train" / "HR", 4, args.crops, args.crop_size, 0)
    networks = [("tiny SPAN (8 ch, 2 blocks, x4, random seed 0)", TINY, None)]
    networks.append(("official SPAN x4 ch48", SPAN, str(args.weights)))
    record: dict[str, Any] = {"calibration": f"{args.crops} LR crops of {args.crop_size} px, bundled train, seed 0"}
    record |= {"tolerance_steps": TOLERANCE, "networks": []}
    for name, network, weights in networks:
        if weights is not None and not Path(weights).is_file():
            record["networks"].append({"name": name, "skipped": f"weights {weights} not found"})
            continue
        print(f"[{name}] ...", flush=True)
        record["networks"].append({"name": name, **measure_network(network, weights, crops, args)})
    write_result(args.result, record, name="qat_libs", argv=argv, flags=args)
    print(markdown(record))
    return record
