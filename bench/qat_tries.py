"""What was tried for issue #27: the simulated INT8 of the official SPAN x4 ch48, calibrated only or fine-tuned.

    python -m bench qat_tries --weights $WEIGHTS/spanx4_ch48.safetensors \\
        --run qat_span_x4_split_sun --run qat_span_x4_split_sun_lsq ...   # experiments/<name>, trained by train.py

Two kinds of rows, each scored as the PyTorch simulation of onnxruntime's INT8 (``QATStudent`` in eval mode:
:mod:`kit.quant`; ``bench int8`` and ``export.py --int8`` check that onnxruntime runs what it predicts) on the
bundled validation photos and ``--sets`` (PSNR on Y, border 4), with the drop against the official fp32 weights
measured in the same command:

* **calibration only** (no training step): the observers run once over 64 crops of 48 px of the bundled train
  photos, for ``conv_cat`` quantised whole, split per concatenated part (``split_concat``) and kept float;
* **fine-tuned**: each ``--run``'s last checkpoint, with its recipe read from the options the run saved
  (steps, learning rate, batch, crop, data, ``ranges``, ``split_concat``, GT loss or not).

Writes ``bench/results/qat_tries.json``; ``python -m bench render`` puts the table in docs/export.md.
Nothing here was chosen on a test set: choices were made on the bundled validation photos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.harness import ROOT, write_result

SPAN = {"type": "SPANStudent", "num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 48, "num_block": 6}
DEFAULT_WEIGHTS = ROOT / "experiments" / "pretrained" / "spanx4_ch48.safetensors"
DEFAULT_BENCHMARKS = ROOT.parent / "shared" / "benchmarks"
CALIBRATED = {  # label -> QATStudent arguments
    "conv_cat quantised whole": {"split_concat": False},
    "conv_cat split per part (split_concat)": {"split_concat": True},
    "conv_cat kept float": {"split_concat": False, "keep_float": ["image", "conv_cat"]},
}


def _sets(names: list[str], benchmarks: Path) -> dict:
    from bench.int8 import set_pairs

    return {name: set_pairs(name, None, 4, benchmarks) for name in ["bundled", *names]}


def _scores(net, sets: dict) -> dict:
    from kit.evaluation import evaluate
    from kit.runners import TorchRunner

    runner = TorchRunner(net)
    return {name: evaluate({"m": runner}, pairs, 4, crop_border=4).means()["m"]["psnr"] for name, pairs in sets.items()}


def calibrated(weights: Path, arguments: dict):
    """The official SPAN under :class:`kit.quant.QATStudent`, observers run once over the calibration crops."""
    import torch

    from kit.prune.calibration import calibration_crops
    from kit.quant import QATStudent

    crops = calibration_crops(ROOT / "datasets" / "bundled" / "train" / "HR", 4, 64, 48, 0)
    net = QATStudent(SPAN, str(weights), **arguments).train()
    with torch.no_grad():
        for i in range(0, len(crops), 16):
            net(crops[i : i + 16])
    return net.eval()


def conv_output_quantisers(net) -> list:
    """The activation quantisers of a prepared graph that round a convolution's output which no convolution reads
    (those a convolution returning its int32 sums rescaled to float would not need; a convolution's input stays
    quantised)."""
    from kit.quant.scheme import conv_nodes

    convs = conv_nodes(net.graph, net)
    return [
        net.get_submodule(n.target)
        for n in net.graph.nodes
        if n.op == "call_module"
        and str(n.target).startswith("activation_post_process")
        and n.args[0] in convs
        and not set(n.users) & convs
    ]


def parts_off(net, sets: dict) -> tuple[dict, dict, dict]:
    """The scores with only the weights in int8 (activations float), then only the activations in int8, then
    everything in int8 but the convolutions' outputs (as a convolution that returns its int32 sums rescaled)."""
    weights = [m for n, m in net.named_modules() if n.endswith("weight_fake_quant")]
    activations = [m for n, m in net.named_modules() if n.startswith("activation_post_process") and "." not in n]
    out = []
    for off in (activations, weights, conv_output_quantisers(net)):
        for m in off:
            m.disable_fake_quant()
        out.append(_scores(net, sets))
        for m in off:
            m.enable_fake_quant()
    return out[0], out[1], out[2]


def recipe(opt: dict) -> dict:
    """What a QAT run did, from the options it saved."""
    train, data, g = opt["train"], opt["datasets"]["train"], opt["network_g"]
    return {
        "steps": train["total_iter"],
        "lr": train["optim_g"]["lr"],
        "batch": data["batch_size_per_gpu"],
        "lr_crop": data["gt_size"] // opt["scale"],
        "data": data["name"],
        "ranges": g.get("ranges", "minmax"),
        "split_concat": g.get("split_concat", False),
        "gt_loss": "pixel_opt" in train,
        "pairs": [key for key in train.get("distill", {}) if key != "output"],
        "keep_float": g.get("keep_float", ["image"]),
    }


def fine_tuned(name: str):
    """The run's QAT network (eval mode) and its recipe."""
    from kit.options import load_options
    from kit.runners import load_student

    folder = ROOT / "experiments" / name
    options = sorted(folder.glob("*.yml"))
    if not options:
        raise SystemExit(f"python -m bench qat_tries: no saved options in {folder}")
    opt = load_options(options[0])
    opt["network_g"].setdefault("split_concat", False)  # a run saved before the option existed was not split
    net = load_student(opt, str(folder / "models" / "net_g_latest.pth"))[0]
    return net.eval(), recipe(opt)


def markdown(record: dict) -> str:
    """One row per try: how it was made, PSNR-Y and the drop against fp32 on each set."""
    sets = list(record["fp32"])
    head = ["INT8 (simulated)", "steps", "lr", "batch × LR crop", "data", "ranges", "GT loss", "feature pairs"]
    head += [f"{s} (drop)" for s in sets]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * 3 + "---|" * 4 + "---:|" * len(sets)]
    fp32 = " | ".join(f"{record['fp32'][s]:.3f}" for s in sets)
    lines.append(f"| fp32 (official weights) | | | | | | | | {fp32} |")
    for row in record["rows"]:
        r = row.get("recipe")
        cells = (
            [str(r["steps"]), f"{r['lr']:g}", f"{r['batch']} × {r['lr_crop']} px", r["data"], r["ranges"]]
            + ["yes" if r["gt_loss"] else "no", ", ".join(f"`{k}`" for k in r.get("pairs", [])) or "none"]
            if r
            else ["0 (calibrated)", "", "", "bundled train", "minmax", "", ""]
        )
        scores = [f"{row['psnr'][s]:.3f} (+{record['fp32'][s] - row['psnr'][s]:.3f})" for s in sets]
        lines.append(f"| {row['label']} | " + " | ".join(cells + scores) + " |")
    halves_rows = [r for r in record["rows"] if "weights_only" in r]
    if halves_rows:
        keys = ["weights_only", "activations_only"] + (["outputs_float"] if "outputs_float" in halves_rows[0] else [])
        titles = {
            "weights_only": "int8 weights only",
            "activations_only": "int8 activations only",
            "outputs_float": "conv outputs float",
        }
        lines += [
            "",
            "Where the fine-tuned runs' drop lies (the same network, part of the quantisation switched off; "
            "*conv outputs float*: every convolution's input and weights in int8, its output not rounded to uint8 "
            "unless a convolution reads it):",
            "",
        ]
        lines += ["| run | " + " | ".join(f"{s}: {titles[k]}" for s in sets for k in keys) + " |"]
        lines += ["|---|" + "---:|" * (len(keys) * len(sets))]
        for r in halves_rows:
            cells = [f"{r[k][s]:.3f}" for s in sets for k in keys]
            lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench qat_tries", description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="the official SPAN x4 ch48 weights")
    p.add_argument("--run", action="append", default=[], help="a QAT experiment's name (repeatable)")
    p.add_argument("--sets", default="Set5", help="comma-separated test sets besides the bundled photos")
    p.add_argument("--benchmarks", type=Path, default=DEFAULT_BENCHMARKS)
    args = p.parse_args(argv)
    import kit
    from kit.archs import SPANStudent
    from kit.pretrained import load_weights

    kit.install()
    sets = _sets([s for s in args.sets.split(",") if s], args.benchmarks)
    fp32 = SPANStudent(**{k: v for k, v in SPAN.items() if k != "type"})
    load_weights(fp32, str(args.weights), "params_ema")
    record = {"fp32": _scores(fp32.eval(), sets), "rows": []}
    for label, arguments in CALIBRATED.items():
        print(f"[calibrated] {label} ...", flush=True)
        net = calibrated(args.weights, arguments)
        record["rows"].append({"label": f"calibration only, {label}", "psnr": _scores(net.quantised, sets)})
    for name in args.run:
        print(f"[fine-tuned] {name} ...", flush=True)
        net, how = fine_tuned(name)
        split = "split" if how["split_concat"] else "whole"
        row = {"label": f"`{name}` (conv_cat {split})", "recipe": how, "psnr": _scores(net.quantised, sets)}
        row["weights_only"], row["activations_only"], row["outputs_float"] = parts_off(net.quantised, sets)
        record["rows"].append(row)
    write_result("qat_tries", record, name="qat_tries", argv=argv, flags=args)
    print(markdown(record))
    return record
