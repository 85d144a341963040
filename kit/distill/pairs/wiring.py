"""The wiring of ``train.distill``: one entry = one pair (student path, teacher path, connector, loss).

.. code-block:: yaml

    train:
      distill:
        output:                      # reserved name: student image vs teacher image (output-KD)
          loss: {type: L1Loss, loss_weight: 1.0}
          teachers: mean             # several teachers: 'mean' (weighted mean image) or 'each'
        mid:                         # any other name: a feature pair
          student: body.3            # module path in named_modules(); "path#k" = its k-th call
          teacher: body.2
          teacher_name: teacher      # which teacher (default: the only/first one)
          source: output             # or input (the module's first argument)
          connector: {type: ConvConnector, in_channels: 48, out_channels: 64, norm: null, act: null}
          loss: {type: L2Loss, normalize: true, loss_weight: 1.0}

An entry set to null is off, so a pair of a shipped file can be dropped from the command line:
``--force_yml train:distill:cwd_0=null``.

mmrazor spreads one pair over recorders, connectors, losses and loss_forward_mappings that point at each
other by string; here everything a pair needs sits in its entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kit.distill.pairs.connectors import build_connector
from kit.schema import short

OUTPUT_KEY = "output"
PAIR_KEYS = ("student", "teacher", "teacher_name", "source", "connector", "loss")


class DistillOptionsError(ValueError):
    """A ``train.distill`` entry that cannot be wired."""


@dataclass
class PairSpec:
    """One feature pair as written in the options."""

    name: str
    student: str
    teacher: str
    teacher_name: str
    loss: dict
    connector: dict | None = None
    source: str = "output"


@dataclass
class OutputSpec:
    """Output distillation: student image vs the teachers' image(s)."""

    loss: dict
    teachers: str = "mean"


def parse_distill(distill: dict | None, teacher_names: list[str]) -> tuple[OutputSpec | None, list[PairSpec]]:
    """Validate ``train.distill`` and return the output spec (or None) and the feature pairs."""
    output, pairs = None, []
    for name, entry in (distill or {}).items():
        where = f"train:distill:{name}"
        if entry is None:  # switched off, e.g. --force_yml train:distill:cwd=null (as a recipe set to null)
            continue
        if not isinstance(entry, dict):
            raise DistillOptionsError(f"{where}: expected a mapping, got {short(entry)}")
        if "loss" not in entry:
            raise DistillOptionsError(f"{where}: needs 'loss: {{type: ..., loss_weight: ...}}'")
        if name == OUTPUT_KEY:
            unknown = set(entry) - {"loss", "teachers"}
            if unknown:
                raise DistillOptionsError(f"{where}: unknown key(s) {sorted(unknown)}; output takes loss, teachers")
            mode = entry.get("teachers", "mean")
            if mode not in ("mean", "each"):
                raise DistillOptionsError(f"{where}: teachers must be 'mean' or 'each', got {mode!r}")
            output = OutputSpec(loss=entry["loss"], teachers=mode)
            continue
        unknown = set(entry) - set(PAIR_KEYS)
        if unknown:
            raise DistillOptionsError(f"{where}: unknown key(s) {sorted(unknown)}; a pair takes {', '.join(PAIR_KEYS)}")
        for key in ("student", "teacher"):
            if not isinstance(entry.get(key), str):
                raise DistillOptionsError(f"{where}: needs '{key}: <module path>' (see kit-inspect for the paths)")
        teacher_name = entry.get("teacher_name") or teacher_names[0]
        if teacher_name not in teacher_names:
            raise DistillOptionsError(
                f"{where}: teacher_name '{teacher_name}' is not a teacher; teachers: {', '.join(teacher_names)}"
            )
        source = entry.get("source", "output")
        if source not in ("output", "input"):
            raise DistillOptionsError(f"{where}: source must be 'output' or 'input', got {source!r}")
        pairs.append(
            PairSpec(
                name, entry["student"], entry["teacher"], teacher_name, entry["loss"], entry.get("connector"), source
            )
        )
    return output, pairs


class ConnectorBank(nn.Module):
    """Every pair's connector in one module, so DDP wraps (and syncs) them together.

    Pairs without a connector pass their student feature through unchanged.
    """

    def __init__(self, pairs: list[PairSpec]) -> None:
        super().__init__()
        self.connectors = nn.ModuleDict()
        for pair in pairs:
            try:
                connector = build_connector(pair.connector, f"train:distill:{pair.name}:connector")
            except ValueError as err:
                raise DistillOptionsError(f"train:distill:{pair.name}:connector: {err}") from err
            if connector is not None:
                self.connectors[pair.name] = connector

    def forward(self, feats: dict[str, torch.Tensor], sizes: dict[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
        out = {}
        for name, feat in feats.items():
            out[name] = self.connectors[name](feat, sizes.get(name)) if name in self.connectors else feat
        return out


def mismatch_message(pair: PairSpec, student: torch.Tensor, teacher: torch.Tensor, connected: bool) -> str | None:
    """None when shapes agree; else a message with both shapes and the fix."""
    s, t = tuple(student.shape), tuple(teacher.shape)
    if s == t:
        return None
    head = (
        f"train:distill:{pair.name}: student '{pair.student}' gives {s}"
        f"{' after its connector' if connected else ''}, teacher '{pair.teacher}' gives {t}. "
    )
    if len(s) != len(t) or len(s) != 4:
        return head + "Feature pairs need (N, C, H, W) tensors of the same shape; pick other layers (kit-inspect)."
    fixes = []
    if s[1] != t[1]:
        if connected:
            fixes.append(f"channels differ: set the connector's out_channels to {t[1]}")
        else:
            fixes.append(
                f"channels differ: add connector: {{type: ConvConnector, in_channels: {s[1]}, out_channels: {t[1]}}}"
            )
    if s[2:] != t[2:]:
        fixes.append(
            f"spatial sizes differ ({s[2]}x{s[3]} vs {t[2]}x{t[3]}): give the connector resize: bilinear, "
            "or pick layers at the same resolution (kit-inspect --pair shows both)"
        )
    return head + "; ".join(fixes)


def dry_check(pairs: list[PairSpec], connected: dict, teacher_feats: dict, bank: ConnectorBank) -> None:
    """Raise one error listing every pair whose shapes disagree after its connector."""
    problems = []
    for pair in pairs:
        msg = mismatch_message(pair, connected[pair.name], teacher_feats[pair.name], pair.name in bank.connectors)
        if msg:
            problems.append(msg)
    if problems:
        raise DistillOptionsError(
            "feature pairs do not fit (checked before the first step):\n  " + "\n  ".join(problems)
        )
