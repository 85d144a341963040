"""Scratch vs distilled: the same student, data, steps and seeds, trained alone and with each recipe.

    python -m bench recipes --setting cpu      # about 31 min on 2 CPU cores
    python -m bench recipes --setting gpu      # the GPU-sized setting (bigger teacher, more steps)
    python -m bench recipes --shipped          # every options/distill*.yml vs its options/student*.yml
    python -m bench recipes --shipped distill.yml   # only that file (the other rows of shipped.json kept)
    python -m bench recipes --setting real     # a pretrained teacher (SPAN x4): see bench/recipes_real.py

Every run trains the student of ``options/distill.yml`` on the bundled training photos and is evaluated on
the held-out validation photos (never used in training): PSNR/SSIM on Y, border = scale, of the EMA
student at the end. The teacher is trained once per setting (or reused) and shared by every recipe.
Writes ``bench/results/recipes_<setting>.{md,json,png}``: the table (mean ± spread over seeds, Δ vs
scratch, wall time per run) and the validation PSNR against the step for every recipe (its points are in the
JSON too, ``curves``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import kit  # noqa: F401

# isort: split
import yaml

from bench import recipes_real
from bench.harness import write_result
from kit.cli.train import parse_args
from kit.data import bundled
from kit.distill.pairs.auto import same_depth
from kit.options import REPO_ROOT, load_options
from kit.run import run_training
from kit.run.plots import read_history

RESULTS = REPO_ROOT / "bench" / "results"
OUT = REPO_ROOT / "bench" / "out"

SETTINGS = {
    # steps, batch, GT patch, validation every, seeds, teacher overrides
    "tiny": {
        "steps": 4,
        "batch": 2,
        "gt_size": 32,
        "val_freq": 2,
        "seeds": [0],
        "teacher_steps": 4,
        "teacher": {"num_feat": 16, "num_block": 2},
        "recipes": ["scratch", "output_kd"],
    },
    "cpu": {
        "steps": 600,
        "batch": 8,
        "gt_size": 96,
        "val_freq": 100,
        "seeds": [0, 1],
        "teacher_steps": None,
        "teacher": {},
        "recipes": None,
    },
    "gpu": {
        "steps": 3000,
        "batch": 16,
        "gt_size": 192,
        "val_freq": 250,
        "seeds": [0, 1, 2],
        "teacher_steps": 6000,
        "teacher": {
            "type": "RRDBNet",
            "num_in_ch": 3,
            "num_out_ch": 3,
            "num_feat": 64,
            "num_block": 12,
            "num_grow_ch": 32,
            "scale": 4,
        },
        "recipes": None,
        "student": {"num_feat": 52, "num_block": 6},
        "amp": "bf16",
    },
}

FITNETS_PAIR = {  # the seed's setup: normalised L2 at weight 1, 1x1 conv + BN + ReLU connector, last body block
    "student": "body.3",
    "teacher": "body.7",
    "connector": {"type": "ConvConnector", "in_channels": 32, "out_channels": 64, "norm": "bn", "act": "relu"},
    "loss": {"type": "L2Loss", "normalize": True, "loss_weight": 1.0},
}
CWD_PAIR = {
    "student": "body.3",
    "teacher": "body.7",
    "connector": {"type": "ConvConnector", "in_channels": 32, "out_channels": 64, "norm": None, "act": None},
    "loss": {"type": "ChannelWiseDivergence", "tau": 4.0, "loss_weight": 1.0},
}
OUTPUT_KD = {"loss": {"type": "L1Loss", "loss_weight": 1.0}}
MIX = {"start": 0.0, "end": 1.0, "schedule": "linear"}
UPCYCLE = {"weight": 1.0, "variants": ["hr_crop", "zoom_out"], "flips": True}
BALANCE = {"ratio": 0.1, "warmup_iter": 20}
LR = 1e-3  # Adam, every setting (options/student.yml's); a recipe may scale it (its 4th field)
POOL = {"sources": ["hr", "zoom_out"], "max_side": 384, "cache_root": str(OUT / "pool_cache")}

# recipe name -> (train.distill, train.recipes, several teachers?[, learning-rate factor])
RECIPES = {
    "scratch": None,
    "output_kd": ({"output": OUTPUT_KD}, {}, False),
    "mix": ({}, {"mix": MIX}, False),
    "upcycle": ({}, {"upcycle": UPCYCLE}, False),
    "multi_teacher": ({"output": OUTPUT_KD}, {}, True),
    "fitnets_seed": ({"output": OUTPUT_KD, "fitnets": FITNETS_PAIR}, {}, False),
    "fitnets_balanced": ({"output": OUTPUT_KD, "fitnets": FITNETS_PAIR}, {"balance": BALANCE}, False),
    "cwd_balanced": ({"output": OUTPUT_KD, "cwd": CWD_PAIR}, {"balance": BALANCE}, False),
    # a CWD pair at every student block, onto the teacher block at the same relative depth (the real setting's best)
    "cwd_all": ({"output": OUTPUT_KD, "cwd_all": CWD_PAIR}, {"balance": BALANCE}, False),
    # cwd_all at twice the learning rate (options/distill.yml's recipe), and with a teacher pool (distill_pretrained's)
    "cwd_all_lr2": ({"output": OUTPUT_KD, "cwd_all": CWD_PAIR}, {"balance": BALANCE}, False, 2.0),
    "cwd_all_pool_lr2": ({"output": OUTPUT_KD, "cwd_all": CWD_PAIR}, {"balance": BALANCE, "pool": POOL}, False, 2.0),
    "mix+upcycle": ({}, {"mix": MIX, "upcycle": UPCYCLE}, False),
    # the same as output_kd / mix, with the teacher's images precomputed by train.teacher_cache
    "output_kd_cached": ({"output": OUTPUT_KD}, {}, False),
    "mix_cached": ({}, {"mix": MIX}, False),
}


def _abs_datasets(opt: dict) -> None:
    for ds in opt["datasets"].values():
        for key in ("dataroot_gt", "dataroot_lq"):
            if ds.get(key):
                ds[key] = str(REPO_ROOT / ds[key]) if not Path(ds[key]).is_absolute() else ds[key]


def teacher_checkpoints(setting: str, cfg: dict, root: Path) -> tuple[dict, list[Path]]:
    """Train (or reuse) the setting's teacher; returns its network options and two snapshots (mid, final).

    Without teacher overrides (the cpu setting) it is the main job's teacher, ``options/teacher.yml`` under
    the repo's ``experiments/``: trained once, shared with ``python train.py -opt options/distill.yml``.
    """
    opt = load_options(REPO_ROOT / "options/teacher.yml")
    shared = not cfg["teacher"] and not cfg["teacher_steps"]
    if not shared:
        _abs_datasets(opt)
        opt["name"] = f"teacher_{setting}"
        if cfg["teacher"].get("type"):
            opt["network_g"] = dict(cfg["teacher"])
        else:
            opt["network_g"].update(cfg["teacher"])
        steps = cfg["teacher_steps"]
        opt["train"]["total_iter"] = steps
        opt["train"]["scheduler"]["periods"] = [steps]
        opt["logger"]["save_checkpoint_freq"] = max(steps // 2, 1)
        opt["val"]["val_freq"] = max(steps // 2, 1)
        if cfg.get("amp"):
            opt["train"]["amp"] = cfg["amp"]
    freq, total = opt["logger"]["save_checkpoint_freq"], opt["train"]["total_iter"]
    mid_iter = max(freq * (total // 2 // freq), freq)
    models = (REPO_ROOT if shared else root) / "experiments" / opt["name"] / "models"
    final, mid = models / "net_g_latest.pth", models / f"net_g_{mid_iter}.pth"
    if not final.is_file():
        print(f"[teacher] training {opt['name']} ({total} iters) ...", flush=True)
        if shared:
            run_training(parse_args(["-opt", str(REPO_ROOT / "options/teacher.yml"), "--auto_resume"]), console=False)
        else:
            path = root / "opts" / "teacher.yml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(opt, sort_keys=False))
            run_training(parse_args(["-opt", str(path)]), root=root, console=False)
    return opt["network_g"], [mid, final]


def run_options(setting: str, cfg: dict, recipe: str, seed: int, teacher_net: dict, snapshots: list[Path]) -> dict:
    """The options of one run: options/distill.yml with the setting's size and the recipe's distill part."""
    opt = load_options(REPO_ROOT / "options/distill.yml")
    _abs_datasets(opt)
    opt["name"] = f"{setting}_{recipe.replace('+', '_')}_s{seed}"  # a plain name (kit.options.check_name)
    opt["manual_seed"] = seed
    opt["network_g"].update(cfg.get("student", {}))
    train_ds = opt["datasets"]["train"]
    train_ds.update(batch_size_per_gpu=cfg["batch"], gt_size=cfg["gt_size"])
    opt["train"].update(total_iter=cfg["steps"])
    opt["train"]["scheduler"]["periods"] = [cfg["steps"]]
    opt["val"]["val_freq"] = cfg["val_freq"]
    opt["logger"].update(print_freq=max(cfg["steps"] // 10, 1), save_checkpoint_freq=10**9)
    if cfg.get("amp"):
        opt["train"]["amp"] = cfg["amp"]
    opt["path"] = {}
    spec = RECIPES[recipe]
    factor = spec[3] if spec is not None and len(spec) > 3 else 1.0
    opt["train"]["optim_g"]["lr"] = LR * factor  # the benchmark's lr, not the shipped file's: scratch alike
    opt.pop("network_t", None)
    opt["train"].pop("distill", None)
    opt["train"].pop("recipes", None)
    if spec is None:
        opt["model_type"] = "KitSRModel"
        return opt
    distill, recipes, several = copy.deepcopy(spec[:3])
    opt["model_type"] = "DistillModel"
    width = int(opt["network_g"].get("num_feat", 32))
    t_width = int(teacher_net.get("num_feat", 64))
    blocks, t_blocks = int(opt["network_g"].get("num_block", 4)), int(teacher_net.get("num_block", 8))
    for entry in distill.values():
        if "connector" in entry:
            entry["connector"].update(in_channels=width, out_channels=t_width)
            entry["student"] = f"body.{blocks - 1}"
            entry["teacher"] = _teacher_last_block(teacher_net)
    if "cwd_all" in distill:  # body.i -> the teacher's block at the same relative depth (the last onto its last)
        template = distill.pop("cwd_all")
        for i in range(blocks):
            at = f"body.{same_depth(i, blocks, t_blocks) - 1}"
            distill[f"cwd_{i}"] = copy.deepcopy(template) | {"student": f"body.{i}", "teacher": at}
    opt["train"]["distill"] = distill
    opt["train"]["recipes"] = recipes
    if recipe.endswith("_cached"):
        opt["train"]["teacher_cache"] = {"root": str(OUT / "teacher_cache")}
    if several:
        opt["teachers"] = {
            "mid": {"network": teacher_net, "checkpoint": str(snapshots[0]), "weight": 1.0},
            "final": {"network": teacher_net, "checkpoint": str(snapshots[1]), "weight": 1.0},
        }
    else:
        opt["network_t"] = teacher_net
        opt["path"] = {"pretrain_network_t": str(snapshots[1])}
    return opt


def _teacher_last_block(teacher_net: dict) -> str:
    return f"body.{int(teacher_net.get('num_block', 8)) - 1}"


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def plot(curves: dict[str, dict[int, list[float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.cm.tab20.colors  # 20 distinct colours; past 20 the line style changes, so no two lines look alike
    for i, (recipe, by_step) in enumerate(curves.items()):
        steps = sorted(by_step)
        means = [statistics.mean(by_step[s]) for s in steps]
        scratch = recipe == "scratch"
        style = "--" if scratch else ("-" if i < len(colours) else ":")
        colour = "k" if scratch else colours[i % len(colours)]
        ax.plot(steps, means, marker="o", label=recipe, linestyle=style, color=colour)
    ax.set(xlabel="training step", ylabel="val PSNR-Y (dB), mean over seeds", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench recipes", description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=[*sorted(SETTINGS), "real"], default="cpu")
    parser.add_argument("--recipes", nargs="*", help=f"subset of: {', '.join(RECIPES)}")
    parser.add_argument("--seeds", nargs="*", type=int, help="override the setting's seeds")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the table, JSON and plot")
    parser.add_argument(
        "--shipped",
        nargs="*",
        metavar="FILE",
        help="compare every shipped distill file with its twin (or only the files named, e.g. distill.yml)",
    )
    real = parser.add_argument_group("--setting real (a pretrained teacher; bench/recipes_real.py)")
    real.add_argument("--teacher", default=str(recipes_real.DEFAULT_TEACHER), help="teacher checkpoint (AutoTeacher)")
    real.add_argument("--set5", default=str(recipes_real.DEFAULT_SET5), help="Set5 folder (HR, LR_bicubic/X4)")
    real.add_argument("--students", nargs="*", help=f"subset of: {', '.join(recipes_real.STUDENTS)}")
    real.add_argument("--steps", nargs="*", type=int, help=f"budgets (default {recipes_real.BUDGETS})")
    real.add_argument("--lr", type=float, default=recipes_real.LR, help="Adam learning rate of these runs")
    real.add_argument("--shard", help="i/n: run every n-th run of the grid from the i-th (parallel processes)")
    real.add_argument("--report", action="store_true", help="only rebuild the tables from the stored runs")
    args = parser.parse_args(argv)
    if args.setting == "real":
        return recipes_real.main(args, argv)
    if args.shipped is not None:
        bundled.build()
        seeds = args.seeds if args.seeds is not None else [0, 1]
        return {"table": shipped(seeds, Path(args.results), args.shipped, argv=argv)}
    cfg = SETTINGS[args.setting]
    recipes = args.recipes or cfg["recipes"] or list(RECIPES)
    seeds = args.seeds if args.seeds is not None else cfg["seeds"]
    root = OUT / args.setting
    bundled.build()
    start = time.time()
    teacher_net, snapshots = teacher_checkpoints(args.setting, cfg, root)
    teacher_seconds = time.time() - start

    runs, curves = [], {}
    for recipe in recipes:
        for seed in seeds:
            opt = run_options(args.setting, cfg, recipe, seed, teacher_net, snapshots)
            path = root / "opts" / f"{opt['name']}.yml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(opt, sort_keys=False))
            print(f"[{len(runs) + 1}/{len(recipes) * len(seeds)}] {recipe} seed {seed} ...", flush=True)
            tic = time.time()
            summary = run_training(parse_args(["-opt", str(path)]), root=root, console=False)
            wall = time.time() - tic
            runs.append(
                {
                    "recipe": recipe,
                    "seed": seed,
                    "psnr": summary["metrics"]["psnr"],
                    "ssim": summary["metrics"]["ssim"],
                    "wall_s": wall,
                }
            )
            for rec in read_history(Path(summary["experiments_root"]) / "history.jsonl"):
                if rec.get("kind") == "val" and "psnr" in rec:
                    curves.setdefault(recipe, {}).setdefault(rec["iter"], []).append(rec["psnr"])
            done, total_runs = len(runs), len(recipes) * len(seeds)
            eta = (time.time() - start - teacher_seconds) / done * (total_runs - done)
            print(
                f"    PSNR {runs[-1]['psnr']:.3f} dB, SSIM {runs[-1]['ssim']:.4f}, {wall:.0f} s "
                f"(ETA {eta / 60:.1f} min for the {total_runs - done} runs left)",
                flush=True,
            )

    table = summarize(runs, recipes)
    total = time.time() - start
    header = (
        f"setting `{args.setting}`: {cfg['steps']} steps, batch {cfg['batch']}, GT patch {cfg['gt_size']}, "
        f"seeds {seeds}; student {load_options(REPO_ROOT / 'options/distill.yml')['network_g']['type']}; "
        f"teacher {teacher_net.get('type')} (trained {teacher_seconds:.0f} s or reused); "
        f"eval: bundled val photos (held out), PSNR/SSIM on Y, border 4; total {total / 60:.1f} min"
    )
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"recipes_{args.setting}.md").write_text(header + "\n\n" + table + "\n")
    record = {"header": header, "runs": runs, "curves": curves}
    write_result(str(out / f"recipes_{args.setting}.json"), record, name="recipes", argv=argv, flags=args)
    plot(curves, out / f"recipes_{args.setting}.png", f"validation PSNR vs step ({args.setting} setting)")
    print(header)
    print(table)
    return {"runs": runs, "table": table}


def shipped(seeds: list[int], results: Path, only: list[str] | None = None, argv: list[str] | None = None) -> str:
    """Each shipped distillation file against its scratch twin, as shipped (steps, data, metrics), same seeds.

    ``only`` (file names, e.g. ``distill.yml``) re-measures those files and keeps the other rows of an earlier
    ``shipped.json`` in ``results``: one changed file costs its own runs, not the whole table. ``argv``: the
    command's arguments, recorded in the JSON.
    """
    files = sorted((REPO_ROOT / "options").glob("distill*.yml"))
    if only:
        unknown = sorted(set(only) - {f.name for f in files})
        if unknown:
            raise SystemExit(f"--shipped {unknown}: not shipped; choose from {', '.join(f.name for f in files)}")
        files = [f for f in files if f.name in only]
    store = results / "shipped.json"
    rows: dict[str, dict] = {}
    if only and store.is_file():
        rows = json.loads(store.read_text()).get("rows", {})
    for distill in files:
        stem = "" if distill.stem == "distill_pretrained" else distill.stem[len("distill") :]  # same student
        twin = distill.with_name(f"student{stem}.yml")
        opt = load_options(distill)
        teacher = REPO_ROOT / str((opt.get("path") or {}).get("pretrain_network_t") or "")
        if (opt.get("network_t") or {}).get("type") == "AutoTeacher" and not teacher.is_file():
            print(f"[shipped] {distill.name} skipped: its downloaded teacher '{teacher}' is not there", flush=True)
            continue
        psnr_spec = opt["val"]["metrics"]["psnr"]
        metric = f"PSNR-{'Y' if psnr_spec.get('test_y_channel') else 'RGB'}, border {psnr_spec['crop_border']}"
        scores: dict[str, list[float]] = {"scratch": [], "distill": []}
        walls: list[float] = []
        for label, path in (("scratch", twin), ("distill", distill)):
            for seed in seeds:
                print(f"[shipped] {path.name} seed {seed} ...", flush=True)
                tic = time.time()
                argv = ["-opt", str(path), "--force_yml", f"name=bench_{path.stem}_s{seed}", f"manual_seed={seed}"]
                summary = run_training(parse_args(argv), console=False)
                walls.append(time.time() - tic)
                scores[label].append(summary["metrics"]["psnr"])
                print(f"    {summary['metrics']['psnr']:.3f} dB", flush=True)
        task = f"x{opt['scale']} SR" if int(opt["scale"]) > 1 else "denoise" if "noise" in distill.stem else "same-size"
        rows[distill.name] = {
            "twin": twin.name,
            "task": task,
            "metric": metric,
            "seeds": list(seeds),
            "scratch": scores["scratch"],
            "distill": scores["distill"],
            "wall_s": statistics.mean(walls),
        }
    lines = [
        "| options file | task | metric | seeds | scratch (student*.yml) | distilled | Δ | wall / run (s) |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for name, row in sorted(rows.items()):
        sc, di = statistics.mean(row["scratch"]), statistics.mean(row["distill"])
        lines.append(
            f"| `{name}` | {row['task']} | {row['metric']} | {','.join(map(str, row['seeds']))} | "
            f"{sc:.3f} ± {spread(row['scratch']):.3f} | {di:.3f} ± {spread(row['distill']):.3f} | {di - sc:+.3f} | "
            f"{row['wall_s']:.0f} |"
        )
    table = "\n".join(lines)
    results.mkdir(parents=True, exist_ok=True)
    (results / "shipped.md").write_text(f"each file as shipped (its steps, data and metric)\n\n{table}\n")
    flags = {"seeds": list(seeds), "only": only}
    write_result(str(store), {"rows": rows}, name="recipes", argv=argv or ["--shipped", *(only or [])], flags=flags)
    print(table)
    return table


def summarize(runs: list[dict], recipes: list[str]) -> str:
    """Markdown table: mean ± spread (half the range over seeds), Δ vs scratch, mean wall time."""
    by = {r: [x for x in runs if x["recipe"] == r] for r in recipes}
    base = statistics.mean(x["psnr"] for x in by["scratch"]) if by.get("scratch") else None
    lines = ["| recipe | PSNR-Y (dB) | Δ vs scratch | SSIM-Y | wall / run (s) |", "|---|---:|---:|---:|---:|"]
    for recipe, rs in by.items():
        if not rs:
            continue
        psnrs, ssims = [x["psnr"] for x in rs], [x["ssim"] for x in rs]
        delta = "" if base is None or recipe == "scratch" else f"{statistics.mean(psnrs) - base:+.3f}"
        lines.append(
            f"| {recipe} | {statistics.mean(psnrs):.3f} ± {spread(psnrs):.3f} | {delta} | "
            f"{statistics.mean(ssims):.4f} ± {spread(ssims):.4f} | {statistics.mean(x['wall_s'] for x in rs):.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
