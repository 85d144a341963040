"""``kit-inspect``: list every module path of a student and teacher with its output shape, to pick feature pairs.

Usage::

    kit-inspect -opt options/distill.yml                       # student (network_g) and teacher(s)
    kit-inspect --checkpoint teacher.safetensors               # any network spandrel detects
    kit-inspect -opt options/distill.yml --pair body.7 body.22 # is a connector needed? prints the YAML
    kit-inspect -opt options/distill_pretrained.yml --auto     # the automatic pairs (train.distill.auto) as YAML
    kit-inspect -opt options/distill.yml --filter body --depth 2 --input-size 48x48

One sample input (``1×C×H×W``, zeros) runs through each network in ``eval()`` with a forward hook on every
module. A module that runs several times in one forward (BasicSR's RRDBNet reuses one ``lrelu``) is listed
once per call: ``path#k`` (0-based) selects a call, as in ``train.distill.<pair>.student/teacher``. A tuple
output is shown by its first tensor, which is what the recorder records. If the teacher's checkpoint does not
exist yet, the declared architecture is built with random weights (shapes do not depend on weights).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

CALL_SEP = "#"
_MAX_PATH_COL = 56


@dataclass
class Network:
    """One network to inspect: its role (``student``/``teacher 'name'``), module and a one-line description."""

    role: str
    net: nn.Module
    in_channels: int
    note: str
    teacher_name: str | None = None
    calls: dict[str, list[tuple[int, ...] | str]] = field(default_factory=dict)
    output: tuple[int, ...] | str = ""


def fmt_shape(shape: tuple[int, ...] | str) -> str:
    """``(1, 16, 64, 64)`` → ``1×16×64×64``."""
    return shape if isinstance(shape, str) else "×".join(str(s) for s in shape)


def _channels(shape: tuple[int, ...] | str) -> str:
    if isinstance(shape, str):
        return "-"
    if len(shape) == 4:
        return str(shape[1])
    if len(shape) == 3:
        return f"{shape[-1]} (tokens)"
    return "-"


def format_layers(calls: dict[str, list[tuple[int, ...] | str]], filter_: str | None, depth: int | None) -> list[str]:
    """The module table: one line per module (per call for modules that run several times)."""
    rows: list[tuple[str, str, str, str]] = []
    for path, shapes in calls.items():
        if depth is not None and path.count(".") + 1 > depth:
            continue
        if filter_ and filter_ not in path:
            continue
        if not shapes:
            rows.append((path, "-", "-", "not called"))
        elif len(shapes) == 1:
            rows.append((path, fmt_shape(shapes[0]), _channels(shapes[0]), ""))
        else:
            n = len(shapes)
            pick = f"called {n}×: pick one with {path}{CALL_SEP}k, k = 0..{n - 1}"
            rows.append((path, "-", "-", pick))
            rows += [(f"  {path}{CALL_SEP}{k}", fmt_shape(s), _channels(s), "") for k, s in enumerate(shapes)]
    if not rows:
        return ["  (no module matches the filter/depth)"]
    width = min(max(len(r[0]) for r in rows), _MAX_PATH_COL)
    swidth = max(len("output"), *(len(r[1]) for r in rows))
    lines = [f"  {'path':<{width}}  {'output':<{swidth}}  C"]
    for path, shape, ch, note in rows:
        lines.append(f"  {path:<{width}}  {shape:<{swidth}}  {ch}" + (f"   {note}" if note else ""))
    return lines


def lookup(calls: dict[str, list[tuple[int, ...] | str]], spec: str, role: str) -> tuple[int, ...] | str:
    """Shape of ``path`` or ``path#k`` in a :func:`~kit.distill.pairs.recorder.record_shapes` record (or why not)."""
    from kit.distill.pairs.recorder import parse_spec

    path, index = parse_spec(spec)
    if path not in calls:
        close = difflib.get_close_matches(path, list(calls), n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else "run kit-inspect without --pair to list them"
        raise ValueError(f"{role} path '{path}' not found; {hint}")
    shapes = calls[path]
    if not shapes:
        raise ValueError(f"{role} path '{path}' did not run in the forward; pick a module that forward() calls")
    if index is None:
        if len(shapes) > 1:
            raise ValueError(
                f"{role} path '{path}' runs {len(shapes)} times; write '{path}#k' with k in 0..{len(shapes) - 1}"
            )
        return shapes[0]
    if index >= len(shapes):
        raise ValueError(f"{role} spec '{spec}': '{path}' runs {len(shapes)} time(s); use k in 0..{len(shapes) - 1}")
    return shapes[index]


def pair_advice(student: tuple[int, ...] | str, teacher: tuple[int, ...] | str) -> tuple[list[str], dict | None]:
    """What a feature pair needs: reasons (one line each) and the connector options (``None``: not needed).

    Example: ``(1, 48, 16, 16)`` vs ``(1, 64, 32, 32)`` → channels 48→64 and spatial 16×16 vs 32×32:
    ``{type: ConvConnector, in_channels: 48, out_channels: 64, norm: null, act: null, resize: bilinear}``.
    The connector is a plain 1×1 convolution (no BatchNorm, no activation): the shipped CWD pair uses that, and
    a ReLU would make the negative half of a pre-activation teacher feature unreachable.
    """
    for role, shape in (("student", student), ("teacher", teacher)):
        if isinstance(shape, str) or len(shape) != 4:
            raise ValueError(
                f"{role} feature is {fmt_shape(shape)}; feature pairs need 4-D maps (N, C, H, W): "
                "pick a convolution, block or token layer output"
            )
    (cs, hs, ws), (ct, ht, wt) = student[1:], teacher[1:]
    reasons: list[str] = []
    conn: dict[str, Any] = {}
    if cs != ct:
        reasons.append(f"channels {cs}→{ct}: ConvConnector in_channels {cs}, out_channels {ct}")
        conn = {"type": "ConvConnector", "in_channels": cs, "out_channels": ct, "norm": None, "act": None}
    if (hs, ws) != (ht, wt):
        reasons.append(f"spatial {hs}×{ws} vs {ht}×{wt}: set resize: bilinear in the connector, or pick another layer")
        conn = conn or {"type": "IdentityConnector"}
        conn["resize"] = "bilinear"
    if not reasons:
        reasons.append("shapes match: connector optional")
    return reasons, (conn or None)


def pair_snippet(
    student: str, teacher: str, connector: dict | None, name: str = "mid", teacher_name: str | None = None
) -> str:
    """A ready-to-paste ``train.distill`` entry for one pair.

    The loss is channel-wise distillation (CWD) with pair balancing: that is what ``python -m bench recipes``
    measured to help on the bundled photos, while a FitNets L2 pair did not (bench/results/recipes_cpu.md).
    """

    def flow(d: dict) -> str:
        return "{" + ", ".join(f"{k}: {'null' if v is None else v}" for k, v in d.items()) + "}"

    lines = ["train:", "  distill:", f"    {name}:", f"      student: {student}"]
    lines.append(f"      teacher: {teacher}")
    if teacher_name:
        lines.append(f"      teacher_name: {teacher_name}")
    if connector:
        lines.append(f"      connector: {flow(connector)}")
    lines.append("      loss: {type: ChannelWiseDivergence, tau: 4.0, loss_weight: 1.0}  # FitNets: {type: L2Loss}")
    lines.append("  recipes:")
    lines.append("    balance: {ratio: 0.1, warmup_iter: 20}  # keeps the pair under 10% of the pixel loss")
    return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    """``64x48``, ``64×48`` or ``64`` → ``(64, 48)``."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[x×X*]\s*(\d+))?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"--input-size '{text}' must look like 64x64 (H x W)")
    h = int(m[1])
    return h, int(m[2] or h)


def _both_sizes(student: nn.Module, in_channels: int) -> str:
    """The training form's parameters and the deployed form's (branches fused) with fvcore MACs, as export.py."""
    from kit.archs.deploy import count_params, deploy_network
    from kit.export.budget import measure_budget

    budget = measure_budget(deploy_network(student).float(), (1, in_channels, 256, 256))
    return (
        f"{count_params(student):,d} params as trained; deployed (branches fused, what export.py counts and "
        f"ships): {budget.params:,d} params, {budget.gmacs:.2f} GMACs at 1x{in_channels}x256x256 (fvcore)"
    )


def _networks(args: argparse.Namespace) -> list[Network]:
    from kit.options import load_options
    from kit.registry import build_network
    from kit.teachers import declared_in_channels, load_teacher_with_info, teacher_entries
    from kit.teachers.auto import AUTO_TYPE

    nets: list[Network] = []
    if args.opt:
        opt = load_options(args.opt)
        if "network_g" not in opt:
            raise ValueError(f"{args.opt} has no network_g (the student)")
        student = build_network(dict(opt["network_g"]), "network_g").eval()
        note = f"{opt['network_g']['type']}, {_both_sizes(student, declared_in_channels(opt['network_g']))}"
        nets.append(Network("student", student, declared_in_channels(opt["network_g"]), note))
        entries = {} if args.checkpoint else teacher_entries(opt)
        for tname, entry in entries.items():
            role = "teacher" if len(entries) == 1 else f"teacher '{tname}'"
            ckpt = entry["checkpoint"]
            if ckpt and Path(ckpt).is_file():
                net, info = load_teacher_with_info(entry["network"], ckpt, None, entry["param_key"], entry["strict"])
                note = info.describe()
                if opt.get("scale") is not None and info.scale not in (None, opt["scale"]):
                    note += f"  WARNING: options scale is {opt['scale']}"
            elif entry["network"]["type"] == AUTO_TYPE:
                where = ckpt or "no path set"
                print(f"{role}: {AUTO_TYPE} needs its checkpoint to detect the architecture ({where}); skipped")
                continue
            else:
                net, info = load_teacher_with_info(entry["network"], None)
                missing = f"random weights: checkpoint {ckpt or '(none set)'} not found (shapes are the same)"
                note = info.describe().replace("from random weights", missing)
            nets.append(Network(role, net, info.in_channels, note, teacher_name=tname if len(entries) > 1 else None))
    if args.checkpoint:
        net, info = load_teacher_with_info({"type": AUTO_TYPE}, args.checkpoint)
        nets.append(Network("teacher" if args.opt else "network", net, info.in_channels, info.describe()))
    return nets


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``kit-inspect``."""
    p = argparse.ArgumentParser(
        prog="kit-inspect",
        description="List module paths with output shapes of the student and teacher, and check feature pairs.",
        epilog="examples:\n"
        + "\n".join(line.strip() for line in __doc__.split("Usage::")[1].split("\n\n")[1].splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-opt", help="options YAML: network_g is the student, network_t/teachers the teacher(s)")
    p.add_argument("--checkpoint", help="a checkpoint to detect with spandrel (replaces the options' teachers)")
    p.add_argument(
        "--input-size", type=parse_size, help="sample LR input H x W (default 64x64; with --auto the training crop)"
    )
    p.add_argument("--filter", help="only paths containing this text")
    p.add_argument("--depth", type=int, help="only paths with at most this many dotted parts")
    p.add_argument("--pair", nargs=2, metavar=("STUDENT_PATH", "TEACHER_PATH"), help="check one feature pair")
    p.add_argument("--teacher", help="with several teachers: the one --pair uses (default: the first)")
    p.add_argument("--name", default="mid", help="pair name in the printed YAML (default mid)")
    p.add_argument(
        "--auto",
        action="store_true",
        help="the main blocks found in each network and, with -opt, the pairs train.distill.auto makes (YAML)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the inspector; returns the exit status (0 ok, 2 bad arguments or options)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # before torch is imported: --help answers at once
    import kit

    kit.install()  # adapts BasicSR, registers the kit's architectures
    import torch

    from kit.checkpoint import CheckpointError
    from kit.distill.pairs.recorder import record_shapes
    from kit.options import OptionsError
    from kit.teachers import TeacherError

    if not args.opt and not args.checkpoint:
        parser.error("give -opt options.yml and/or --checkpoint file.pth")
    if args.pair and not args.opt:
        parser.error("--pair needs -opt (the student comes from network_g)")
    if args.input_size is None and not args.auto:
        args.input_size = (64, 64)
    try:
        nets = _networks(args)
        if args.auto:
            return _report_auto(args, nets)
        h, w = args.input_size
        for n in nets:
            x = torch.zeros(1, n.in_channels, h, w)
            n.calls, n.output = record_shapes(n.net, x)
            if not args.pair:
                print(f"{n.role}: {n.note}")
                print(f"  input {fmt_shape(tuple(x.shape))} → output {fmt_shape(n.output)}")
                print("\n".join(format_layers(n.calls, args.filter, args.depth)))
                print()
        if not args.pair:
            print(f"Modules called several times list each call; select one with path{CALL_SEP}k (0-based).")
            return 0
        return _report_pair(args, nets)
    except (OptionsError, TeacherError, CheckpointError, ValueError, KeyError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2


_DEFAULT_AUTO = {"loss": {"type": "ChannelWiseDivergence", "tau": 4.0, "loss_weight": 1.0}}


def _report_auto(args: argparse.Namespace, nets: list[Network]) -> int:
    """``--auto``: each network's main blocks and last feature; with ``-opt``, the automatic pairs as YAML.

    The pairs are those ``train.distill.auto`` makes at start-up (its options, else a CWD pair at every block), sized
    by a dry forward of the training crop (``--input-size`` to choose another).
    """
    import torch

    from kit.distill.pairs.auto import automatic_pairs, dry_input_size, find_layout, pairs_yaml, parse_auto
    from kit.options import load_options

    opt = load_options(args.opt) if args.opt else {}
    h, w = args.input_size or ((dry_input_size(opt),) * 2 if args.opt else (64, 64))
    print(f"input 1×{nets[0].in_channels}×{h}×{w}" + ("" if args.input_size else " (the training crop)"))
    if not args.opt:
        for n in nets:
            print(f"{n.role}: {n.note}")
            print(f"  main blocks: {find_layout(n.net, torch.zeros(1, n.in_channels, h, w), n.role).describe()}")
        return 0
    teachers = nets[1:]
    if not teachers:
        raise ValueError("--auto needs a teacher: add network_t/teachers to the options or give --checkpoint")
    names = [t.teacher_name or "teacher" for t in teachers]
    auto = dict((opt.get("train", {}).get("distill") or {}).get("auto") or _DEFAULT_AUTO)
    if args.teacher:
        auto["teacher_name"] = args.teacher
    spec = parse_auto(auto, names)
    teacher = teachers[names.index(spec.teacher_name)]
    x = torch.zeros(1, nets[0].in_channels, h, w)
    entries, s_layout, t_layout = automatic_pairs(spec, nets[0].net, teacher.net, x, len(teachers) > 1)
    print(f"student: {s_layout.describe()}")
    print(f"{teacher.role}: {t_layout.describe()}")
    print(f"# {len(entries)} pair(s), every {spec.every}: what train.distill.auto makes at start-up; to write them")
    print("# by hand, paste them under train: distill: in place of auto (an explicit entry wins over auto's).")
    print(pairs_yaml(entries))
    return 0


def _report_pair(args: argparse.Namespace, nets: list[Network]) -> int:
    student = nets[0]
    teachers = nets[1:]
    if not teachers:
        raise ValueError("--pair needs a teacher: add network_t/teachers to the options or give --checkpoint")
    if args.teacher:
        chosen = [t for t in teachers if t.teacher_name == args.teacher]
        if not chosen:
            names = ", ".join(t.teacher_name or "teacher" for t in teachers)
            raise ValueError(f"--teacher '{args.teacher}' is not one of the options' teachers: {names}")
        teacher = chosen[0]
    else:
        teacher = teachers[0]
    s_spec, t_spec = args.pair
    from kit.distill.pairs.tokens import map_shape  # token layers (N, L, C) pair as the maps (N, C, H, W) they hold

    s_shape = map_shape(lookup(student.calls, s_spec, "student"), args.input_size)
    t_shape = map_shape(lookup(teacher.calls, t_spec, teacher.role), args.input_size)
    reasons, connector = pair_advice(s_shape, t_shape)
    print(f"input 1×{student.in_channels}×{args.input_size[0]}×{args.input_size[1]}")
    print(f"student {s_spec}: {fmt_shape(s_shape)}")
    print(f"{teacher.role} {t_spec}: {fmt_shape(t_shape)}")
    for line in reasons:
        print(f"- {line}")
    print()
    print(pair_snippet(s_spec, t_spec, connector, args.name, teacher.teacher_name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
