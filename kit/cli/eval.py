"""``kit-eval``: PSNR/SSIM (and optionally LPIPS) of a checkpoint, an ONNX file, the teacher and bicubic, side by side.

Usage::

    kit-eval -opt options/distill.yml                          # student (net_g_latest.pth) on the val set
    kit-eval -opt options/distill.yml --teacher --bicubic --csv results/eval.csv --json results/eval.json
    kit-eval --onnx submissions/distill_rlfn_x4/model.onnx --lq LR/X4 --gt HR --scale 4
    kit-eval -opt options/distill_naf_denoise.yml --gt my_photos/   # LQ made by the training degradation (seeded)
    kit-eval -opt options/distill.yml --rgb --crop-border 4    # NTIRE ESR convention instead of the papers' Y
    kit-eval -opt options/distill_gtfree_realesrgan.yml --lq photos/ --against-teacher   # no GT: to the teacher
    kit-eval -opt X.yml --lq LR/ --teacher-images T/ --bicubic  # the teacher's outputs computed once, read from T/
    python -m kit.cli.eval ...                                 # the same

References: the GT, and with ``--against-teacher`` (or ``--teacher-images``) the teacher's output too: every
model is measured to each reference, and each table says which. ``--lq DIR`` without ``--gt`` (real photos,
no GT) needs one of them.

Data: ``--lq DIR --gt DIR`` (paired by file name), or ``--gt DIR`` alone (LQ made from each GT by the options'
training degradation: a ``DegradedImageDataset``'s ``degradations``, else MATLAB bicubic ×scale; seed fixed),
or nothing: the options' ``val`` dataset, else the bundled val photos at the scale.

Metrics are those of :mod:`kit.metrics.psnr_ssim` (equal to BasicSR's numpy reference) on outputs rounded to
8 bits as ``tensor2img`` does. Default: the Y channel (BT.601) with a border of ``scale`` pixels (papers); NTIRE
Efficient SR uses ``--rgb --crop-border 4``. Every report states which.

The function API (:mod:`kit.evaluation`), reused by the export and the benchmarks::

    result = evaluate({"student": runner}, folder_pairs(lq_dir, gt_dir, 4), scale=4)
    result.means()["student"]["psnr"]
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

import kit

if TYPE_CHECKING:
    from kit.evaluation import EvalResult, Model, PairSource

__all__ = ["build_parser", "main", "run"]

EXAMPLES = """examples:
  kit-eval -opt options/distill.yml --teacher --bicubic            # student, teacher and bicubic on the val set
  kit-eval -opt options/distill.yml --force_yml name=short          # the run trained with --force_yml name=short
  kit-eval --experiment short --gt my_photos/                       # a run by name or folder, on your photos
  kit-eval --onnx submissions/distill_rlfn_x4/model.onnx --lq LR/X4 --gt HR --rgb --crop-border 4
"""


# -------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """``kit-eval``'s flags."""
    p = argparse.ArgumentParser(
        prog="kit-eval",
        description="PSNR/SSIM (and LPIPS) of a student checkpoint, an ONNX file, the teacher and bicubic.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m = p.add_argument_group("models")
    m.add_argument("-opt", help="options YAML: its student (network_g), scale, teacher and data")
    m.add_argument("--force_yml", "--force-yml", nargs="+", help="override options as train.py does, e.g. name=short")
    m.add_argument("--experiment", metavar="RUN", help="a trained run by name or folder: its saved options and weights")
    m.add_argument("--checkpoint", help="student weights (default experiments/<name>/models/net_g_latest.pth)")
    m.add_argument("--onnx", help="an exported ONNX model (with -opt, the student runs too only if --checkpoint)")
    m.add_argument("--teacher", action="store_true", help="also evaluate the options' teacher(s)")
    m.add_argument("--bicubic", action="store_true", help="also evaluate bicubic upscaling")
    m.add_argument(
        "--bicubic-method", choices=("matlab", "torch"), default="matlab", help="MATLAB imresize (default) or torch"
    )
    m.add_argument("--device", default="cpu", help="device of the PyTorch models (default cpu)")
    m.add_argument(
        "--against-teacher",
        action="store_true",
        help="also measure every model to the teacher's output (reference 'teacher'); the teacher runs",
    )
    m.add_argument(
        "--teacher-images",
        metavar="DIR",
        help="the teacher's outputs, computed once (same file stems as the inputs): the 'teacher' reference",
    )
    d = p.add_argument_group("data")
    d.add_argument("--lq", help="folder of LQ inputs (paired with --gt by file name)")
    d.add_argument("--gt", help="folder of ground truths; alone, LQ is made by the training degradation")
    d.add_argument("--seed", type=int, help="seed of the GT-only degradation (default: the dataset's seed, or 0)")
    d.add_argument("--scale", type=int, help="the models' scale (default: the options', else measured from --onnx)")
    e = p.add_argument_group("metrics")
    y = e.add_mutually_exclusive_group()
    y.add_argument("--y-channel", dest="y_channel", action="store_true", default=True, help="Y channel (default)")
    y.add_argument("--rgb", dest="y_channel", action="store_false", help="RGB (NTIRE Efficient SR)")
    e.add_argument("--crop-border", type=int, help="pixels dropped on each side (default: the scale)")
    e.add_argument("--lpips", choices=("alex", "vgg"), help="also LPIPS (backbone weights must be cached)")
    e.add_argument("--tile", type=int, help="tiled inference with LR tiles of this size (large images)")
    e.add_argument("--tile-overlap", type=int, default=16, help="LR overlap between tiles (default 16)")
    o = p.add_argument_group("output")
    o.add_argument("--csv", help="write per-image rows and means as CSV")
    o.add_argument("--json", help="write settings, per-image rows and means as JSON")
    o.add_argument("--compare", help="write a comparison PNG per image into this folder")
    return p


def _scale(args: argparse.Namespace, opt: dict | None) -> int | None:
    if opt is not None and opt.get("scale") is not None:
        scale = int(opt["scale"])
        if args.scale is not None and args.scale != scale:
            raise ValueError(f"--scale {args.scale} disagrees with the options' scale {scale}; drop --scale")
        return scale
    if opt is not None and args.scale is None:
        return int(opt.get("network_g", {}).get("scale", opt.get("network_g", {}).get("upscale", 1)))
    return args.scale


def run(args: argparse.Namespace) -> EvalResult:
    """Build the models and data the parsed flags ask for and evaluate them."""
    from kit.evaluation import EvalSettings, evaluate
    from kit.runners import OnnxRunner

    opt, described = _options(args)
    scale = _scale(args, opt)
    onnx = OnnxRunner(args.onnx) if args.onnx else None
    if onnx is not None:
        scale = scale if scale is not None else onnx.probe_scale()
    if scale is None:
        raise ValueError("nothing to evaluate: give -opt OPTIONS (a student checkpoint) or --onnx FILE")
    models, reference_model, notes = _models(args, opt, scale, onnx)
    if args.checkpoint and opt is None:
        raise ValueError("--checkpoint needs -opt OPTIONS (to build the network it belongs to)")
    pairs = _pairs(args, opt, scale)
    lpips = None
    if args.lpips:
        from kit.metrics.lpips_metric import LPIPSMetric

        lpips = LPIPSMetric(args.lpips)
    settings = EvalSettings(
        args.tile, args.tile_overlap, lpips, args.lpips, args.compare, reference_model, progress=ProgressLines()
    )
    result = evaluate(models, pairs, scale, y_channel=args.y_channel, crop_border=args.crop_border, settings=settings)
    result.notes = described + notes + result.notes
    return result


def _options(args: argparse.Namespace) -> tuple[dict | None, list[str]]:
    """The options (``-opt``/``--force_yml``, or ``--experiment``) with ``args.checkpoint`` set, and notes naming them
    and the student's checkpoint with its run (one trained with another ``network_g`` is refused)."""
    from kit.experiments import describe_checkpoint, tool_options
    from kit.runners import default_checkpoint

    if args.opt is None and args.experiment is None:
        if args.force_yml:
            raise ValueError("--force_yml needs -opt OPTIONS")
        return None, []
    chosen = tool_options(args.opt, args.force_yml, args.experiment)
    args.checkpoint = args.checkpoint or chosen.checkpoint
    notes = [f"options: {chosen.source}"]
    if args.checkpoint or not args.onnx:
        ckpt = args.checkpoint if args.checkpoint is not None else default_checkpoint(chosen.opt)
        notes.append(f"student: {describe_checkpoint(chosen.opt, ckpt)}")
    return chosen.opt, notes


def _models(
    args: argparse.Namespace, opt: dict | None, scale: int, onnx: Model | None
) -> tuple[dict[str, Model], str | None, list[str]]:
    """The models the flags name, the label of the model that is a reference (or None), and notes for the report."""
    from kit.runners import BicubicRunner, student_runner, teacher_runners, teacher_target_runner

    models: dict[str, Model] = {"onnx": onnx} if onnx is not None else {}
    notes = []
    if opt is not None and (args.checkpoint or not args.onnx):
        models["student"] = student_runner(opt, args.checkpoint, args.device)
    reference_model = None
    if args.against_teacher and args.teacher_images:
        raise ValueError("--against-teacher runs the teacher, --teacher-images reads its outputs: give one")
    if args.against_teacher:
        if opt is None:
            raise ValueError("--against-teacher needs -opt OPTIONS (the teacher is declared there)")
        models["teacher"], described = teacher_target_runner(opt, args.device)
        reference_model = "teacher"
        notes.append(f"reference 'teacher': the output of {described}")
    elif args.teacher:
        if opt is None:
            raise ValueError("--teacher needs -opt OPTIONS (the teacher is declared there)")
        models.update(teacher_runners(opt, args.device))
    if args.teacher_images:
        notes.append(f"reference 'teacher': the images in '{args.teacher_images}' (computed beforehand)")
    if args.bicubic:
        bicubic = BicubicRunner(scale, args.bicubic_method)
        models["bicubic"] = bicubic
        notes.append(bicubic.describe())
    return models, reference_model, notes


def _pairs(args: argparse.Namespace, opt: dict | None, scale: int) -> PairSource:
    """The image pairs the data flags name (see the module doc), with the teacher's images as a reference."""
    from kit.evaluation import bundled_pairs, degraded_pairs, folder_pairs, training_degradation, validation_pairs
    from kit.evaluation.teacher_reference import lq_pairs, with_teacher_images

    if args.lq and not args.gt and not (args.against_teacher or args.teacher_images):
        raise ValueError("--lq needs --gt (the ground truths), or --against-teacher / --teacher-images (no GT)")
    if args.lq and not args.gt:
        pairs = lq_pairs(args.lq, scale)
    elif args.lq:
        pairs = folder_pairs(args.lq, args.gt, scale)
    elif args.gt:
        specs, seed, label = training_degradation(opt, scale)
        pairs = degraded_pairs(args.gt, specs, scale, seed if args.seed is None else args.seed, label)
    elif opt is not None:
        pairs = validation_pairs(opt, scale)
    else:
        pairs = bundled_pairs(scale)
    if args.teacher_images:
        pairs = with_teacher_images(pairs, args.teacher_images, scale)
    return pairs


def report(result: EvalResult) -> str:
    """The printed report: what was measured, the table, notes."""
    n = len(result.images())
    lines = [
        f"{result.metric_label}; x{result.scale}, {n} image{'s' if n != 1 else ''}",
        f"data: {result.data}" if result.data else "",
        f"tiled: {result.tile} px LR tiles, {result.tile_overlap} px overlap" if result.tile else "",
    ]
    for ref in result.references:
        what = "the ground truth" if ref == "GT" else f"the {ref}'s output"
        lines += ["", f"reference: {what} (PSNR/SSIM of each model TO {ref})", result.table(ref)]
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(line for i, line in enumerate(lines) if line or i > 2)


def main(argv: list[str] | None = None) -> int:
    """``kit-eval``: evaluate, print the table, write ``--csv``/``--json``; exit 2 with one message on bad input."""
    args = build_parser().parse_args(argv)
    kit.install()  # compat + registries, once the arguments are parsed
    from kit.checkpoint import CheckpointError

    try:
        result = run(args)
    except (ValueError, OSError, CheckpointError) as err:
        print(f"kit-eval: error: {err}", file=sys.stderr)
        return 2
    print(report(result))
    for flag, write in (("csv", result.write_csv), ("json", result.write_json)):
        if getattr(args, flag):
            print(f"wrote {write(getattr(args, flag))}")
    if args.compare:
        print(f"comparison pictures in {args.compare}")
    if any(not math.isfinite(m["psnr"]) for ref in result.references for m in result.means(ref).values()):
        print("note: PSNR is inf where an output equals its reference exactly")
    return 0


class ProgressLines:
    """Where no terminal shows tqdm's bar (a log file, CI), one line on stderr every ``every`` seconds, with an ETA."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self.last = 0.0

    def __call__(self, done: int, total: int | None, elapsed: float) -> None:
        if sys.stderr.isatty() or elapsed - self.last < self.every or (total is not None and done >= total):
            return
        self.last = elapsed
        eta = f", ETA {elapsed / done * (total - done) / 60:.1f} min" if total else ""
        print(f"kit-eval: {done}/{total or '?'} images{eta}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
