"""Cost of one distillation step ÷ (one student-only step + one teacher inference), same batch, one run.

    python -m bench distill_step [--iters 10] [--batch 8] [--lr-size 24] [--device cpu|cuda] [--amp bf16]

The distillation step is DistillModel.optimize_parameters (teacher forward under no_grad, student
forward/backward, recorder hooks, connectors, every loss, optimizer, EMA); the reference is
KitSRModel.optimize_parameters on the same student plus the teacher's forward alone. The three are timed
interleaved (round-robin) on the same batch and the median of each is used, so machine noise hits all
three alike. The teacher has random weights: speed does not depend on them. Prints a table of ratios and
writes it to ``bench/results/distill_step_<device>[_<amp>].json``.
"""

from __future__ import annotations

import argparse
import copy

import kit  # noqa: F401

# isort: split
import torch
from basicsr.models import build_model

from bench.harness import median_ms, seed_everything, timed, write_result
from kit.options import REPO_ROOT, finalize, load_options

OUTPUT_KD = {"output": {"loss": {"type": "L1Loss", "loss_weight": 1.0}}}
FITNETS = {
    "student": "body.3",
    "teacher": "body.7",
    "connector": {"type": "ConvConnector", "in_channels": 32, "out_channels": 64, "norm": "bn", "act": "relu"},
    "loss": {"type": "L2Loss", "loss_weight": 1.0},
}
# label -> train.distill (None: as in the options file, i.e. the shipped default)
SETTINGS = {
    "shipped default (the options file's train.distill)": None,
    "output-KD only": OUTPUT_KD,
    "output-KD + FitNets pair": {**OUTPUT_KD, "fitnets": FITNETS},
}


def _model(opt: dict, device: str):
    opt = finalize(copy.deepcopy(opt), is_train=True, root=REPO_ROOT / "bench" / "out")
    opt.update(dist=False, rank=0, world_size=1, num_gpu=1 if device == "cuda" else 0)
    return build_model(opt)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench distill_step", description=__doc__.splitlines()[0])
    parser.add_argument("-opt", default=str(REPO_ROOT / "options/distill.yml"))
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr-size", type=int, default=24)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["bf16", "fp16"], help="train.amp of every model (default: off, fp32)")
    args = parser.parse_args(argv)
    base = load_options(args.opt)
    base["train"]["amp"] = args.amp
    base["path"] = {"pretrain_network_t": None}
    scale = int(base["scale"])
    seed_everything(0)
    lq = torch.rand(args.batch, 3, args.lr_size, args.lr_size)
    data = {"lq": lq, "gt": torch.rand(args.batch, 3, args.lr_size * scale, args.lr_size * scale)}

    student_opt = copy.deepcopy(base)
    student_opt["model_type"] = "KitSRModel"
    for key in ("network_t",):
        student_opt.pop(key, None)
    student_opt["train"].pop("distill", None)
    student_opt["train"].pop("recipes", None)
    student = _model(student_opt, args.device)

    print(
        f"device {args.device}, amp {args.amp or 'off'}, batch {args.batch}x3x{args.lr_size}x{args.lr_size}, x{scale}, "
        f"{args.iters} timed steps each (median), {torch.get_num_threads()} threads"
    )
    print("| setting | distill step ms | student step ms | teacher fwd ms | ratio distill ÷ (student + teacher) |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    for label, distill in SETTINGS.items():
        opt = copy.deepcopy(base)
        if distill is not None:
            opt["train"]["distill"] = copy.deepcopy(distill)
        model = _model(opt, args.device)
        teacher = model.teachers["teacher"]
        model.feed_data(data)
        student.feed_data(data)

        def teacher_fwd(m=model, t=teacher):
            with torch.no_grad(), m.autocast():
                t(m.lq)

        times = {"distill": [], "student": [], "teacher": []}
        for i in range(args.iters + 2):  # two warm-up rounds
            d = timed(lambda it=i, m=model: m.optimize_parameters(it + 1), args.device)[0]
            s = timed(lambda it=i: student.optimize_parameters(it + 1), args.device)[0]
            t = timed(teacher_fwd, args.device)[0]
            if i >= 2:
                times["distill"].append(d)
                times["student"].append(s)
                times["teacher"].append(t)
        med = {k: median_ms(v) for k, v in times.items()}
        ratio = med["distill"] / (med["student"] + med["teacher"])
        print(f"| {label} | {med['distill']:.1f} | {med['student']:.1f} | {med['teacher']:.1f} | {ratio:.3f} |")
        rows.append({"setting": label, **{f"{k}_ms": v for k, v in med.items()}, "ratio": ratio})
    stem = f"distill_step_{args.device}" + (f"_{args.amp}" if args.amp else "")
    write_result(stem, {"threads": torch.get_num_threads(), "rows": rows}, name="distill_step", argv=argv, flags=args)


if __name__ == "__main__":
    main()
