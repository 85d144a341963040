"""Issue #24's controls: a student pruned from the official SPAN x4 ch48, against scratch, with and without a teacher.

    python -m bench prune                        # prune, the references, the grid (4 arms x 2 seeds), the report
    python -m bench prune --pruned-lr 5e-5 --arms pruned_gt pruned_kd   # the pruned arms at another lr, beside
    python -m bench prune --steps 600            # a larger budget (its runs are kept apart by the step count)
    python -m bench prune --report               # only the report, from the runs stored so far
    python -m bench prune --export               # + export.py's gates on pruned_kd seed 0 (ONNX, NTIRE, INT8)

One resumable command. ``kit-prune`` cuts the teacher to ``SPANStudent(num_feat=28)`` (the NTIRE 2026 ESR
baseline's size) once, calibrated on the training photos; then four arms train at equal steps, batch, crops,
data and seeds: ``scratch`` (random start, GT L1), ``pruned_gt`` (the pruned start, GT L1: the fair control
for a distillation claim), ``pruned_kd`` (the pruned start, GT L1 + L1 to the unpruned teacher's image,
``options/distill_pruned_span.yml``'s recipe) and ``scratch_kd`` (random start, the same distillation). The
teacher's images come from ``train.teacher_cache`` (the teacher runs once over the training photos).
``--arms`` also names the other recipes tried from the pruned start (:data:`ARMS`: the teacher's image alone, MSE,
the teacher pool, CWD pairs + pool), and ``--calib-crops`` / ``--ridge`` another pruned start (runs named apart).

Training data: ``--data`` (``../shared/datasets/SunHays80``: ``HR`` + ``LR_bicubic/X4``). Validation (the
curves; nothing here is chosen on a test set): the bundled val photos. Test sets: Set5, Set14, BSD68 of
``--benchmarks``, PSNR/SSIM on Y border 4 (the issue's goal) and RGB border 4 (as NTIRE), EMA weights at the end.
The NTIRE 2026 baseline (``--baseline``, the organisers' released weights, loaded strictly into
``SPANStudent(num_feat=28, deploy=True)``), the teacher, bicubic and the pruned start before training are measured
in the same command. Each finished run is stored as ``bench/out/prune/runs/<name>.json`` and not run again; a run
cut short resumes from its last checkpoint (``--auto_resume``). Writes ``bench/results/prune.json`` and
``prune_curves.png``; ``python -m bench render`` puts the table into docs/pruning.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

from bench.harness import RESULTS, ROOT, write_result

OUT = ROOT / "bench" / "out" / "prune"
SHARED = ROOT.parent / "shared"
DEFAULT_TEACHER = SHARED / "teachers" / "spanx4_ch48.safetensors"
DEFAULT_DATA = SHARED / "datasets" / "SunHays80"
DEFAULT_BENCHMARKS = SHARED / "benchmarks"
DEFAULT_BASELINE = SHARED / "references" / "ntire2026_esr" / "model_zoo" / "team00_SPAN.pth"
TEST_SETS = ("Set5", "Set14", "BSD68")
GOAL = {"Set5": 31.739, "Set14": 28.401, "BSD68": 27.641}  # the NTIRE 2026 baseline, measured (issue #24)
WIDTH, SCALE = 28, 4
MAX_PARAMS = 150_688  # the NTIRE 2026 baseline's

# arm -> (start, distil from the teacher?, what it is)
ARMS = {
    "scratch": ("scratch", False, "random start, GT L1"),
    "pruned_gt": ("pruned", False, "pruned start, GT L1 only (the control for a distillation claim)"),
    "pruned_kd": ("pruned", True, "pruned start, GT L1 + L1 to the teacher's image (distill_pruned_span.yml)"),
    "scratch_kd": ("scratch", True, "random start, GT L1 + L1 to the teacher's image"),
    # what else was tried from the pruned start at the budget (one seed each, then a second for the best)
    "pruned_teacher": ("pruned", "teacher", "pruned start, L1 to the teacher's image only (no GT term)"),
    "pruned_kd_l2": ("pruned", "l2", "pruned start, GT MSE + MSE to the teacher's image (PSNR's own loss)"),
    "pruned_pool": (
        "pruned",
        "pool",
        "pruned start, pruned_kd on 8 GT crops + 8 teacher-pool crops a step (training HR photos and zoom-outs)",
    ),
    "pruned_cwd_pool": (
        "pruned",
        "cwd_pool",
        "pruned start, pruned_kd + CWD at every block + the teacher pool (8 + 8 crops; distill_pretrained.yml's)",
    ),
    "pruned_fade": (
        "pruned",
        "fade",
        "the teacher trained at 48 channels with the fade recipe (--fade-steps of the budget), kit-prune to 28, "
        "then pruned_kd for the rest",
    ),
}
CONTROLS = ("scratch", "pruned_gt", "pruned_kd", "scratch_kd")  # the four arms: the default grid
LR = {"scratch": 1e-3, "pruned": 2e-4}  # the first grid's learning rates: run names omit them (other lrs are named)


# ------------------------------------------------------------------ the start
# kit-prune's calibration crops, refit ridge and channel criterion (its defaults): the first start
START = {"crops": 48, "ridge": 0.1, "importance": "energy"}


def start_tag(crops: int, ridge: float, importance: str = START["importance"]) -> str:
    """What names a pruned start other than kit-prune's defaults (files, run names, references)."""
    tag = "" if (crops, ridge) == (START["crops"], START["ridge"]) else f"_c{crops}_r{ridge:g}"
    return tag + ("" if importance == START["importance"] else f"_{importance}")


def data_tag(data: Path) -> str:
    """What names runs and starts on training photos other than ``--data``'s default (SunHays80)."""
    return "" if data.name == DEFAULT_DATA.name else f"_{data.name}"


def photo_subset(data: Path, count: int) -> Path:
    """``count`` of ``data``'s photos, evenly spread over its sorted names, as a folder of links (HR and LR alike):
    the training photos of ``--photos``."""
    names = sorted(p.name for p in (data / "HR").iterdir() if p.is_file())
    if not 0 < count <= len(names):
        raise SystemExit(f"python -m bench prune: --photos {count} must be between 1 and {len(names)} ({data})")
    chosen = [names[(i * len(names)) // count] for i in range(count)]
    subset = OUT / "data" / f"{data.name}-{count}"
    for part, named in (("HR", "{}{}"), ("LR_bicubic/X4", "{}x4{}")):  # the LR names: filename_tmpl "{}x4"
        folder = subset / part
        folder.mkdir(parents=True, exist_ok=True)
        for name in chosen:
            source = data / part / named.format(Path(name).stem, Path(name).suffix)
            link = folder / source.name
            if not source.is_file():
                raise SystemExit(f"python -m bench prune: '{source}' does not exist (the LR of {name})")
            if not link.is_symlink():
                link.symlink_to(source.resolve())
    return subset


def args_start(args: argparse.Namespace) -> dict:
    """The pruned start this command's flags name (``--calib-crops``, ``--ridge``, ``--importance``)."""
    return {"crops": args.calib_crops, "ridge": args.ridge, "importance": args.importance}


def prune_28(state: dict, data: Path, crops: int, ridge: float, importance: str):
    """``kit-prune --width 28 --crops C --ridge R --importance I`` of the weights ``state``, calibrated on ``data``'s
    photos (the :class:`~kit.prune.PruneResult`)."""
    from kit.prune import PruneSettings, PruneTarget, prune_teacher
    from kit.prune.calibration import calibration_pairs

    inputs, hr = calibration_pairs(data / "HR", SCALE, crops, 48, 0)
    settings = PruneSettings(PruneTarget(width=WIDTH, input_size=(256, 256)), importance=importance, ridge=ridge)
    return prune_teacher("SPANStudent", state, inputs, settings, targets=hr)


def train_run(opt: dict) -> tuple[dict, Path, float]:
    """Write ``opt`` under ``opts/`` and train it (resuming a run cut short): the summary, the options file, seconds."""
    import yaml

    from kit.cli.train import parse_args
    from kit.run import run_training

    opt_path = OUT / "opts" / f"{opt['name']}.yml"
    opt_path.parent.mkdir(parents=True, exist_ok=True)
    opt_path.write_text(yaml.safe_dump(opt, sort_keys=False))
    tic = time.time()
    summary = run_training(parse_args(["-opt", str(opt_path), "--auto_resume"]), root=OUT, console=False)
    return summary, opt_path, time.time() - tic


def prune_start(
    teacher: Path,
    data: Path,
    crops: int = START["crops"],
    ridge: float = START["ridge"],
    importance: str = START["importance"],
) -> dict:
    """``kit-prune --width 28 --crops C --ridge R --importance I`` of the teacher, calibrated on the training photos
    (stored once)."""
    tag = start_tag(crops, ridge, importance) + data_tag(data)
    record_path = OUT / f"pruned{tag}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    from kit.checkpoint import extract_state_dict, load_checkpoint, save_atomic

    tic = time.time()
    result = prune_28(extract_state_dict(load_checkpoint(teacher)), data, crops, ridge, importance)
    checkpoint = OUT / f"span28_pruned{tag}.safetensors"
    save_atomic(result.state, checkpoint)
    record = {
        "checkpoint": str(checkpoint),
        "network_g": {"type": result.family, **result.arguments},
        "params": result.params,
        "gmacs": result.gmacs,
        "max_difference": result.max_difference,
        "seconds": round(time.time() - tic, 1),
        "calibration": {"crops": crops, "ridge": ridge, "importance": importance},
    }
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1))
    return record


def deployed_start(pruned: dict) -> str:
    """The pruned start in its deployed form (``kit-prune --form deployed``), derived once from the trainable one."""
    trainable = Path(pruned["checkpoint"])
    path = trainable.with_name(f"{trainable.stem}_deployed.safetensors")
    if not path.is_file():
        from kit.archs import SPANStudent
        from kit.checkpoint import load_checkpoint, save_atomic

        net = SPANStudent(num_feat=WIDTH)
        net.load_state_dict(load_checkpoint(pruned["checkpoint"]), strict=True)
        save_atomic({k: v.detach().clone() for k, v in net.fuse().state_dict().items()}, path)
    return str(path)


def step_seconds(batch: int, lq: int, runs: int = 5) -> dict:
    """One training step (forward, L1, backward, Adam) of the student in each form: median seconds, side by side."""
    import torch

    from bench.harness import median_time
    from kit.archs import SPANStudent

    out = {}
    for form in ("trainable", "deployed"):
        torch.manual_seed(0)
        net = SPANStudent(num_feat=WIDTH, deploy=form == "deployed").train()
        optimizer = torch.optim.Adam(net.parameters(), 1e-4)
        x, y = torch.rand(batch, 3, lq, lq), torch.rand(batch, 3, SCALE * lq, SCALE * lq)

        def step(net=net, optimizer=optimizer, x=x, y=y) -> None:
            optimizer.zero_grad()
            (net(x) - y).abs().mean().backward()
            optimizer.step()

        out[form] = median_time(step, runs, warmup=2)
    out["ratio"] = out["trainable"] / out["deployed"]
    return out


# ------------------------------------------------------------------ evaluation
def test_scores(runner, benchmarks: Path) -> dict:
    """``{set: {psnr_y, ssim_y, psnr_rgb, ssim_rgb}}`` on Set5/Set14/BSD68 (x4 LR given, border 4)."""
    from kit.evaluation import evaluate, folder_pairs

    out = {}
    for name in TEST_SETS:
        pairs = folder_pairs(benchmarks / name / "LR_bicubic" / "X4", benchmarks / name / "HR", SCALE)
        row = {}
        for tag, y in (("y", True), ("rgb", False)):
            m = evaluate({"m": runner}, pairs, SCALE, y_channel=y, crop_border=4).means()["m"]
            row[f"psnr_{tag}"], row[f"ssim_{tag}"] = m["psnr"], m["ssim"]
        out[name] = row
    return out


def val_score(runner) -> float:
    """PSNR-Y (border 4) on the bundled validation photos."""
    from kit.evaluation import bundled_pairs, evaluate

    return evaluate({"m": runner}, bundled_pairs(SCALE), SCALE, crop_border=4).means()["m"]["psnr"]


def size(net) -> dict:
    """Deployed parameters and fvcore GMACs at 1x3x256x256 (NTIRE's counts)."""
    from kit.archs import deploy_network
    from kit.export.budget import measure_budget

    budget = measure_budget(deploy_network(copy.deepcopy(net)).eval(), (1, 3, 256, 256))
    return {"params": int(budget.params), "gmacs": float(budget.gmacs)}


def _model(name: str, args: argparse.Namespace, pruned: dict):
    """The network of a reference row, in eval mode."""
    from kit.archs import SPANStudent
    from kit.checkpoint import extract_state_dict, load_checkpoint
    from kit.prune.families import get_family
    from kit.prune.procedure import teacher_arguments

    if name == "teacher":  # as a deployed SPANStudent(num_feat=48): its deployed size, the same function
        state = extract_state_dict(load_checkpoint(args.teacher))
        return get_family("SPANStudent").deployed_teacher(state, teacher_arguments("SPANStudent", state, {})).eval()
    net = SPANStudent(num_feat=WIDTH, deploy=name == "ntire_baseline")  # the baseline: deployed, strictly
    path = args.baseline if name == "ntire_baseline" else pruned["checkpoint"]
    net.load_state_dict(extract_state_dict(load_checkpoint(path)), strict=True)
    return net.eval()


def references(args: argparse.Namespace, pruned: dict) -> dict:
    """The NTIRE baseline (its released weights), the teacher, the pruned start before training, bicubic."""
    path = OUT / "references.json"
    refs = json.loads(path.read_text()) if path.is_file() else {}
    from kit.archs import deploy_network
    from kit.runners import BicubicRunner, TorchRunner

    start = "pruned_start" + start_tag(**args_start(args)) + data_tag(args.data)
    for name in ("ntire_baseline", "teacher", start, "bicubic"):
        if name in refs:
            continue
        if name == "bicubic":
            runner, counts = BicubicRunner(SCALE), {}
        else:
            net = _model("pruned_start" if name == start else name, args, pruned)
            runner, counts = TorchRunner(deploy_network(net)), size(net)
        print(f"[references] {name} ...", flush=True)
        tic = time.time()
        refs[name] = counts | {"val_psnr": val_score(runner), "tests": test_scores(runner, args.benchmarks)}
        refs[name]["seconds"] = round(time.time() - tic, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(refs, indent=1))
    return {name: refs[name] for name in ("ntire_baseline", "teacher", "bicubic")} | {"pruned_start": refs[start]}


# ----------------------------------------------------------------------- runs
def arm_lr(arm: str, args: argparse.Namespace) -> float:
    """The arm's Adam learning rate: its start's (:data:`LR`), or ``--pruned-lr`` for a pruned start."""
    start = ARMS[arm][0]
    given = args.pruned_lr if start == "pruned" else getattr(args, "scratch_lr", None)
    return LR[start] if given is None else given


def run_name(
    arm: str, steps: int, seed: int, lr: float | None = None, form: str = "trainable", lq: int = 32, start: str = ""
) -> str:
    """The run's name: arm, steps, and what differs from the first grid (lr, form, crop size, pruned start: its
    :func:`start_tag`), then the seed."""
    tag = "" if lr is None or lr == LR[ARMS[arm][0]] else f"_lr{lr:g}"
    tag += ("" if form == "trainable" else f"_{form}") + ("" if lq == 32 else f"_lq{lq}")
    return f"prune_{arm}_{steps}{tag}{start}_s{seed}"


def fade_tag(args: argparse.Namespace) -> str:
    """What names a faded start: its steps at full width and their learning rate."""
    return f"_f{args.fade_steps}" + ("" if args.fade_lr is None else f"lr{args.fade_lr:g}")


def _name(arm: str, seed: int, args: argparse.Namespace) -> str:
    start = start_tag(**args_start(args)) if ARMS[arm][0] == "pruned" else ""
    start += (fade_tag(args) if ARMS[arm][1] == "fade" else "") + data_tag(args.data)
    return run_name(arm, args.steps, seed, arm_lr(arm, args), args.form, args.lq_size, start)


def label(run: dict) -> str:
    """The arm, its learning rate when it is not the start's default, and a faded start's steps at full width."""
    notes = [] if run["lr"] == LR[ARMS[run["arm"]][0]] else [f"lr {run['lr']:g}"]
    if run.get("fade"):
        notes.append(f"{run['fade']['steps']} steps at 48 ch, lr {run['fade']['lr']:g}")
    return run["arm"] + (f" ({'; '.join(notes)})" if notes else "")


def run_options(arm: str, seed: int, args: argparse.Namespace, pruned: dict) -> dict:
    """options/distill_pruned_span.yml with this arm's start and loss, the benchmark's data, budget and seed."""
    from kit.options import load_options

    start, distil, _ = ARMS[arm]
    opt = load_options(ROOT / "options" / "distill_pruned_span.yml")
    opt["name"], opt["manual_seed"] = _name(arm, seed, args), seed
    train = opt["datasets"]["train"]
    train.update(dataroot_gt=str(args.data / "HR"), dataroot_lq=str(args.data / "LR_bicubic" / "X4"))
    train.update(name=args.data.name, filename_tmpl="{}x4", gt_size=SCALE * args.lq_size, batch_size_per_gpu=args.batch)
    train["num_worker_per_gpu"] = 0  # the photos are cached in memory; a worker would only contend for the cores
    for key in ("dataroot_gt", "dataroot_lq"):
        opt["datasets"]["val"][key] = str(ROOT / opt["datasets"]["val"][key])
    opt["train"].update(total_iter=args.steps, warmup_iter=max(args.steps // 10, 1))  # Adam's first steps, gently
    opt["train"]["optim_g"]["lr"] = arm_lr(arm, args)
    opt["train"]["scheduler"]["periods"] = [args.steps]
    opt["val"].update(val_freq=max(args.steps // (4 if args.steps <= 600 else 10), 1), compare_every=0)
    opt["logger"].update(print_freq=max(args.steps // 10, 1), save_checkpoint_freq=max(args.steps // 4, 1))
    checkpoint = pruned["checkpoint"]
    opt["network_g"]["deploy"] = args.form == "deployed"  # plain 3x3 convs, or SPAN's expanded branches
    if args.form == "deployed":
        checkpoint = deployed_start(pruned)
    opt["path"] = {"pretrain_network_g": checkpoint} if start == "pruned" else {}
    if distil:
        opt["path"]["pretrain_network_t"] = str(args.teacher)
        opt["train"]["teacher_cache"] = {"root": str(OUT / "teacher_cache")}
        _recipe(opt, distil)
    else:
        opt["model_type"] = "KitSRModel"
        opt.pop("network_t")
        opt["train"].pop("distill")
    return opt


def _recipe(opt: dict, distil: bool | str) -> None:
    """The pruned_kd options changed into one of the other distillation recipes tried (:data:`ARMS`)."""
    train = opt["train"]
    if distil == "fade":  # pruned_kd from the faded start (fade_start)
        return
    if distil == "teacher":
        train.pop("pixel_opt")
    elif distil == "l2":
        train["pixel_opt"] = {"type": "MSELoss", "loss_weight": 1.0, "reduction": "mean"}
        train["distill"]["output"]["loss"] = {"type": "MSELoss", "loss_weight": 1.0}
    elif distil in ("pool", "cwd_pool"):
        # half the batch from the GT photos, half from the pool: 16 crops a step, as every other arm
        opt["datasets"]["train"]["batch_size_per_gpu"] //= 2
        pool = {"sources": ["hr", "zoom_out"], "max_side": 384, "batch": opt["datasets"]["train"]["batch_size_per_gpu"]}
        train["recipes"] = {"pool": {**pool, "cache_root": str(OUT / "pool_cache")}}
        if distil == "cwd_pool":  # feature pairs need the teacher's forward: no offline teacher images
            train.pop("teacher_cache")
            train["distill"]["auto"] = {
                "loss": {"type": "ChannelWiseDivergence", "tau": 4.0, "loss_weight": 1.0},
                "every": "block",
            }
            train["recipes"]["balance"] = {"ratio": 0.1, "warmup_iter": 20}


def run_one(arm: str, seed: int, args: argparse.Namespace, pruned: dict) -> dict:
    """Train one arm and seed (or read its stored result): val curve, test sets, wall time."""
    from kit.archs import deploy_network
    from kit.run.plots import read_history
    from kit.runners import TorchRunner, load_student

    name = _name(arm, seed, args)
    result_path = OUT / "runs" / f"{name}.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    opt = run_options(arm, seed, args, pruned)
    faded = None
    if ARMS[arm][1] == "fade":  # the start comes from a run at full width; the rest of the budget trains it
        faded = fade_start(seed, args, pruned)
        rest = args.steps - args.fade_steps
        opt["path"]["pretrain_network_g"] = faded["checkpoint"][args.form]
        opt["train"].update(total_iter=rest, warmup_iter=max(rest // 10, 1))
        opt["train"]["scheduler"]["periods"] = [rest]
        opt["val"]["val_freq"] = max(rest // 7, 1)
        opt["logger"].update(print_freq=max(rest // 10, 1), save_checkpoint_freq=max(rest // 4, 1))
    summary, opt_path, wall = train_run(opt)
    history = read_history(Path(summary["experiments_root"]) / "history.jsonl")
    curve = {str(r["iter"]): r["psnr"] for r in history if r.get("kind") == "val" and "psnr" in r}
    if faded:  # the steps at full width come first; the pruned start is where the rest began
        wall += faded["wall_s"]
        curve = {str(args.fade_steps): faded["start_val_psnr"]} | {
            str(int(k) + args.fade_steps): v for k, v in curve.items()
        }
    runner = TorchRunner(deploy_network(load_student(opt, summary["latest_checkpoint"])[0]))  # fused: as exported
    result = {
        "name": name,
        "arm": arm,
        "seed": seed,
        "steps": args.steps,
        "lr": opt["train"]["optim_g"]["lr"],
        "form": args.form,
        "lq_size": args.lq_size,
        "start": args_start(args) if ARMS[arm][0] == "pruned" else None,
        "data": args.data.name,
        "fade": faded,
        "val_psnr": summary["metrics"]["psnr"],
        "wall_s": round(wall, 1),
        "curve": curve,
        "checkpoint": summary["latest_checkpoint"],
        "options": str(opt_path),
        "tests": test_scores(runner, args.benchmarks),
    }
    result_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = result_path.with_suffix(".partial")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(result_path)
    return result


def fade_lr(args: argparse.Namespace) -> float:
    """The learning rate of a faded start's steps at full width: ``--fade-lr``, else the arm's."""
    return arm_lr("pruned_fade", args) if args.fade_lr is None else args.fade_lr


def fade_name(seed: int, args: argparse.Namespace) -> str:
    """The name of a faded start's run at full width (and of its stored record)."""
    tags = start_tag(**args_start(args)) + data_tag(args.data)
    return f"prune_fadestart_f{args.fade_steps}_lr{fade_lr(args):g}_lq{args.lq_size}{tags}_s{seed}"


def fade_options(seed: int, args: argparse.Namespace, pruned: dict, teacher: str, teacher_args: dict) -> dict:
    """The options of a faded start's steps at full width: pruned_kd's data, losses and seed; the teacher itself
    (``teacher``: its deployed weights) as the student, ``train.recipes.fade`` to 28 channels over the first 70% of
    ``--fade-steps``, no EMA (kit-prune reads the weights themselves)."""
    steps, lr = args.fade_steps, fade_lr(args)
    opt = run_options("pruned_kd", seed, args, pruned)
    opt["name"] = fade_name(seed, args)
    opt["network_g"] = {"type": "SPANStudent", **teacher_args, "deploy": True}
    opt["path"]["pretrain_network_g"] = teacher
    train = opt["train"]
    train.update(total_iter=steps, warmup_iter=max(steps // 10, 1), ema_decay=0)
    train["optim_g"]["lr"] = lr
    train["scheduler"]["periods"] = [steps]
    train["recipes"] = {"fade": {"width": WIDTH, "end_iter": max(int(0.7 * steps), 1)}}  # then 30% at 28 channels
    opt["val"]["val_freq"] = max(steps // 3, 1)
    opt["logger"].update(print_freq=max(steps // 10, 1), save_checkpoint_freq=max(steps // 2, 1))
    return opt


def fade_start(seed: int, args: argparse.Namespace, pruned: dict) -> dict:
    """The teacher trained ``--fade-steps`` at full width with ``train.recipes.fade`` (:func:`fade_options`), then
    cut to 28 channels by kit-prune (its defaults, calibrated on the training photos): the start of ``pruned_fade``.
    Stored once per setting and seed."""
    from kit.checkpoint import extract_state_dict, load_checkpoint, save_atomic
    from kit.prune.families import get_family
    from kit.prune.procedure import teacher_arguments
    from kit.runners import TorchRunner

    if not 0 < args.fade_steps < args.steps:
        raise SystemExit(f"python -m bench prune: --fade-steps {args.fade_steps} must be between 0 and --steps")
    name = fade_name(seed, args)
    record_path = OUT / "fade" / f"{name}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    state = extract_state_dict(load_checkpoint(args.teacher))
    family = get_family("SPANStudent")
    teacher_args = teacher_arguments(family.name, state, {})
    teacher_path = OUT / "span48_deployed.safetensors"  # kit-prune --width 48 --form deployed --no-refit: the same
    if not teacher_path.is_file():
        teacher = family.deployed_teacher(state, teacher_args)
        save_atomic({k: v.detach().clone() for k, v in teacher.state_dict().items()}, teacher_path)
    opt = fade_options(seed, args, pruned, str(teacher_path), teacher_args)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    tic = time.time()
    summary, _, _ = train_run(opt)
    faded = extract_state_dict(load_checkpoint(summary["latest_checkpoint"]), "params")
    result = prune_28(faded, args.data, **args_start(args))
    wall = time.time() - tic
    runner = TorchRunner(result.deployed)
    paths = {}
    for form in ("trainable", "deployed"):
        paths[form] = str(OUT / "fade" / f"{name}_{form}.safetensors")
        save_atomic(result.network_g(form)[1], paths[form])
    record = {
        "name": name,
        "steps": args.fade_steps,
        "lr": opt["train"]["optim_g"]["lr"],
        "wall_s": round(wall, 1),
        "full_width_val_psnr": summary["metrics"]["psnr"],  # the faded network at 48 channels
        "start_val_psnr": val_score(runner),  # after kit-prune: the rest starts here
        "start_tests": test_scores(runner, args.benchmarks),
        "checkpoint": paths,
    }
    record_path.write_text(json.dumps(record, indent=1))
    return record


# --------------------------------------------------------------------- export
def export_gates(run: dict, max_gmacs: float) -> dict:
    """export.py on one trained checkpoint: size gate, ONNX parity, the NTIRE package (kit hidden), INT8.

    The size gate is the NTIRE baseline's own size (``max_gmacs``: its fvcore count, 9.8338; the issue's "9.83" is
    that number rounded, and the pruned student has exactly the baseline's shape).
    """
    from kit.export.int8 import Int8Settings
    from kit.export.submission import SubmissionSettings, export_submission
    from kit.options import load_options

    opt = load_options(run["options"])
    settings = SubmissionSettings(
        checkpoint=run["checkpoint"],
        name=f"{run['name']}_export",
        max_params=MAX_PARAMS,
        max_gmacs=max_gmacs,
        out_dir=str(OUT / "submissions"),
        force=True,
        options_file=run["options"],
        ntire_team=24,
        int8=Int8Settings(),  # the defaults of export.py --int8
    )
    lines: list[str] = []
    try:
        m = export_submission(opt, settings, log=lines.append).manifest
    except Exception as err:  # a gate that fails is a result to report, not a crash of the benchmark
        return {"run": run["name"], "passed": False, "error": f"{type(err).__name__}: {err}", "log": lines[-20:]}
    return {
        "run": run["name"],
        "passed": True,
        "params": m["params"]["torch"],
        "gmacs": m["macs"]["gmacs"],
        "parity": [line for line in lines if line.startswith("parity")],
        "ntire": bool(m["ntire"]),
        "onnx_psnr": m["validation"]["psnr"],
        "int8_psnr_drop": m["int8"]["validation"]["psnr_drop_vs_fp32"] if m["int8"] else None,
        "log": [line for line in lines if "ntire" in line.lower() or "int8" in line.lower()][-8:],
    }


# --------------------------------------------------------------------- report
def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def summarize(runs: list[dict]) -> dict:
    """Per arm (and learning rate): mean and spread over seeds of every test and validation PSNR; mean wall time."""
    out = {}
    ordered = sorted(runs, key=lambda r: (list(ARMS).index(r["arm"]), r["lr"] != LR[ARMS[r["arm"]][0]], r["lr"]))
    for group in dict.fromkeys(label(r) for r in ordered):
        rs = [r for r in ordered if label(r) == group]
        row = {"arm": rs[0]["arm"], "seeds": [r["seed"] for r in rs], "steps": rs[0]["steps"], "lr": rs[0]["lr"]}
        row["val_psnr"], row["val_spread"] = (
            statistics.mean(r["val_psnr"] for r in rs),
            spread([r["val_psnr"] for r in rs]),
        )
        for name in TEST_SETS:
            for key in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"):
                values = [r["tests"][name][key] for r in rs]
                row[f"{name}_{key}"], row[f"{name}_{key}_spread"] = statistics.mean(values), spread(values)
            row[f"{name}_vs_goal"] = row[f"{name}_psnr_y"] - GOAL[name]
        row["wall_s"] = statistics.mean(r["wall_s"] for r in rs)
        out[group] = row
    return out


def _cell(row: dict, name: str, key: str) -> str:
    value = row.get(f"{name}_{key}", row.get("tests", {}).get(name, {}).get(key))
    s = row.get(f"{name}_{key}_spread")
    return f"{value:.3f}" + (f" ± {s:.3f}" if s is not None and len(row.get("seeds", [])) > 1 else "")


def _gates(gates: dict) -> str:
    """One paragraph: export.py's gates on the trained checkpoint, and what each measured."""
    head = f"export.py's gates on `{gates['run']}` (size, ONNX parity, NTIRE package with the kit hidden, INT8): "
    if not gates["passed"]:
        return head + f"FAILED ({gates.get('error')})."
    details = [*gates.get("parity", []), *gates.get("log", [])]
    return head + "passed.\n\n" + "\n".join(f"- {line}" for line in details)


def _start_note(start: dict | None) -> str:
    """The pruned start, where it is not kit-prune's defaults."""
    start = START | (start or {})
    flags = [f"--{k} {start[k]:g}" for k in ("crops", "ridge") if start[k] != START[k]]
    flags += [f"--importance {start['importance']}"] * (start["importance"] != START["importance"])
    return f" Pruned start: `kit-prune {' '.join(flags)}` (calibrated on the training photos)." if flags else ""


def markdown(record: dict, page: Path | None = None) -> str:
    """The table, the export gates and the curves' picture (linked relative to ``page``)."""
    import os

    s, refs, arms = record["setting"], record["references"], record["arms"]
    head = ["row", "params", "GMACs", *(f"{n} Y" for n in TEST_SETS), *(f"{n} RGB" for n in TEST_SETS), "val Y"]
    lines = ["| " + " | ".join(head + ["wall / run (s)"]) + " |", "|---|" + "---:|" * (len(head))]
    labels = {
        "ntire_baseline": "**NTIRE 2026 baseline** (released weights)",
        "teacher": "teacher SPAN ch48",
        "pruned_start": "pruned start, before training",
        "bicubic": "bicubic",
    }
    for name, title in labels.items():
        r = refs.get(name)
        if r:
            size_cells = [f"{r['params']:,}", f"{r['gmacs']:.3f}"] if "params" in r else ["", ""]
            scores = [_cell(r, n, "psnr_y") for n in TEST_SETS] + [_cell(r, n, "psnr_rgb") for n in TEST_SETS]
            lines.append(f"| {title} | " + " | ".join(size_cells + scores + [f"{r['val_psnr']:.3f}", ""]) + " |")
    pruned = record["pruned"]
    for arm, row in arms.items():
        scores = [_cell(row, n, "psnr_y") for n in TEST_SETS] + [_cell(row, n, "psnr_rgb") for n in TEST_SETS]
        val = f"{row['val_psnr']:.3f} ± {row['val_spread']:.3f}"
        cells = [f"{pruned['params']:,}", f"{pruned['gmacs']:.3f}", *scores, val, f"{row['wall_s']:.0f}"]
        lines.append(f"| `{arm}`: {ARMS[row['arm']][2]} | " + " | ".join(cells) + " |")
    best = max(arms, key=lambda a: arms[a]["val_psnr"]) if arms else None  # chosen on val, never on a test set
    text = [
        f"{s['steps']} steps, batch {s['batch']}, LR crops {s['lq_size']} px, seeds {s['seeds']}, training data "
        f"`{s['data']}`; SPAN trained in its {s.get('form', 'trainable')} form; Adam with cosine decay at the "
        f"learning rate a row names (else {LR['scratch']:g} from a random start, {LR['pruned']:g} from the pruned "
        "one), linear warm-up over the first tenth; EMA "
        "weights at the end. PSNR (dB) on Y and on RGB, border 4, mean ± half the range over seeds; val = the bundled "
        f"validation photos (Y). Total {record['total_min']:.0f} min of training and evaluation on 2 CPU cores."
        + _start_note(s.get("start")),
        "",
        "\n".join(lines),
    ]
    pilots = record.get("pilots")
    if pilots:
        by_arm = {}
        for r in sorted(pilots, key=lambda r: (list(ARMS).index(r["arm"]), r["lr"])):
            by_arm.setdefault(r["arm"], []).append(f"{r['lr']:g} → {r['val_psnr']:.3f}")
        text += [
            "",
            f"Learning rates, chosen on the validation photos only ({pilots[0]['steps']}-step pilots, seed "
            f"{pilots[0]['seed']}, val PSNR-Y): " + "; ".join(f"`{a}` {', '.join(v)}" for a, v in by_arm.items()) + ".",
        ]
    faded = {label(r): [] for r in record.get("runs", []) if r.get("fade")}
    for r in record.get("runs", []):
        if r.get("fade"):
            faded[label(r)].append(r["fade"])
    if faded:
        starts = "; ".join(
            f"`{key}` val {statistics.mean(f['start_val_psnr'] for f in fs):.3f}, Set5 "
            f"{statistics.mean(f['start_tests']['Set5']['psnr_y'] for f in fs):.3f}"
            for key, fs in faded.items()
        )
        text += [
            "",
            "Faded starts, where the rest of the budget began (the teacher after its steps at 48 channels with "
            f"`train.recipes.fade`, cut to 28 by kit-prune; PSNR-Y, mean over seeds): {starts}. The curves of the "
            "faded arms begin there.",
        ]
    steps = record.get("step_seconds")
    if steps:
        text += [
            "",
            f"One training step of the student (batch {s['batch']}, {s['lq_size']}-px LR crops, forward + L1 + "
            f"backward + Adam; median of 5, measured in this command): trainable form {steps['trainable']:.3f} s, "
            f"deployed form {steps['deployed']:.3f} s ({steps['ratio']:.1f}×).",
        ]
    if best:
        gaps = ", ".join(f"{n} {arms[best][f'{n}_vs_goal']:+.3f} dB" for n in TEST_SETS)
        text += [
            "",
            f"Best arm on the validation photos, `{best}`, against the goal (the baseline's PSNR-Y, mean over seeds): "
            f"{gaps}.",
        ]
    gates = record.get("export")
    if gates:
        text += ["", _gates(gates)]
    picture = RESULTS / f"{record.get('result', 'prune')}_curves.png"
    rel = os.path.relpath(picture, page.parent) if page is not None else picture.name
    text += ["", f"![validation PSNR-Y against the step, every arm]({Path(rel).as_posix()})"]
    return "\n".join(text) + "\n"


def plot(runs: list[dict], refs: dict, path: Path) -> None:
    """Validation PSNR-Y against the step, mean over seeds, one line per arm (pruned arms from the pruned start)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for key in summarize(runs):
        rs = [r for r in runs if label(r) == key]
        arm = rs[0]["arm"]
        steps = sorted({int(k) for r in rs for k in r["curve"]})
        means = [statistics.mean(r["curve"][str(k)] for r in rs if str(k) in r["curve"]) for k in steps]
        if ARMS[arm][0] == "pruned" and "pruned_start" in refs and not rs[0].get("fade"):  # a faded start: its own
            steps, means = [0, *steps], [refs["pruned_start"]["val_psnr"], *means]
        ax.plot(steps, means, marker="o", markersize=3, label=key, linestyle="-" if ARMS[arm][1] else "--")
    if "ntire_baseline" in refs:
        ax.axhline(refs["ntire_baseline"]["val_psnr"], color="k", linewidth=0.8, label="NTIRE 2026 baseline")
    ax.set(xlabel="training step", ylabel="val PSNR-Y (dB), mean over seeds", title="SPAN ch48 pruned to 28 channels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench prune", description=__doc__.splitlines()[0])
    p.add_argument("--teacher", type=Path, default=DEFAULT_TEACHER, help="the pretrained SPAN x4 ch48")
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="the NTIRE 2026 baseline's weights")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training photos: HR/ and LR_bicubic/X4/")
    p.add_argument("--photos", type=int, help="train on this many of --data's photos, evenly spread (runs kept apart)")
    p.add_argument("--benchmarks", type=Path, default=DEFAULT_BENCHMARKS, help="Set5, Set14, BSD68 (HR, LR_bicubic/X4)")
    p.add_argument("--steps", type=int, default=120, help="training steps of every arm (default 120: measured)")
    p.add_argument("--batch", type=int, default=16, help="batch (at most 16)")
    p.add_argument("--lq-size", type=int, default=32, help="LR crop side (at most 48)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    p.add_argument(
        "--form",
        choices=("trainable", "deployed"),
        default="trainable",
        help="train SPAN in its trainable form (expanded branches) or deployed (plain convs, 4-5x faster on a CPU)",
    )
    p.add_argument("--arms", nargs="*", choices=list(ARMS), help="the arms (default the four controls)")
    p.add_argument(
        "--pruned-lr", type=float, help=f"Adam lr of the pruned arms (default {LR['pruned']:g}; runs kept apart)"
    )
    p.add_argument(
        "--scratch-lr",
        type=float,
        help=f"Adam lr of the random-start arms (default {LR['scratch']:g}; runs kept apart)",
    )
    p.add_argument(
        "--pilot-steps",
        type=int,
        help="also report the stored runs of this many steps (same form and crops): the learning rates' pilots",
    )
    p.add_argument("--report", action="store_true", help="only the report, from the stored runs")
    p.add_argument(
        "--result",
        default="prune",
        help="the result's name: bench/results/NAME.json and NAME_curves.png (default prune; a page's block "
        "<!-- results:NAME --> shows it)",
    )
    p.add_argument("--export", action="store_true", help="export.py's gates on pruned_kd (first seed)")
    p.add_argument("--calib-crops", type=int, default=START["crops"], help="kit-prune --crops of the pruned start")
    p.add_argument("--ridge", type=float, default=START["ridge"], help="kit-prune --ridge of the pruned start")
    p.add_argument(
        "--importance",
        choices=("energy", "taylor", "l1"),
        default=START["importance"],
        help="kit-prune --importance of the pruned start",
    )
    p.add_argument(
        "--fade-steps", type=int, default=1500, help="pruned_fade: steps of the budget trained at full width (1500)"
    )
    p.add_argument("--fade-lr", type=float, help="pruned_fade: Adam lr of the steps at full width (default the arm's)")
    return p


def train_grid(args: argparse.Namespace, pruned: dict) -> None:
    """Every arm and seed asked for, one after the other (a stored run is read, not trained again)."""
    grid = [(arm, seed) for arm in (args.arms or CONTROLS) for seed in args.seeds]
    for i, (arm, seed) in enumerate(grid, 1):
        print(f"[{i}/{len(grid)}] {_name(arm, seed, args)} ...", flush=True)
        run = run_one(arm, seed, args, pruned)
        print(f"    val {run['val_psnr']:.3f}, Set5 {run['tests']['Set5']['psnr_y']:.3f} dB", flush=True)


def _setting(run: dict) -> tuple:
    """A stored run's steps, form, LR crop size, pruned start and training photos (runs from before those flags:
    trainable, 32, kit-prune's defaults, SunHays80); a random start's runs belong to every start's table."""
    start = START | (run.get("start") or {})
    start = None if run["arm"] not in ARMS or ARMS[run["arm"]][0] != "pruned" else tuple(start[k] for k in START)
    return run["steps"], run.get("form", "trainable"), run.get("lq_size", 32), start, run.get("data", DEFAULT_DATA.name)


def _wanted(run: dict, args: argparse.Namespace, steps: int) -> bool:
    """Whether a stored run is of this command's setting (at ``steps``: the grid's or the pilots')."""
    steps_, form, lq, start, data = _setting(run)
    here = (steps, args.form, args.lq_size, args.data.name)
    return (steps_, form, lq, data) == here and start in (None, tuple(args_start(args).values()))


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    for path in (args.teacher, args.baseline, args.data / "HR", args.benchmarks / "Set5"):
        if not path.exists():
            raise SystemExit(f"python -m bench prune: '{path}' does not exist (see --help for the flag that sets it)")
    from kit.data import bundled

    bundled.build()
    if args.photos:
        args.data = photo_subset(args.data, args.photos)
    pruned = prune_start(args.teacher, args.data, **args_start(args))
    refs = references(args, pruned)
    if not args.report:
        train_grid(args, pruned)
    stored = [json.loads(p.read_text()) for p in sorted((OUT / "runs").glob("*.json"))]
    arms = args.arms or CONTROLS
    runs = [r for r in stored if _wanted(r, args, args.steps) and r["arm"] in arms]  # any lr
    record = {
        "setting": {
            "steps": args.steps,
            "batch": args.batch,
            "lq_size": args.lq_size,
            "seeds": args.seeds,
            "data": args.data.name,
            "form": args.form,
            "start": args_start(args),
        },
        "pruned": pruned,
        "references": refs,
        "goal": GOAL,
        "runs": runs,
        "arms": summarize(runs),
        "total_min": (pruned["seconds"] + sum(r["seconds"] for r in refs.values()) + sum(r["wall_s"] for r in runs))
        / 60,
    }
    first = min((r for r in runs if r["arm"] == "pruned_kd"), key=lambda r: (r["lr"], r["seed"]), default=None)
    earlier = RESULTS / f"{args.result}.json"
    if args.export and first:
        record["export"] = export_gates(first, refs["ntire_baseline"]["gmacs"])
    elif earlier.is_file():  # a report keeps the gates measured before
        record["export"] = json.loads(earlier.read_text()).get("export")
    if args.pilot_steps:  # the learning rates' pilots: shorter runs of the same form and crops, chosen on val
        record["pilots"] = [
            {k: r[k] for k in ("arm", "lr", "seed", "val_psnr")} | {"steps": r["steps"]}
            for r in stored
            if _wanted(r, args, args.pilot_steps)
        ]
    record["result"] = args.result
    record["step_seconds"] = step_seconds(args.batch, args.lq_size)
    write_result(args.result, record, name="prune", argv=argv, flags=args)
    plot(runs, refs, RESULTS / f"{args.result}_curves.png")
    md = markdown(record)
    print(md)
    return record
