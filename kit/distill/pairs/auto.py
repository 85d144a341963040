"""Automatic feature pairs: one pair per student block, onto the teacher block at the same relative depth.

.. code-block:: yaml

    train:
      distill:
        output: {loss: {type: L1Loss, loss_weight: 1.0}}
        auto:                        # reserved name: the pairs below are made at start-up
          loss: {type: ChannelWiseDivergence, tau: 4.0, loss_weight: 1.0}
          every: block               # one pair per student block (default); last: one pair, last block -> last feature
          connector: {type: ConvConnector, norm: null, act: null}   # the default; channels filled in
          teacher_name: teacher      # with several teachers (default: the first)
        auto_1: null                 # explicit entries win: this drops the automatic pair of student block 1

At start-up one dry forward of each network (hooks on every module, no gradient) finds its *main blocks*: the
sibling modules of one class that each run once and keep their input's shape, the sequence of them that holds
the most parameters (SPAN's ``block_1`` … ``block_6``, RRDBNet's RRDBs, SwinIR's and HAT's ``layers.k``, RCAN's
residual groups, an RLFN student's ``body.k``). Student block ``i`` of ``n`` is paired with the teacher block at
the same relative depth, ``ceil((i + 1) · m / n)`` of ``m`` (1-based); the student's last block with the teacher's
*last feature before upsampling* (the last module, on the way from the blocks back to the network, whose output is
still at the blocks' resolution: SPAN's ``conv_cat``). Each connector's channels come from the same dry forward;
token sequences ``(N, L, C)`` count as ``(N, C, H, W)`` maps (:mod:`kit.distill.pairs.tokens`); a spatial mismatch
gets ``resize: bilinear``. The pairs are logged as ready-to-paste YAML (``kit-inspect -opt FILE --auto`` prints
them without training).

An explicit pair wins over an automatic one with the same name (``auto_<i>``; ``null`` drops it) or on the same
student module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml
from torch import nn

from kit.distill.pairs.recorder import _bare, describe_value, forward_with_hooks
from kit.distill.pairs.tokens import map_shape
from kit.distill.pairs.wiring import DistillOptionsError

__all__ = [
    "AUTO_KEY",
    "AutoSpec",
    "Layout",
    "auto_entries",
    "automatic_pairs",
    "dry_input_size",
    "find_layout",
    "merge_auto",
    "pairs_yaml",
    "parse_auto",
    "same_depth",
]

AUTO_KEY = "auto"
AUTO_KEYS = ("loss", "every", "connector", "teacher_name")
EVERY = ("block", "last")
DEFAULT_CONNECTOR = {"type": "ConvConnector", "norm": None, "act": None}


def same_depth(i: int, blocks: int, teacher_blocks: int) -> int:
    """The 1-based teacher block at the relative depth of student block ``i`` (0-based) of ``blocks``: ceil.

    SPAN's 6 blocks for a 4-block student: 2, 3, 5 (and 6 for the last, which :func:`auto_entries` pairs with
    the teacher's last feature instead).
    """
    return -(-(i + 1) * teacher_blocks // blocks)


@dataclass
class Call:
    """One call of one module in the dry forward."""

    spec: str  # "path" or "path#k"
    path: str
    order: int  # when it returned, in the whole forward
    calls: int = 1  # how often its module ran
    shape_in: Any = None
    shape_out: Any = None


@dataclass
class Layout:
    """What the dry forward found in one network: its main blocks and its last feature before upsampling.

    ``shapes`` maps each spec in ``blocks`` and ``last`` to the shape a pair compares, ``(N, C, H, W)`` (tokens
    read as maps).
    """

    blocks: list[str]
    block_type: str
    last: str
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def describe(self) -> str:
        shape = "×".join(str(s) for s in self.shapes[self.blocks[0]])
        span = ", ".join(self.blocks) if len(self.blocks) <= 3 else f"{self.blocks[0]} … {self.blocks[-1]}"
        return f"{len(self.blocks)} × {self.block_type} ({span}; {shape}); last feature before upsampling: {self.last}"


def trace(model: nn.Module, x: torch.Tensor) -> tuple[list[Call], Any]:
    """Every module call of one forward of ``x`` (no gradient), in the order the calls return, and the output shape."""
    calls: list[Call] = []
    counts: dict[str, int] = {}

    def hook(path: str):
        def record(_module: nn.Module, args: tuple, out: Any) -> None:
            k = counts.get(path, 0)
            counts[path] = k + 1
            calls.append(Call(f"{path}#{k}", path, len(calls), 0, describe_value(args), describe_value(out)))

        return record

    out = forward_with_hooks(model, x, [(m, hook(p)) for p, m in model.named_modules() if p])
    for call in calls:
        call.calls = counts[call.path]
        if call.calls == 1:
            call.spec = call.path
    return calls, describe_value(out)


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _blocks(model: nn.Module, calls: list[Call], hw: tuple[int, int]) -> list[Call]:
    """The main block sequence: sibling modules of one class, run once, shape kept; the group with most parameters."""
    modules = dict(model.named_modules())
    groups: dict[tuple, list[Call]] = {}
    for call in calls:
        shape = map_shape(call.shape_out, hw)
        if call.calls != 1 or call.shape_in != call.shape_out or isinstance(shape, str) or len(shape) != 4:
            continue
        module = modules[call.path]
        if not any(True for _ in module.parameters()):
            continue
        groups.setdefault((_parent(call.path), type(module).__name__, call.shape_out), []).append(call)
    best, best_score = [], None
    for group in groups.values():
        if len(group) < 2:
            continue
        params = sum(p.numel() for c in group for p in modules[c.path].parameters())
        score = (params, -group[0].path.count("."), len(group))
        if best_score is None or score > best_score:
            best, best_score = group, score
    return best


def _last_feature(calls: list[Call], blocks: list[Call], output: Any, hw: tuple[int, int]) -> Call:
    """The last call, among the blocks' ancestors and their children, still at the blocks' resolution."""
    last = blocks[-1]
    ancestors, path = {""}, last.path
    while path:
        path = _parent(path)
        ancestors.add(path)
    grid = map_shape(last.shape_out, hw)[2:]
    found = last
    for call in calls[last.order + 1 :]:
        if _parent(call.path) not in ancestors:
            continue
        shape = map_shape(call.shape_out, hw)
        if isinstance(shape, str) or len(shape) != 4:
            continue
        if shape[2:] != grid or call.shape_out == output:
            break  # the upsampler (or the image itself): what came before it is the last feature
        found = call
    return found


def find_layout(model: nn.Module, x: torch.Tensor, role: str = "network") -> Layout:
    """Find ``model``'s main blocks and its last feature before upsampling with one dry forward of ``x``.

    Raises:
        DistillOptionsError: no sequence of repeated blocks (one line, saying what to write by hand).
    """
    model = _bare(model)  # paths of the bare model, as the recorders read them (DDP looked through)
    was_training = model.training
    model.eval()
    try:
        calls, output = trace(model, x)
    finally:
        model.train(was_training)
    hw = tuple(x.shape[-2:])
    blocks = _blocks(model, calls, hw)
    if not blocks:
        raise DistillOptionsError(
            f"train:distill:auto: no sequence of repeated blocks in the {role} ({type(model).__name__}: no two sibling "
            "modules of one class that each keep their input's shape); write the pairs by hand as train:distill "
            "entries {student: PATH, teacher: PATH, connector: ..., loss: ...} (kit-inspect -opt FILE lists the paths)"
        )
    last = _last_feature(calls, blocks, output, hw)
    shapes = {c.spec: map_shape(c.shape_out, hw) for c in [*blocks, last]}
    block_type = type(dict(model.named_modules())[blocks[0].path]).__name__
    return Layout([c.spec for c in blocks], block_type, last.spec, shapes)


@dataclass
class AutoSpec:
    """``train.distill.auto`` as written (see the module docstring)."""

    loss: dict
    every: str = "block"
    connector: dict | None = field(default_factory=lambda: dict(DEFAULT_CONNECTOR))
    teacher_name: str | None = None


def parse_auto(entry: Any, teacher_names: list[str]) -> AutoSpec:
    """Validate ``train.distill.auto`` (keys, ``every``, ``teacher_name``)."""
    where = f"train:distill:{AUTO_KEY}"
    if not isinstance(entry, dict):
        raise DistillOptionsError(f"{where}: expected a mapping like {{loss: {{type: ChannelWiseDivergence}}}}")
    unknown = set(entry) - set(AUTO_KEYS)
    if unknown:
        raise DistillOptionsError(f"{where}: unknown key(s) {sorted(unknown)}; auto takes {', '.join(AUTO_KEYS)}")
    if not isinstance(entry.get("loss"), dict):
        raise DistillOptionsError(f"{where}: needs 'loss: {{type: ..., loss_weight: ...}}'")
    every = entry.get("every", "block")
    if every not in EVERY:
        raise DistillOptionsError(f"{where}:every must be one of {', '.join(EVERY)}, got {every!r}")
    teacher_name = entry.get("teacher_name") or teacher_names[0]
    if teacher_name not in teacher_names:
        names = ", ".join(teacher_names)
        raise DistillOptionsError(f"{where}: teacher_name '{teacher_name}' is not a teacher; teachers: {names}")
    connector = copy.deepcopy(entry["connector"]) if "connector" in entry else dict(DEFAULT_CONNECTOR)
    return AutoSpec(copy.deepcopy(entry["loss"]), every, connector, teacher_name)


def _connector(spec: AutoSpec, student: tuple[int, ...], teacher: tuple[int, ...]) -> dict | None:
    """The spec's connector with the channels (ConvConnector) and a resize (spatial mismatch) of this pair."""
    if spec.connector is None:
        return None
    conn = copy.deepcopy(spec.connector)
    if conn.get("type") == "ConvConnector":
        conn = {"type": "ConvConnector", "in_channels": student[1], "out_channels": teacher[1]} | {
            k: v for k, v in conn.items() if k not in ("type", "in_channels", "out_channels")
        }
    if student[2:] != teacher[2:] and conn.get("resize") is None:
        conn["resize"] = "bilinear"
    return conn


def auto_entries(spec: AutoSpec, student: Layout, teacher: Layout, several_teachers: bool = False) -> dict[str, dict]:
    """The automatic pairs as ``train.distill`` entries, ``{auto_<i>: {student, teacher, connector, loss}}``."""
    n, m = len(student.blocks), len(teacher.blocks)
    chosen = [(n - 1, teacher.last)] if spec.every == "last" else []
    if spec.every == "block":
        chosen = [(i, teacher.blocks[same_depth(i, n, m) - 1]) for i in range(n - 1)] + [(n - 1, teacher.last)]
    entries = {}
    for i, t_spec in chosen:
        s_spec = student.blocks[i]
        entry: dict[str, Any] = {"student": s_spec, "teacher": t_spec}
        if several_teachers:
            entry["teacher_name"] = spec.teacher_name
        connector = _connector(spec, student.shapes[s_spec], teacher.shapes[t_spec])
        if connector is not None:
            entry["connector"] = connector
        entry["loss"] = copy.deepcopy(spec.loss)
        entries[f"{AUTO_KEY}_{i}"] = entry
    return entries


def merge_auto(distill: dict, entries: dict[str, dict]) -> dict:
    """``distill`` with its ``auto`` entry replaced by ``entries``, less those an explicit entry overrides.

    An explicit entry wins when it has the same name (``null`` included: the pair is dropped) or records the same
    student module.
    """
    taken = {e.get("student") for name, e in distill.items() if name != AUTO_KEY and isinstance(e, dict)}
    merged: dict = {}
    for name, entry in distill.items():
        if name != AUTO_KEY:
            merged[name] = entry
            continue
        for auto_name, auto_entry in entries.items():
            if auto_name not in distill and auto_entry["student"] not in taken:
                merged[auto_name] = auto_entry
    return merged


def pairs_yaml(entries: dict[str, dict]) -> str:
    """``entries`` as a ready-to-paste ``train: distill:`` block (connector and loss on one line each)."""

    def flow(value: Any) -> str:
        if not isinstance(value, dict):
            return str(value)
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000).strip()

    lines = ["train:", "  distill:"]
    for name, entry in entries.items():
        lines.append(f"    {name}:")
        lines += [f"      {key}: {flow(value)}" for key, value in entry.items()]
    return "\n".join(lines)


def dry_input_size(opt: dict) -> int:
    """The side of the dry forward's LR input: the training crop (``lq_size``, else ``gt_size // scale``)."""
    train = opt.get("datasets", {}).get("train", {})
    scale = int(opt.get("scale", 1))
    return int(train["lq_size"]) if "lq_size" in train else max(int(train.get("gt_size", 64)) // scale, 8)


def automatic_pairs(
    spec: AutoSpec, student: nn.Module, teacher: nn.Module, x: torch.Tensor, several_teachers: bool = False
) -> tuple[dict[str, dict], Layout, Layout]:
    """Both networks' layouts from one dry forward of ``x`` each, and the pairs :func:`auto_entries` makes of them."""
    s_layout = find_layout(student, x, "student")
    t_layout = find_layout(teacher, x, f"teacher '{spec.teacher_name}'" if several_teachers else "teacher")
    return auto_entries(spec, s_layout, t_layout, several_teachers), s_layout, t_layout
