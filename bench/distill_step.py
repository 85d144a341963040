"""Cost of one distillation step ÷ (one student-only step + one teacher inference), same batch, one run.

    python -m bench distill_step [--iters 10] [--batch 8] [--lr-size 24] [--device cpu|cuda] [--amp bf16]
    python -m bench distill_step --threads 1 --clock cpu      # on a CPU other jobs share: CPU time, not wall time

The distillation step is DistillModel.optimize_parameters (teacher forward under no_grad, student
forward/backward, recorder hooks, connectors, every loss, optimizer, EMA); the reference is
KitSRModel.optimize_parameters on the same student plus the teacher's forward alone. The three are timed
interleaved (round-robin) on the same batch and the median of each is used, so machine noise hits all
three alike. The teacher has random weights: speed does not depend on them. Prints a table of ratios and
writes it to ``bench/results/distill_step_<device>[_<amp>][_cpuclock].json``.

``--clock cpu`` times each call by the CPU time of the one thread that runs it (``--threads 1``): on a CPU that
other jobs load, wall time mostly measures them (and a second OpenMP thread spin-waits for a descheduled one).
"""

from __future__ import annotations

import argparse
import copy
import time

import kit  # noqa: F401

# isort: split
import torch
from basicsr.models import build_model

from bench.harness import median_ms, seed_everything, timed, write_result
from kit.options import REPO_ROOT, finalize, load_options

OUTPUT_KD = {"output": {"loss": {"type": "L1Loss", "loss_weight": 1.0}}}
CWD = {
    "student": "body.3",
    "teacher": "body.7",
    "connector": {"type": "ConvConnector", "in_channels": 32, "out_channels": 64, "norm": None, "act": None},
    "loss": {"type": "ChannelWiseDivergence", "tau": 4.0, "loss_weight": 1.0},
}
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
    "output-KD + one CWD pair (last block)": {**OUTPUT_KD, "cwd": CWD},
}


def _model(opt: dict, device: str):
    opt = finalize(copy.deepcopy(opt), is_train=True, root=REPO_ROOT / "bench" / "out")
    opt.update(dist=False, rank=0, world_size=1, num_gpu=1 if device == "cuda" else 0)
    return build_model(opt)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench distill_step", description=__doc__.splitlines()[0])
    parser.add_argument("-opt", default=str(REPO_ROOT / "options/distill.yml"))
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr-size", type=int, default=24)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["bf16", "fp16"], help="train.amp of every model (default: off, fp32)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: the thread's CPU time")
    args = parser.parse_args(argv)
    if args.clock == "cpu" and (args.device != "cpu" or args.threads != 1):
        parser.error("--clock cpu times one thread on the CPU: give --threads 1 (and --device cpu)")
    return args


def _time_setting(model, student, args: argparse.Namespace) -> dict[str, float]:
    """Median ms of the distillation step, the student-only step and the teacher's forward, timed round-robin."""
    clock = _cpu_timed if args.clock == "cpu" else timed
    teacher = model.teachers["teacher"]

    def teacher_fwd():
        with torch.no_grad(), model.autocast():
            teacher(model.lq)

    times = {"distill": [], "student": [], "teacher": []}
    for i in range(args.iters + 2):  # two warm-up rounds
        d = clock(lambda it=i: model.optimize_parameters(it + 1), args.device)[0]
        s = clock(lambda it=i: student.optimize_parameters(it + 1), args.device)[0]
        t = clock(teacher_fwd, args.device)[0]
        if i >= 2:
            times["distill"].append(d)
            times["student"].append(s)
            times["teacher"].append(t)
    return {k: median_ms(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_options(args.opt)
    base["train"]["amp"] = args.amp
    base["path"] = {"pretrain_network_t": None}
    scale = int(base["scale"])
    seed_everything(0)
    lq = torch.rand(args.batch, 3, args.lr_size, args.lr_size)
    data = {"lq": lq, "gt": torch.rand(args.batch, 3, args.lr_size * scale, args.lr_size * scale)}

    student_opt = copy.deepcopy(base)
    student_opt["model_type"] = "KitSRModel"
    student_opt.pop("network_t", None)
    student_opt["train"].pop("distill", None)
    student_opt["train"].pop("recipes", None)
    student = _model(student_opt, args.device)

    print(
        f"device {args.device}, amp {args.amp or 'off'}, batch {args.batch}x3x{args.lr_size}x{args.lr_size}, x{scale}, "
        f"{args.iters} timed steps each (median), {torch.get_num_threads()} threads, {args.clock} clock"
    )
    print("| setting | distill step ms | student step ms | teacher fwd ms | ratio distill ÷ (student + teacher) |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    for label, distill in SETTINGS.items():
        opt = copy.deepcopy(base)
        if distill is not None:
            opt["train"]["distill"] = copy.deepcopy(distill)
        model = _model(opt, args.device)
        model.feed_data(data)
        student.feed_data(data)
        med = _time_setting(model, student, args)
        ratio = med["distill"] / (med["student"] + med["teacher"])
        print(f"| {label} | {med['distill']:.1f} | {med['student']:.1f} | {med['teacher']:.1f} | {ratio:.3f} |")
        rows.append({"setting": label, **{f"{k}_ms": v for k, v in med.items()}, "ratio": ratio})
    stem = f"distill_step_{args.device}" + (f"_{args.amp}" if args.amp else "")
    stem += "_cpuclock" if args.clock == "cpu" else ""
    payload = {"threads": torch.get_num_threads(), "clock": args.clock, "rows": rows}
    write_result(stem, payload, name="distill_step", argv=argv, flags=args)


def _cpu_timed(fn, device: str = "cpu") -> tuple[float, object]:
    """CPU seconds of the calling thread for one ``fn()`` (one torch thread: all the work is on it)."""
    begin = time.thread_time()
    value = fn()
    return time.thread_time() - begin, value


if __name__ == "__main__":
    main()
