"""``train.compile``: compile time, step time compiled ÷ eager and the losses of both, side by side in one run.

    python -m bench compile [--iters 10] [--batch 8] [--lr-size 24] [--device cpu|cuda] [--amp bf16]
                            [--mode default] [--repeat 1]

For the shipped student alone (``KitSRModel``, as ``options/student.yml``) and the shipped distillation step
(``DistillModel``, ``options/distill.yml``: teacher forward, student forward/backward, CWD pair, every loss,
optimizer, EMA), an eager and a compiled model start from the same weights (the teacher's random: speed does
not depend on them) and take the same batches. The first compiled step's extra time over the eager one is the
compile time; then both are timed interleaved (round-robin, so machine noise hits them alike) and the median
of each gives the ratio. The losses of the first steps are compared: the maximum relative difference is
printed (fp32 inductor kernels reorder sums, so they agree to float rounding, not bit for bit).
``--repeat N`` repeats the timed part N times on the same models and prints every ratio (the spread); two
untimed rounds come first. Inductor's caches go to a fresh folder unless ``--warm-cache``: the compile time is
then that of a first run on a machine (a later run with the same networks reads the cached kernels).
Writes ``bench/results/compile_<device>[_<amp>].json``.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import os
import shutil
import statistics
import tempfile

import kit  # noqa: F401

# isort: split
import torch
from basicsr.models import build_model

from bench.harness import median_ms, seed_everything, timed, write_result
from kit.options import REPO_ROOT, finalize, load_options


def _model(opt: dict, device: str):
    opt = finalize(copy.deepcopy(opt), is_train=True, root=REPO_ROOT / "bench" / "out")
    opt.update(dist=False, rank=0, world_size=1, num_gpu=1 if device == "cuda" else 0)
    return build_model(opt)


def _step(model, it: int, device: str) -> tuple[float, float]:
    """One optimize_parameters; returns (seconds, l_total)."""
    seconds, _ = timed(lambda: model.optimize_parameters(it), device)
    return seconds, float(model.log_dict["l_total"])


def copy_weights(src, dst) -> None:
    """Every network of ``src`` into ``dst`` (student, EMA, teachers, connectors): the same starting point."""
    dst.net_g.load_state_dict(src.net_g.state_dict())
    if hasattr(src, "net_g_ema"):
        dst.net_g_ema.load_state_dict(src.net_g_ema.state_dict())
    for name, teacher in getattr(src, "teachers", {}).items():
        dst.teachers[name].load_state_dict(teacher.state_dict())
    if hasattr(src, "connectors"):
        dst.connectors.load_state_dict(src.connectors.state_dict())


def _summary(label: str, compile_s: float, diff: float, ratios: list[tuple[float, dict]]) -> dict:
    """One row of the JSON: the ratio's median (min-max) over the repeats, and every repeat."""
    values = [r for r, _ in ratios]
    return {
        "step": label,
        "compile_s": compile_s,
        "max_rel_loss_diff": diff,
        "ratio_median": statistics.median(values),
        "ratio_min": min(values),
        "ratio_max": max(values),
        "repeats": [{"ratio": r, "eager_ms": m["eager"], "compiled_ms": m["compiled"]} for r, m in ratios],
    }


def options_pair(base: dict, mode: str) -> tuple[dict, dict]:
    eager_opt = copy.deepcopy(base)
    eager_opt["train"]["compile"] = False
    compiled_opt = copy.deepcopy(base)
    compiled_opt["train"].update(compile=True, compile_mode=mode)
    return eager_opt, compiled_opt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench compile", description=__doc__.splitlines()[0])
    parser.add_argument("-opt", default=str(REPO_ROOT / "options/distill.yml"))
    parser.add_argument("--iters", type=int, default=10, help="timed steps of each model per repeat")
    parser.add_argument("--check-steps", type=int, default=3, help="first steps whose losses are compared")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr-size", type=int, default=24)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["bf16", "fp16"], help="train.amp of every model (default: off, fp32)")
    parser.add_argument("--mode", default="default", help="train.compile_mode")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", choices=["student", "distill"], help="one setting only")
    parser.add_argument("--warm-cache", action="store_true", help="use the machine's inductor cache (default: fresh)")
    args = parser.parse_args(argv)
    if not args.warm_cache:
        cache = tempfile.mkdtemp(prefix="bench_compile_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
    base = load_options(args.opt)
    base["train"]["amp"] = args.amp
    base["path"] = {"pretrain_network_t": None}
    scale = int(base["scale"])
    seed_everything(0)
    batches = [
        {
            "lq": torch.rand(args.batch, 3, args.lr_size, args.lr_size),
            "gt": torch.rand(args.batch, 3, args.lr_size * scale, args.lr_size * scale),
        }
        for _ in range(args.check_steps)
    ]
    student_opt = copy.deepcopy(base)
    student_opt["model_type"] = "KitSRModel"
    for key in ("network_t",):
        student_opt.pop(key, None)
    for key in ("distill", "recipes"):
        student_opt["train"].pop(key, None)
    settings = {"student step (KitSRModel)": student_opt, "distillation step (DistillModel, shipped)": base}
    if args.only:
        settings = {k: v for k, v in settings.items() if k.startswith(args.only)}

    print(
        f"device {args.device}, amp {args.amp or 'off'}, compile_mode {args.mode}, batch {args.batch}x3x"
        f"{args.lr_size}x{args.lr_size}, x{scale}, {args.iters} timed steps each (median), "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, inductor cache "
        f"{'of the machine' if args.warm_cache else 'fresh (first-run compile time)'}"
    )
    rows = []
    for label, opt in settings.items():
        eager_opt, compiled_opt = options_pair(opt, args.mode)
        eager_model = _model(eager_opt, args.device)
        compiled_model = _model(compiled_opt, args.device)
        copy_weights(eager_model, compiled_model)
        # Same batches, same weights: the losses of the first steps (compiled step 1 includes the compile).
        first, diffs, it = {}, [], 0
        for batch in batches:
            it += 1
            eager_model.feed_data(batch)
            compiled_model.feed_data(batch)
            t_e, loss_e = _step(eager_model, it, args.device)
            t_c, loss_c = _step(compiled_model, it, args.device)
            first.setdefault("eager", t_e)
            first.setdefault("compiled", t_c)
            diffs.append(abs(loss_c - loss_e) / max(abs(loss_e), 1e-12))
        compile_s = first["compiled"] - first["eager"]
        for _ in range(2):  # untimed rounds
            it += 1
            _step(eager_model, it, args.device)
            _step(compiled_model, it, args.device)
        ratios = []
        for _ in range(args.repeat):
            times = {"eager": [], "compiled": []}
            for _ in range(args.iters):
                it += 1
                times["eager"].append(_step(eager_model, it, args.device)[0])
                times["compiled"].append(_step(compiled_model, it, args.device)[0])
            med = {k: median_ms(v) for k, v in times.items()}
            ratios.append((med["compiled"] / med["eager"], med))
        rows.append((label, compile_s, max(diffs), ratios))

    print(
        "| step | compile s (1st step, over eager) | max rel. loss diff, first steps | eager ms | compiled ms "
        "| compiled ÷ eager |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, compile_s, diff, ratios in rows:
        for ratio, med in ratios:
            print(
                f"| {label} | {compile_s:.1f} | {diff:.1e} | {med['eager']:.1f} | {med['compiled']:.1f} | {ratio:.3f} |"
            )
        if len(ratios) > 1:
            values = [r for r, _ in ratios]
            print(
                f"| {label}: ratio over {len(values)} repeats | | | | | {min(values):.3f}–{max(values):.3f} "
                f"(median {statistics.median(values):.3f}) |"
            )
    run = {"label": f"{args.repeat} repeats of {args.iters} steps", "rows": [_summary(*row) for row in rows]}
    record = {"threads": torch.get_num_threads(), "torch": torch.__version__, "runs": [run]}
    stem = f"compile_{args.device}" + (f"_{args.amp}" if args.amp else "")
    write_result(stem, record, name="compile", argv=argv, flags=args)


if __name__ == "__main__":
    main()
