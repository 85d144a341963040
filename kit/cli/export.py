"""``python export.py``: student checkpoint → size gate → verified ONNX → ``submissions/<name>/`` and its zip.

Usage::

    python export.py -opt options/distill.yml                       # experiments/<name>/models/net_g_latest.pth
    python export.py -opt options/distill.yml --force_yml name=short  # the run trained with those overrides
    python export.py --experiment short                             # the same, from the options the run saved
    python export.py -opt options/distill.yml --checkpoint best.pth --name team_x4 --max-gmacs 200 --fp16
    python export.py -opt options/distill.yml --input-size 320x180 --out-dir /tmp/subs --force
    python export.py -opt options/distill.yml --ntire-team 7 --int8  # + NTIRE ESR package and an INT8 model
    python -m kit.cli.export ...                                    # the same

The steps and their checks are :mod:`kit.export.submission`'s; the function API is
:func:`kit.export.export_submission` with a :class:`kit.export.SubmissionSettings`. Which run is exported:
``-opt`` with ``--force_yml`` means what it means to ``train.py`` (:mod:`kit.experiments`); the checkpoint is
printed with its run's name, and one whose run trained another ``network_g`` is refused. The arguments are parsed
before torch is imported.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import kit
from kit.cli.argtypes import count, size

__all__ = ["build_parser", "main"]

# The defaults the help names; tests/test_help.py checks them against kit.export's own (the parser imports no torch).
DEFAULT_MAX_PARAMS = 5_000_000
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
FLOAT_PARTS = ("image", "first", "last")
FP16_TOLERANCE = 1e-2
EXAMPLES = """examples:
  python export.py -opt options/distill.yml                        # experiments/distill_rlfn_x4's latest weights
  python export.py -opt options/distill.yml --force_yml name=short # the run trained with --force_yml name=short
  python export.py --experiment short --int8 --ntire-team 7        # a run by name (or folder), INT8 + NTIRE package
  python export.py -opt my.yml --checkpoint experiments/my/models/net_g_400.pth --name my_400
"""


def build_parser() -> argparse.ArgumentParser:
    """``export.py``'s flags."""
    p = argparse.ArgumentParser(
        prog="export.py",
        description="Check the student's size, export it to ONNX, verify it and write submissions/<name>/.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-opt", help="options YAML (the student is its network_g); or --experiment")
    p.add_argument("--force_yml", "--force-yml", nargs="+", help="override options as train.py does, e.g. name=short")
    p.add_argument("--experiment", metavar="RUN", help="a trained run by name or folder: its saved options and weights")
    p.add_argument("--checkpoint", help="student weights (default experiments/<name>/models/net_g_latest.pth)")
    p.add_argument("--name", help="submission name (default: the options' name)")
    p.add_argument("--max-params", type=count, default=DEFAULT_MAX_PARAMS, help="inclusive limit (default 5M)")
    p.add_argument("--max-gmacs", type=float, help="inclusive GMACs limit at --input-size (default: none)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--fp16", action="store_true", help=f"float16 weights (parity tolerance {FP16_TOLERANCE:g})")
    p.add_argument("--input-size", type=size, default=(256, 256), help="reference LR input HxW (default 256x256)")
    p.add_argument(
        "--out-dir", default=str(kit.REPO_ROOT / "submissions"), help="submissions folder (default <repo>/submissions)"
    )
    p.add_argument("--force", action="store_true", help="move an existing submission aside instead of refusing")
    p.add_argument("--latency-runs", type=int, default=5, help="timed onnxruntime runs (median; default 5)")
    g = p.add_argument_group("NTIRE Efficient SR package (ntire/ beside model.onnx)")
    g.add_argument("--ntire-team", type=int, metavar="ID", help="team id: write ntire/models/team<ID>_<Name>.py etc.")
    g.add_argument("--ntire-name", help="class name <Name> (default: the submission name in CamelCase)")
    g = p.add_argument_group("INT8 (model_int8.onnx beside model.onnx)")
    g.add_argument("--int8", action="store_true", help="add a statically quantised INT8 ONNX model (QDQ)")
    g.add_argument("--int8-crops", type=int, default=64, help="calibration crops of the training LR (default 64)")
    g.add_argument("--int8-crop-size", type=int, default=64, help="side of each calibration crop (default 64)")
    g.add_argument("--int8-method", choices=CALIBRATION_METHODS, default="minmax", help="calibration (default minmax)")
    g.add_argument(
        "--int8-keep-float",
        default="image",
        help=f"comma-separated parts left in float, of {', '.join(FLOAT_PARTS)}; 'none' for none (default image)",
    )
    return p


def _int8_settings(args: argparse.Namespace):
    """The INT8 settings the flags ask for (a :class:`kit.export.int8.Int8Settings`), or None."""
    if not args.int8:
        return None
    from kit.export.int8 import Int8Settings

    keep = tuple(p.strip() for p in args.int8_keep_float.split(",") if p.strip() and p.strip() != "none")
    return Int8Settings(args.int8_crops, args.int8_crop_size, args.int8_method, keep)


def main(argv: list[str] | None = None) -> int:
    """Run the export; print each step and a summary. Exit 1 when a check fails, 2 on bad input."""
    args = build_parser().parse_args(argv)
    kit.install()  # compat + registries, once the arguments are parsed
    from kit.checkpoint import CheckpointError
    from kit.export.budget import BudgetError
    from kit.export.onnx_export import ExportError

    try:
        result, bicubic = _export(args)
    except (BudgetError, ExportError) as err:
        print(f"export: FAILED: {err}", file=sys.stderr)
        return 1
    except (ValueError, OSError, CheckpointError) as err:
        print(f"export: error: {err}", file=sys.stderr)
        return 2
    _report(result, bicubic)
    return 0


def _export(args: argparse.Namespace) -> tuple:
    """Resolve the run, say which checkpoint it is, export; returns the result and bicubic's validation PSNR."""
    from kit.experiments import describe_checkpoint, tool_options
    from kit.export.submission import SubmissionSettings, export_submission
    from kit.runners import default_checkpoint

    chosen = tool_options(args.opt, args.force_yml, args.experiment)
    opt = chosen.opt
    checkpoint = args.checkpoint or chosen.checkpoint
    print(f"options: {chosen.source}")
    print(describe_checkpoint(opt, checkpoint if checkpoint is not None else default_checkpoint(opt)))
    settings = SubmissionSettings(
        checkpoint=checkpoint,
        name=args.name,
        max_params=args.max_params,
        max_gmacs=args.max_gmacs,
        opset=args.opset,
        fp16=args.fp16,
        input_size=args.input_size,
        out_dir=args.out_dir,
        force=args.force,
        options_file=str(Path(chosen.file).resolve()),
        latency_runs=args.latency_runs,
        ntire_team=args.ntire_team,
        ntire_name=args.ntire_name,
        int8=_int8_settings(args),
    )
    result = export_submission(copy.deepcopy(opt), settings, log=print)
    return result, _bicubic_psnr(opt, result.manifest["validation"])


def _bicubic_psnr(opt: dict, validation: dict) -> float | None:
    """Bicubic's PSNR on the validation set the export measured, with the same convention (None: not comparable)."""
    from kit.evaluation import evaluate, validation_pairs
    from kit.runners import BicubicRunner

    scale = int(opt.get("scale", 1))
    if scale == 1 or "psnr" not in validation:
        return None
    pairs = validation_pairs(opt, scale)
    result = evaluate(
        {"bicubic": BicubicRunner(scale)}, pairs, scale, validation["y_channel"], validation["crop_border"]
    )
    return float(result.means()["bicubic"]["psnr"])


def _report(result, bicubic: float | None) -> None:
    """The summary lines after the steps: where the submission is, its numbers, and a warning below bicubic."""
    from kit.checkpoint import sha256_file

    m = result.manifest
    for old in result.replaced:
        print(f"previous submission moved aside to {old}")
    print(f"submission: {result.folder}")
    print(f"zip: {result.zip} (sha256 {sha256_file(result.zip)})")
    ref = "x".join(map(str, m["macs"]["reference_input"]))
    print(
        f"{m['params']['torch']:,d} params, {m['macs']['gmacs']:.4f} GMACs at {ref}, "
        f"PSNR {m['validation']['psnr']:.3f} dB / SSIM {m['validation']['ssim']:.4f} "
        f"({'Y' if m['validation']['y_channel'] else 'RGB'}, border {m['validation']['crop_border']}), "
        f"onnxruntime CPU {m['latency']['onnxruntime_cpu_ms_median']:.1f} ms"
    )
    if m["ntire"]:
        print(f"NTIRE package: {result.folder / 'ntire'} (paste {m['ntire']['select_model']} into test_demo.py)")
    if m["int8"]:
        q = m["int8"]
        print(
            f"INT8: {q['file']}, PSNR drop {q['validation']['psnr_drop_vs_fp32']:+.3f} dB, "
            f"{q['latency']['speedup']:.2f}x the fp32 speed in onnxruntime CPU"
        )
    psnr = m["validation"]["psnr"]
    if bicubic is not None and psnr < bicubic:
        print(
            f"WARNING: the student's validation PSNR {psnr:.3f} dB is below bicubic's {bicubic:.3f} dB (MATLAB "
            "imresize, same images and convention): it has not learnt the task yet; train longer before submitting",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
