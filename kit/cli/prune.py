"""``kit-prune``: prune a pretrained teacher into a smaller student of its registered family, ready to train.

Usage::

    kit-prune --teacher experiments/pretrained/spanx4_ch48.safetensors --family SPANStudent --width 28 \\
        --out experiments/pretrained/span28_pruned.safetensors
    kit-prune --teacher T.safetensors --family SPANStudent --max-params 150688 --max-gmacs 9.83 --input-size 256x256 \\
        --out S.safetensors --eval-lq LR_bicubic/X4 --eval-gt HR
    kit-prune --teacher rlfn52.pth --family RLFNStudent --width 32 --blocks 4 --img-residual bicubic --out S.safetensors
    python -m kit.cli.prune ...                                                    # the same

Structured pruning (:mod:`kit.prune`): torch-pruning's dependency graph finds the coupled channels, the teacher's
activation energy on LR crops of ``--data``'s photos (or ``--importance taylor``: first-order Taylor of the L1 loss
to their HR crops) chooses which to keep, and every conv is refit by least
squares to the teacher's outputs. The checkpoint written loads with ``strict=True`` into the student's
``network_g`` (trainable form) through ``path.pretrain_network_g``. Prints the student's size, its ``network_g``
entry and, with ``--eval-lq/--eval-gt``, its PSNR-Y (border = scale) before any training. Exit status 2 when the
target cannot be met or the teacher is not of the family (one line saying why).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import kit
from kit.cli.argtypes import count, size

if TYPE_CHECKING:
    import torch

    from kit.prune import PruneResult

__all__ = ["build_parser", "main", "psnr_y"]

# kit.prune's families and criteria (tests/test_help.py checks them): the parser imports no torch.
FAMILY_NAMES = ("RLFNStudent", "SPANStudent")
CRITERIA = ("energy", "taylor", "l1")
FORMS = ("trainable", "deployed")
EXAMPLES = """examples:
  kit-prune --teacher spanx4_ch48.safetensors --family SPANStudent --width 28 --out pruned.safetensors
  kit-prune --teacher t.pth --family RLFNStudent --max-params 2e5 --img-residual bicubic --out s.pth \\
            --eval-lq datasets/bundled/val/LR_bicubic/X4 --eval-gt datasets/bundled/val/HR
"""


def build_parser() -> argparse.ArgumentParser:
    """``kit-prune``'s flags."""
    p = argparse.ArgumentParser(
        prog="kit-prune",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--teacher", required=True, help="the pretrained weights (.pth/.safetensors)")
    p.add_argument("--param-key", help="the teacher checkpoint's entry (default: params_ema, params, ...)")
    p.add_argument("--family", required=True, choices=FAMILY_NAMES, help="the registered student family")
    p.add_argument("--width", type=int, help="channels per group (num_feat) of the student")
    p.add_argument("--blocks", type=int, help="blocks to keep (default: all the teacher's)")
    p.add_argument("--max-params", type=count, help="inclusive cap on deployed parameters")
    p.add_argument("--max-gmacs", type=float, help="inclusive cap on fvcore GMACs at --input-size")
    p.add_argument("--input-size", type=size, default=(256, 256), help="LR input HxW of the GMACs (256x256)")
    p.add_argument("--data", help="photos for calibration (default: the bundled train photos, built if missing)")
    p.add_argument("--crops", type=int, default=48, help="calibration crops (default 48)")
    p.add_argument("--crop-size", type=int, default=48, help="LR side of a calibration crop (default 48)")
    p.add_argument(
        "--importance",
        choices=CRITERIA,
        default="energy",
        help="channel criterion: energy (activations, default), taylor (first-order, L1 to the HR crops), l1",
    )
    p.add_argument("--no-refit", action="store_true", help="skip the least-squares refit (to measure its effect)")
    p.add_argument("--ridge", type=float, default=0.1, help="refit ridge toward the teacher, relative (0.1)")
    p.add_argument("--img-residual", help="RLFNStudent only: the teacher's img_residual (not in its weights)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops and of the trainable form")
    p.add_argument(
        "--form",
        choices=FORMS,
        default="trainable",
        help="the student written: trainable (re-parameterisable branches, default) or deployed (plain convs, "
        "'deploy: true'; the same function, 4-5x faster to train on a CPU)",
    )
    p.add_argument("--out", required=True, help="the student checkpoint to write (.safetensors or .pth)")
    p.add_argument("--eval-lq", help="LR folder: print PSNR-Y before training (with --eval-gt)")
    p.add_argument("--eval-gt", help="HR folder paired with --eval-lq")
    return p


def psnr_y(net: torch.nn.Module, lq_dir: str, gt_dir: str, scale: int) -> float:
    """Mean PSNR-Y (border = scale, 8-bit outputs) of ``net`` on the image pairs of two folders."""
    import torch

    from kit.images import mod_crop, pair_folders, read_image
    from kit.metrics.psnr_ssim import psnr, quantize

    values = []
    with torch.no_grad():
        for _, lq_path, gt_path in pair_folders(lq_dir, gt_dir):
            lq = torch.from_numpy(read_image(lq_path).transpose(2, 0, 1).copy())[None]
            gt = torch.from_numpy(mod_crop(read_image(gt_path), scale)[0].transpose(2, 0, 1).copy())[None]
            values.append(float(psnr(quantize(net(lq)), quantize(gt), crop_border=scale, y_channel=True)[0]))
    return sum(values) / len(values)


def _data_folder(data: str | None) -> Path:
    if data is not None:
        return Path(data)
    from kit.data.bundled import DEFAULT_ROOT, build

    return build(DEFAULT_ROOT) / "train" / "HR"


def _report(result: PruneResult, args: argparse.Namespace) -> None:
    import yaml

    h, w = args.input_size
    print(f"teacher: {result.family} {result.teacher_arguments}")
    print(
        f"student: {result.params:,} params, {result.gmacs:.4f} GMACs (fvcore, 1x3x{h}x{w}), blocks kept "
        f"{[k + 1 for k in result.kept_blocks]}"
    )
    refit = [r for r in result.refit if r.refit]
    if refit:
        last = result.refit[-1]
        print(
            f"refit: {len(refit)} of {len(result.refit)} convs; last conv's error to the teacher "
            f"{last.error_before:.4f} -> {last.error_after:.4f} (relative squared)"
        )
    entry, _ = result.network_g(args.form)
    if args.form == "trainable":
        print(f"trainable form: loads strictly; max |network_g - pruned| = {result.max_difference:.2e}")
    else:
        print("deployed form: the pruned network's own weights; loads strictly")
    print("network_g:\n" + yaml.safe_dump(entry, sort_keys=False, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Run ``kit-prune``; returns the exit status (0, or 2 for a target or teacher it cannot use)."""
    args = build_parser().parse_args(argv)
    if (args.eval_lq is None) != (args.eval_gt is None):
        build_parser().error("--eval-lq and --eval-gt go together")
    kit.install()  # compat + registries, once the arguments are parsed
    from kit.checkpoint import CheckpointError, extract_state_dict, load_checkpoint, save_atomic
    from kit.prune import PruneSettings, PruneTarget, PruneTargetError, prune_teacher
    from kit.prune.calibration import calibration_pairs
    from kit.prune.procedure import teacher_arguments

    target = PruneTarget(args.width, args.blocks, args.max_params, args.max_gmacs, args.input_size)
    options = {"img_residual": args.img_residual} if args.img_residual else {}
    settings = PruneSettings(
        target, args.importance, not args.no_refit, args.ridge, seed=args.seed, teacher_options=options
    )
    try:
        state = extract_state_dict(load_checkpoint(args.teacher), args.param_key)
        scale = int(teacher_arguments(args.family, state, options)["scale"])
        crops, hr = calibration_pairs(_data_folder(args.data), scale, args.crops, args.crop_size, args.seed)
        result = prune_teacher(args.family, state, crops, settings, targets=hr)
    except (PruneTargetError, CheckpointError, ValueError) as err:
        print(f"kit-prune: error: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    _report(result, args)
    out = Path(args.out)
    _, state = result.network_g(args.form)
    save_atomic(state if out.suffix == ".safetensors" else {"params": state}, out)
    print(f"wrote {out} (path.pretrain_network_g)")
    if args.eval_lq:
        value = psnr_y(result.deployed, args.eval_lq, args.eval_gt, scale)
        print(f"PSNR-Y before training (border {scale}): {value:.3f} dB on {args.eval_gt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
