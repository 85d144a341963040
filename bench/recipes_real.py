"""The ``real`` setting of ``python -m bench recipes``: a downloaded, fully trained teacher (SPAN x4 by default).

    python -m bench recipes --setting real                         # the full grid (hours on 2 CPU cores)
    python -m bench recipes --setting real --students rlfn32x4 --steps 600 --seeds 0 --recipes scratch pool
    python -m bench recipes --setting real --report                # tables/plots from the runs done so far

Every run trains a student on the bundled training photos; the teacher is a pretrained checkpoint loaded
with ``network_t: {type: AutoTeacher}`` (``--teacher`` for any other file). Recipes that need only the
teacher's image use ``train.teacher_cache`` (the teacher runs once over the training photos); feature pairs
need the live teacher. Each finished run is stored as ``bench/out/real/runs/<name>.json`` and is not run
again: several processes can share a grid (``--shard i/n``), and ``--report`` rebuilds the tables.
Chosen on the bundled validation photos; reported also on ``../shared/benchmarks/Set5`` (x4 LR given,
PSNR/SSIM on Y, border 4): a test set, never used to choose.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path

import yaml

from bench.harness import write_result
from kit.distill.pairs.auto import same_depth  # the product's rule (train.distill.auto)
from kit.options import REPO_ROOT, load_options

OUT = REPO_ROOT / "bench" / "out" / "real"
DEFAULT_TEACHER = REPO_ROOT.parent / "shared" / "teachers" / "spanx4_ch48.safetensors"
DEFAULT_SET5 = REPO_ROOT.parent / "shared" / "benchmarks" / "Set5"
TEACHER_FEATURES = {"conv_cat": 48} | {f"block_{i}": 48 for i in range(1, 7)}  # SPAN x4 ch48 (kit-inspect --checkpoint)
TEACHER_BLOCKS = 6

STUDENTS = {  # name -> network_g overrides of options/distill.yml (RLFNStudent with bicubic residual)
    "rlfn32x4": {"num_feat": 32, "num_block": 4},  # the shipped student, 0.163M
    "rlfn52x6": {"num_feat": 52, "num_block": 6},  # 0.544M
}
BATCH, GT_SIZE, LR = 8, 96, 1e-3

OUTPUT_KD = {"loss": {"type": "L1Loss", "loss_weight": 1.0}}
BALANCE = {"ratio": 0.1, "warmup_iter": 20}
CONTRAST = {"layer": "block_1", "weight": 0.05, "negatives": ["bicubic", "ema"]}
POOL = {"sources": ["hr", "zoom_out"], "max_side": 384, "cache_root": str(OUT / "pool_cache")}


CWD_LOSS = {"type": "ChannelWiseDivergence", "tau": 4.0, "loss_weight": 1.0}
FITNETS_LOSS = {"type": "L2Loss", "normalize": True, "loss_weight": 1.0}


def _pair(student_layer: str, width: int, teacher_layer: str, loss: dict) -> dict:
    return {
        "student": student_layer,
        "teacher": teacher_layer,
        "connector": {
            "type": "ConvConnector",
            "in_channels": width,
            "out_channels": TEACHER_FEATURES[teacher_layer],
            "norm": None,
            "act": None,
        },
        "loss": dict(loss),
    }


def depth_pairs(blocks: int) -> list[tuple[str, str]]:
    """Every student body block paired with the teacher block at the same relative depth; the last with conv_cat."""
    pairs = [(f"body.{i}", f"block_{same_depth(i, blocks, TEACHER_BLOCKS)}") for i in range(blocks - 1)]
    return pairs + [(f"body.{blocks - 1}", "conv_cat")]


def _held_at(base: str, pair: tuple[str, str], ratio: float) -> tuple[str, dict, dict, bool]:
    """``base`` with its pair(s) at weight 100, balanced down to ``ratio`` of the pixel loss (so the ratio binds)."""
    what = f"as {base}, {'the pair' if base == 'cwd' else 'each pair'} at {ratio:.0%} of the pixel loss "
    what += f"(weight 100, balanced down to {ratio:.1f})"
    balance = {"balance": {"ratio": ratio, "warmup_iter": 20}}
    return what, {"output": OUTPUT_KD, base: (*pair, 100.0)}, balance, False


def _cwd_all_pool(what: str, **pool) -> tuple[str, dict, dict, bool]:
    """cwd_all plus the teacher pool (``pool`` overrides POOL): the variants measured on top of cwd_all."""
    return what, {"output": OUTPUT_KD, "cwd_all": ("all", "cwd")}, {"balance": BALANCE, "pool": POOL | pool}, False


# recipe -> (what it is, train.distill, train.recipes, teacher cache?, pixel_opt kept?)
# A pair is (where, teacher layer[, loss weight]): "last"/"mid" = the student's last / middle body block;
# ("all", "cwd" | "fitnets") = one pair per student block (depth_pairs). PairBalance only scales a pair down
# (min(1, ratio · pixel / pair) at step 1): at loss weight 1 a ratio above the pair's own starting share does
# nothing (cwd_r03 and cwd_r1 at weight 1 measured identical), hence weight 100 in those two recipes.
RECIPES: dict[str, tuple[str, dict, dict, bool]] = {
    "scratch": ("the student alone (options/student.yml's loss)", {}, {}, False),
    "scratch_b16": ("the student alone, batch 16 (as many samples per step as the pool recipes)", {}, {}, False),
    "output_kd": ("L1 to GT + L1 to the teacher's image", {"output": OUTPUT_KD}, {}, True),
    "teacher_only": ("L1 to the teacher's image only (no GT)", {}, {"mix": {"start": 0.0, "end": 0.0}}, True),
    "teacher_075": ("L1 to 0.75·teacher + 0.25·GT", {}, {"mix": {"start": 0.25, "end": 0.25}}, True),
    "mix": ("target teacher→GT linearly over training (ECO)", {}, {"mix": {"start": 0.0, "end": 1.0}}, True),
    "mix_rev": ("target GT→teacher linearly over training", {}, {"mix": {"start": 1.0, "end": 0.0}}, True),
    "upcycle": (
        "DUKD upcycling per step (HR crops, zoom-outs, flips; live teacher)",
        {},
        {"upcycle": {"weight": 1.0, "variants": ["hr_crop", "zoom_out"], "flips": True}},
        False,
    ),
    "cwd": (
        "output-KD + CWD last block→conv_cat, balanced (options/distill.yml's recipe before cwd_all)",
        {"output": OUTPUT_KD, "cwd": ("last", "conv_cat")},
        {"balance": BALANCE},
        False,
    ),
    "cwd2": (
        "output-KD + CWD at two depths (mid→block_3, last→conv_cat), balanced",
        {"output": OUTPUT_KD, "cwd_mid": ("mid", "block_3"), "cwd": ("last", "conv_cat")},
        {"balance": BALANCE},
        False,
    ),
    "pool": (
        "output-KD + teacher pool (training HR photos and zoom-outs as inputs, labelled once)",
        {"output": OUTPUT_KD},
        {"pool": POOL},
        True,
    ),
    "pool_teacher": (
        "teacher image as target + teacher pool",
        {},
        {"mix": {"start": 0.0, "end": 0.0}, "pool": POOL},
        True,
    ),
    "pool_cwd": (
        "output-KD + CWD last→conv_cat, balanced + teacher pool",
        {"output": OUTPUT_KD, "cwd": ("last", "conv_cat")},
        {"balance": BALANCE, "pool": POOL},
        False,
    ),
    "cwd_r03": _held_at("cwd", ("last", "conv_cat"), 0.3),
    "cwd_r1": _held_at("cwd", ("last", "conv_cat"), 1.0),
    "cwd_all": (
        "output-KD + CWD at every student block (same relative depth in the teacher; last→conv_cat), balanced",
        {"output": OUTPUT_KD, "cwd_all": ("all", "cwd")},
        {"balance": BALANCE},
        False,
    ),
    "cwd_all_r03": _held_at("cwd_all", ("all", "cwd"), 0.3),
    "cwd_all_r1": _held_at("cwd_all", ("all", "cwd"), 1.0),
    "cwd_all_pool": _cwd_all_pool("cwd_all + teacher pool (training HR photos and zoom-outs as extra inputs)"),
    "cwd_all_pool16": _cwd_all_pool(
        "cwd_all + teacher pool, 16 pool crops per step (twice the GT batch)", batch=2 * BATCH
    ),
    "cwd_all_pool768": _cwd_all_pool(
        "cwd_all + teacher pool, its inputs up to 768 px (HR photos nearly at full size: finer detail)", max_side=768
    ),
    "cwd_all_pool256": _cwd_all_pool(
        "cwd_all + teacher pool, its inputs at most 256 px (HR photos zoomed out ~2x)", max_side=256
    ),
    "fitnets_all": (
        "output-KD + normalised FitNets L2 at every student block (as cwd_all), balanced",
        {"output": OUTPUT_KD, "fit_all": ("all", "fitnets")},
        {"balance": BALANCE},
        False,
    ),
    "cwd_teacher": (
        "CWD last→conv_cat, balanced, the teacher's image as the only pixel target (no GT, no output-KD)",
        {"cwd": ("last", "conv_cat")},
        {"balance": BALANCE, "mix": {"start": 0.0, "end": 0.0}},
        False,
    ),
    "contrast": (
        "output-KD + DCKD-style contrast in the teacher's block_1 space (away from bicubic and the EMA student)",
        {"output": OUTPUT_KD},
        {"contrast": CONTRAST},
        False,
    ),
    "cwd_contrast": (
        "cwd + the contrast term",
        {"output": OUTPUT_KD, "cwd": ("last", "conv_cat")},
        {"balance": BALANCE, "contrast": CONTRAST},
        False,
    ),
    "cwd_mixing": (
        "cwd + MiPKD-style feature mixing on its pair (the teacher's upsampler on the mix)",
        {"output": OUTPUT_KD, "cwd": ("last", "conv_cat")},
        {"balance": BALANCE, "mixing": {"pair": "cwd", "keep": 0.5, "weight": 1.0}},
        False,
    ),
    "cwd_mix": (
        "CWD last→conv_cat, balanced, the pixel target teacher→GT linearly (ECO), no output-KD",
        {"cwd": ("last", "conv_cat")},
        {"balance": BALANCE, "mix": {"start": 0.0, "end": 1.0}},
        False,
    ),
}
BUDGETS = (600, 3000)


def check_teacher(path: Path) -> None:
    """One clear line (and exit code 2) when the teacher checkpoint is missing."""
    if not path.is_file():
        raise SystemExit(
            f"python -m bench recipes --setting real: teacher checkpoint '{path}' does not exist; pass --teacher FILE "
            "(a .pth/.safetensors that spandrel detects, e.g. SPAN's spanx4_ch48.safetensors)"
        )


def run_name(student: str, steps: int, recipe: str, seed: int, lr: float) -> str:
    tag = "" if lr == LR else f"_lr{lr:g}"
    return f"real_{student}_{steps}_{recipe}{tag}_s{seed}"


def run_options(student: str, steps: int, recipe: str, seed: int, teacher: Path, lr: float = LR) -> dict:
    """options/distill.yml with the student, budget, teacher and recipe of one run."""
    opt = load_options(REPO_ROOT / "options/distill.yml")
    for ds in opt["datasets"].values():
        for key in ("dataroot_gt", "dataroot_lq"):
            ds[key] = str(REPO_ROOT / ds[key])
    opt["name"] = run_name(student, steps, recipe, seed, lr)
    opt["manual_seed"] = seed
    opt["network_g"].update(STUDENTS[student])
    opt["datasets"]["train"].update(batch_size_per_gpu=BATCH, gt_size=GT_SIZE)
    opt["train"].update(total_iter=steps)
    opt["train"]["optim_g"]["lr"] = lr
    opt["train"]["scheduler"]["periods"] = [steps]
    opt["val"]["val_freq"] = max(steps // 6, 1)
    opt["logger"].update(print_freq=max(steps // 10, 1), save_checkpoint_freq=10**9)
    _, distill, recipes, cached = copy.deepcopy(RECIPES[recipe])
    opt["train"].pop("distill", None)
    opt["train"].pop("recipes", None)
    opt.pop("network_t", None)
    opt["path"] = {}
    if recipe.startswith("scratch"):
        if recipe == "scratch_b16":
            opt["datasets"]["train"]["batch_size_per_gpu"] = 2 * BATCH
        opt["model_type"] = "KitSRModel"
        return opt
    opt["model_type"] = "DistillModel"
    opt["network_t"] = {"type": "AutoTeacher"}
    opt["path"] = {"pretrain_network_t": str(teacher)}
    width, blocks = STUDENTS[student]["num_feat"], STUDENTS[student]["num_block"]
    for name, entry in list(distill.items()):
        if not isinstance(entry, tuple):
            continue
        where, t_layer, weight = entry if len(entry) == 3 else (*entry, 1.0)
        if where == "all":  # ("all", "cwd" | "fitnets"): one pair per student block
            del distill[name]
            loss = (CWD_LOSS if t_layer == "cwd" else FITNETS_LOSS) | {"loss_weight": weight}
            for i, (s_layer, t_at) in enumerate(depth_pairs(blocks)):
                distill[f"{name}_{i}"] = _pair(s_layer, width, t_at, loss)
            continue
        s_layer = f"body.{blocks - 1}" if where == "last" else f"body.{blocks // 2 - 1}"
        distill[name] = _pair(s_layer, width, t_layer, CWD_LOSS | {"loss_weight": weight})
    opt["train"]["distill"] = distill
    opt["train"]["recipes"] = recipes
    if cached:
        opt["train"]["teacher_cache"] = {"root": str(OUT / "teacher_cache")}
    return opt


# ------------------------------------------------------------------ evaluation
def set5_pairs(set5: Path):
    from kit.evaluation import folder_pairs

    return folder_pairs(set5 / "LR_bicubic" / "X4", set5 / "HR", 4)


def evaluate_checkpoint(opt: dict, checkpoint: str, set5: Path | None) -> dict:
    """Set5 PSNR/SSIM-Y (border 4) of the trained student (EMA weights), or ``{}`` without Set5."""
    if set5 is None or not set5.is_dir():
        return {}
    from kit.evaluation import evaluate
    from kit.runners import student_runner

    res = evaluate({"student": student_runner(opt, checkpoint)}, set5_pairs(set5), 4, crop_border=4)
    return {"set5_psnr": res.means()["student"]["psnr"], "set5_ssim": res.means()["student"]["ssim"]}


def references(teacher: Path, set5: Path | None) -> dict:
    """Teacher and bicubic on the bundled val photos and Set5 (Y, border 4); stored once per teacher."""
    from kit.checkpoint import sha256_file

    path = OUT / f"references-{sha256_file(teacher)[:12]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    from kit.evaluation import EvalSettings, bundled_pairs, evaluate
    from kit.runners import BicubicRunner, TorchRunner
    from kit.teachers import load_teacher

    net = load_teacher({"type": "AutoTeacher"}, str(teacher), scale=4)
    models = {"teacher": TorchRunner(net), "bicubic": BicubicRunner(4)}
    out = {"teacher_file": str(teacher)}
    sets = {"val": bundled_pairs(4)} | ({"set5": set5_pairs(set5)} if set5 is not None and set5.is_dir() else {})
    for label, pairs in sets.items():
        means = evaluate(models, pairs, 4, crop_border=4, settings=EvalSettings(tile=128, tile_overlap=16)).means()
        for model, m in means.items():
            out[f"{model}_{label}_psnr"], out[f"{model}_{label}_ssim"] = m["psnr"], m["ssim"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out


# ----------------------------------------------------------------------- runs
def run_one(student: str, steps: int, recipe: str, seed: int, teacher: Path, set5: Path | None, lr: float) -> dict:
    """Train one run (or read its stored result): val PSNR/SSIM, Set5 PSNR/SSIM, wall time, the curve."""
    from kit.cli.train import parse_args
    from kit.run import run_training
    from kit.run.plots import read_history

    name = run_name(student, steps, recipe, seed, lr)
    result_path = OUT / "runs" / f"{name}.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    opt = run_options(student, steps, recipe, seed, teacher, lr)
    opt_path = OUT / "opts" / f"{name}.yml"
    opt_path.parent.mkdir(parents=True, exist_ok=True)
    opt_path.write_text(yaml.safe_dump(opt, sort_keys=False))
    tic = time.time()
    summary = run_training(parse_args(["-opt", str(opt_path)]), root=OUT, console=False)
    wall = time.time() - tic
    curve = {
        str(rec["iter"]): rec["psnr"]
        for rec in read_history(Path(summary["experiments_root"]) / "history.jsonl")
        if rec.get("kind") == "val" and "psnr" in rec
    }
    result = {
        "name": name,
        "student": student,
        "steps": steps,
        "recipe": recipe,
        "seed": seed,
        "lr": lr,
        "psnr": summary["metrics"]["psnr"],
        "ssim": summary["metrics"]["ssim"],
        "wall_s": round(wall, 1),
        "curve": curve,
    } | evaluate_checkpoint(opt, summary["latest_checkpoint"], set5)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = result_path.with_suffix(".partial")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(result_path)
    return result


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def label(recipe: str, lr: float) -> str:
    return recipe if lr == LR else f"{recipe} (lr {lr:g})"


def table(runs: list[dict], refs: dict, student: str, steps: int) -> tuple[str, dict]:
    """The Markdown table of one student and budget, and its numbers (for the JSON).

    The baseline is the best scratch (over the learning rates tried): tuning only the recipes would not be fair.
    """
    mine = [r for r in runs if r["student"] == student and r["steps"] == steps]
    keys = sorted({(r["recipe"], r["lr"]) for r in mine}, key=lambda k: (list(RECIPES).index(k[0]), k[1]))
    by = {k: sorted((x for x in mine if (x["recipe"], x["lr"]) == k), key=lambda x: x["seed"]) for k in keys}
    scratches = [k for k in keys if k[0] == "scratch"]
    best = max(scratches, key=lambda k: statistics.mean(x["psnr"] for x in by[k])) if scratches else None
    scratch = by[best] if best else []
    base = {x["seed"]: x for x in scratch}
    t_val, t_set5 = refs["teacher_val_psnr"], refs.get("teacher_set5_psnr")
    lines = [
        "| recipe | seeds | val PSNR-Y | Δ vs scratch (± spread) | gap closed | val SSIM-Y | Set5 PSNR-Y | Set5 Δ | "
        "wall / run (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    numbers = {}
    for key, rs in by.items():
        is_base = key == best
        psnr = [x["psnr"] for x in rs]
        deltas = [x["psnr"] - base[x["seed"]]["psnr"] for x in rs if x["seed"] in base]  # paired by seed
        mean = statistics.mean(psnr)
        paired = [base[x["seed"]]["psnr"] for x in rs if x["seed"] in base]  # scratch of the same seeds
        gap = None
        if deltas and not is_base:
            gap = statistics.mean(deltas) / (t_val - statistics.mean(paired))
        set5 = [x["set5_psnr"] for x in rs if "set5_psnr" in x]
        row = {
            "recipe": key[0],
            "lr": key[1],
            "baseline": is_base,
            "seeds": [x["seed"] for x in rs],
            "psnr": mean,
            "psnr_spread": spread(psnr),
            "delta": statistics.mean(deltas) if deltas and not is_base else None,
            "delta_spread": spread(deltas) if deltas and not is_base else None,
            "gap_closed": gap,
            "ssim": statistics.mean(x["ssim"] for x in rs),
            "set5_psnr": statistics.mean(set5) if set5 else None,
            "wall_s": statistics.mean(x["wall_s"] for x in rs),
        }
        numbers[label(*key)] = row
        delta = "" if row["delta"] is None else f"{row['delta']:+.3f} ± {row['delta_spread']:.3f}"
        gap_s = "" if gap is None else f"{100 * gap:.0f}%"
        s5_s = "" if row["set5_psnr"] is None else f"{row['set5_psnr']:.3f}"
        d5 = [x["set5_psnr"] - base[x["seed"]]["set5_psnr"] for x in rs if "set5_psnr" in base.get(x["seed"], {})]
        row["set5_delta"] = statistics.mean(d5) if d5 and not is_base else None
        s5_d = "" if row["set5_delta"] is None else f"{row['set5_delta']:+.3f}"
        name = f"**{label(*key)}** (baseline)" if is_base else label(*key)
        lines.append(
            f"| {name} | {','.join(map(str, row['seeds']))} | {mean:.3f} ± {row['psnr_spread']:.3f} | {delta} | "
            f"{gap_s} | {row['ssim']:.4f} | {s5_s} | {s5_d} | {row['wall_s']:.0f} |"
        )
    t5 = f"{t_set5:.3f}" if t_set5 is not None else "–"
    b5 = f"{refs['bicubic_set5_psnr']:.3f}" if "bicubic_set5_psnr" in refs else "–"
    lines.append(f"| teacher | | {t_val:.3f} | | 100% | {refs['teacher_val_ssim']:.4f} | {t5} | | |")
    lines.append(f"| bicubic | | {refs['bicubic_val_psnr']:.3f} | | | {refs['bicubic_val_ssim']:.4f} | {b5} | | |")
    return "\n".join(lines), numbers


def plot(runs: list[dict], student: str, steps: int, path: Path, refs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    mine = [r for r in runs if r["student"] == student and r["steps"] == steps]
    keys = sorted({(r["recipe"], r["lr"]) for r in mine}, key=lambda k: (list(RECIPES).index(k[0]), k[1]))
    colours = plt.cm.tab20.colors
    for i, key in enumerate(keys):
        rs = [x for x in mine if (x["recipe"], x["lr"]) == key]
        iters = sorted({int(k) for x in rs for k in x["curve"]})
        means = [statistics.mean(x["curve"][str(i)] for x in rs if str(i) in x["curve"]) for i in iters]
        base = key[0] == "scratch"
        ax.plot(
            iters,
            means,
            marker="o",
            markersize=3,
            label=label(*key),
            color="k" if base and key[1] == LR else colours[i % len(colours)],
            linestyle="--" if base else ("-" if i < len(colours) else ":"),
            linewidth=2.0 if base else 1.2,
        )
    teacher = refs["teacher_val_psnr"]  # far above the students: named, not drawn (it would flatten the curves)
    title = f"{student}, {steps} steps (teacher {teacher:.3f} dB, bicubic {refs['bicubic_val_psnr']:.3f} dB)"
    ax.set(xlabel="training step", ylabel="val PSNR-Y (dB), mean over seeds", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def partial_table(runs: list[dict]) -> str:
    """Runs still training (or stopped): their last validation, beside scratch's at the same step and seed."""
    from kit.run.plots import read_history

    done = {r["name"] for r in runs}
    curves = {r["name"]: r["curve"] for r in runs}
    rows = []
    for folder in sorted((OUT / "experiments").glob("real_*")):
        if folder.name in done or not (folder / "history.jsonl").is_file() or "_archived_" in folder.name:
            continue
        vals = [r for r in read_history(folder / "history.jsonl") if r.get("kind") == "val" and "psnr" in r]
        if vals:
            curves[folder.name] = {str(r["iter"]): r["psnr"] for r in vals}
            rows.append(folder.name)
    lines = []
    for name in rows:
        it, psnr = max(((int(k), v) for k, v in curves[name].items()), key=lambda kv: kv[0])
        student, steps, rest = name.split("_", 3)[1], name.split("_", 3)[2], name.split("_", 3)[3]
        recipe, seed = rest.rsplit("_s", 1)
        twin = curves.get(f"real_{student}_{steps}_scratch_s{seed}", {}).get(str(it))
        vs = "" if twin is None or recipe == "scratch" else f"{twin:.3f} | {psnr - twin:+.3f}"
        lines.append(f"| {student} | {steps} | {recipe} | {seed} | {it} | {psnr:.3f} | {vs or ' | '} |")
    if not lines:
        return ""
    head = (
        "### Runs not finished (the last validation of the run's own schedule; scratch at the same step and seed)\n\n"
        "| student | budget | recipe | seed | at step | val PSNR-Y | scratch then | Δ |\n"
        "|---|---:|---|---:|---:|---:|---:|---:|"
    )
    return head + "\n" + "\n".join(lines)


def report(results: Path, teacher: Path, set5: Path | None, argv: list[str] | None = None) -> str:
    """Tables (Markdown, JSON) and plots of every stored run, per student and budget (``argv``: the command's)."""
    refs = references(teacher, set5)
    runs = [json.loads(p.read_text()) for p in sorted((OUT / "runs").glob("*.json"))]
    parts = [
        f"setting `real`: teacher `{teacher.name}` (AutoTeacher), students {', '.join(STUDENTS)} (RLFNStudent, "
        f"bicubic residual); batch {BATCH}, GT patch {GT_SIZE}, Adam lr {LR:g} unless stated, cosine; EMA weights "
        "at the end. "
        "val = bundled validation photos (held out; recipes chosen here), PSNR/SSIM on Y, border 4; Set5 = "
        "../shared/benchmarks/Set5 x4 (given LR), Y, border 4 (test set, never used to choose). ± is half the "
        "range over seeds; Δ is paired by seed (scratch of the same seeds); gap closed = Δ / (teacher − scratch) "
        "on val, the same seeds.",
    ]
    numbers = {"references": refs, "runs": runs, "tables": {}}
    results.mkdir(parents=True, exist_ok=True)
    for student in STUDENTS:
        for steps in sorted({r["steps"] for r in runs if r["student"] == student}):
            text, nums = table(runs, refs, student, steps)
            if not nums:
                continue
            numbers["tables"][f"{student}_{steps}"] = nums
            parts.append(f"### {student}, {steps} steps\n\n{text}\n\n![curves](recipes_real_{student}_{steps}.png)")
            plot(runs, student, steps, results / f"recipes_real_{student}_{steps}.png", refs)
    partial = partial_table(runs)
    if partial:
        parts.append(partial)
    md = "\n\n".join(parts) + "\n"
    (results / "recipes_real.md").write_text(md)
    flags = {"teacher": str(teacher), "set5": str(set5) if set5 else None}
    write_result(str(results / "recipes_real.json"), numbers, name="recipes", argv=argv, flags=flags)
    return md


def main(args, argv: list[str] | None = None) -> dict:
    """The ``real`` setting: the grid of runs (or one shard of it), then the report (``argv``: the command's)."""
    from kit.data import bundled

    teacher = Path(args.teacher).resolve()
    check_teacher(teacher)
    set5 = Path(args.set5) if args.set5 else None
    lr = float(args.lr)
    bundled.build()
    grid = [
        (student, steps, recipe, seed)
        for student in (args.students or list(STUDENTS))
        for steps in (args.steps or list(BUDGETS))
        for recipe in (args.recipes or list(RECIPES))
        for seed in (args.seeds if args.seeds is not None else [0, 1])
    ]
    unknown = sorted({g[2] for g in grid} - set(RECIPES)) + sorted({g[0] for g in grid} - set(STUDENTS))
    if unknown:
        raise SystemExit(f"unknown {unknown}; recipes: {', '.join(RECIPES)}; students: {', '.join(STUDENTS)}")
    if args.shard:
        index, count = (int(v) for v in args.shard.split("/"))
        grid = grid[index::count]
    runs = []
    if not args.report:
        references(teacher, set5)
        start = time.time()
        for i, (student, steps, recipe, seed) in enumerate(grid, 1):
            print(f"[{i}/{len(grid)}] {run_name(student, steps, recipe, seed, lr)} ...", flush=True)
            tic = time.time()
            r = run_one(student, steps, recipe, seed, teacher, set5, lr)
            runs.append(r)
            eta = (time.time() - start) / i * (len(grid) - i)
            set5_s = f", Set5 {r['set5_psnr']:.3f}" if "set5_psnr" in r else ""
            print(
                f"    val {r['psnr']:.3f} dB{set5_s}, {r['wall_s']:.0f} s/run ({time.time() - tic:.0f} s now; "
                f"ETA {eta / 60:.1f} min)",
                flush=True,
            )
    md = report(Path(args.results), teacher, set5, argv)
    print(md)
    return {"runs": runs, "table": md}
