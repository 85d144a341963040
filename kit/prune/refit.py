"""Refit a pruned network so that it computes nearly the teacher's function: least squares, one conv at a time.

He, Zhang and Sun, "Channel Pruning for Accelerating Very Deep Neural Networks", ICCV 2017; Luo et al.,
"ThiNet", ICCV 2017. In forward order, each conv's weights and bias are the least-squares solution mapping *the
pruned network's own input* to that conv (after the convs before it were refit) onto *the teacher's output* of the
same conv at the channels kept, on calibration crops, with a ridge penalty toward the teacher's own weights at
those channels (what the crops do not excite stays as the teacher had it). Errors made upstream are thus
corrected downstream, not compounded. A conv whose input is still exactly the teacher's (the first one) keeps its
weights, and so does one whose refit would not lower its error (the penalty can outweigh a small change).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RefitReport", "refit_network"]


@dataclass(frozen=True)
class RefitReport:
    """One conv's refit: its name, whether it was refit, and the relative error before and after."""

    name: str
    refit: bool
    error_before: float
    error_after: float


def _columns(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``(N·L, I·kh·kw + 1)``: each output position's receptive field (float64), and a 1 for the bias."""
    cols = F.unfold(x.double(), conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    cols = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return torch.cat([cols, torch.ones(cols.shape[0], 1, dtype=cols.dtype)], dim=1)


def _rows(y: Tensor) -> Tensor:
    """``(N·L, O)``: one row per output position (float64)."""
    return y.double().permute(0, 2, 3, 1).reshape(-1, y.shape[1])


def _flat(conv: nn.Conv2d) -> Tensor:
    """``(I·kh·kw + 1, O)``: the conv's weights and bias as the matrix :func:`_columns` multiplies."""
    return torch.cat([conv.weight.reshape(conv.out_channels, -1), conv.bias[:, None]], dim=1).double().T


@torch.no_grad()
def _teacher_outputs(teacher: nn.Module, crops: Tensor, plan: Mapping[str, _Plan], batch: int) -> None:
    """Fill each plan's ``target`` (the teacher conv's kept outputs) and ``reference`` (its input, if asked)."""
    hooks = []
    for item in plan.values():

        def hook(_: nn.Module, args: tuple[Tensor, ...], out: Tensor, item: _Plan = item) -> None:
            item.target.append(out[:, item.kept].clone())
            if item.reference is not None:
                item.reference.append(args[0].clone())

        hooks.append(teacher.get_submodule(item.source).register_forward_hook(hook))
    try:
        for start in range(0, crops.shape[0], batch):
            teacher(crops[start : start + batch])
    finally:
        for h in hooks:
            h.remove()


def _solve(gram: Tensor, cross: Tensor, prior: Tensor, ridge: float) -> Tensor:
    """Minimise ``‖X·w − y‖² + λ‖w − prior‖²`` from ``gram = XᵀX``, ``cross = Xᵀy``; λ = ``ridge`` × mean diagonal.

    The penalty pulls the weights toward ``prior`` (the teacher's own, at the kept channels), not toward zero, so
    directions the calibration crops do not excite keep the teacher's weights; the bias is not penalised.
    """
    d = gram.shape[0] - 1
    penalty = torch.zeros_like(gram)
    penalty[:d, :d] = torch.eye(d, dtype=gram.dtype) * ridge * gram.diagonal()[:d].mean().clamp_min(1e-12)
    return torch.linalg.solve(gram + penalty, cross + penalty @ prior)


def _refit_conv(conv: nn.Conv2d, item: _Plan, x: Tensor, ridge: float, batch: int) -> RefitReport:
    """Refit ``conv`` in place from its input ``x`` (all crops) to the teacher's outputs; report the error."""
    target = torch.cat(item.target)
    current = _flat(conv)
    gram = cross = 0
    before = energy = 0.0
    for start in range(0, x.shape[0], batch):
        cols, rows = _columns(conv, x[start : start + batch]), _rows(target[start : start + batch])
        gram, cross = gram + cols.T @ cols, cross + cols.T @ rows
        before += float((cols @ current - rows).square().sum())
        energy += float(rows.square().sum())
    energy = max(energy, 1e-12)
    if item.reference is not None and torch.equal(torch.cat(item.reference), x):
        return RefitReport(item.name, False, before / energy, before / energy)
    prior = current.clone()
    prior[-1] = 0  # the bias is free
    solution = _solve(gram, cross, prior, ridge)  # (I·kh·kw + 1, O)
    after = float((solution.T @ gram @ solution).trace() - 2 * (solution * cross).sum()) + energy
    if after >= before:  # the penalty can cost more than it gains where the cut changed little
        return RefitReport(item.name, False, before / energy, before / energy)
    conv.weight.copy_(solution[:-1].T.reshape(conv.weight.shape).to(conv.weight.dtype))
    conv.bias.copy_(solution[-1].to(conv.bias.dtype))
    return RefitReport(item.name, True, before / energy, max(after, 0.0) / energy)


@dataclass
class _Plan:
    """One conv to refit: its name, the teacher conv it stands for, the kept channels, the teacher's tensors."""

    name: str
    source: str
    kept: list[int]
    target: list[Tensor] = field(default_factory=list)
    reference: list[Tensor] | None = None


@torch.no_grad()
def refit_network(
    pruned: nn.Module,
    teacher: nn.Module,
    crops: Tensor,
    kept: Mapping[str, Sequence[int]],
    sources: Mapping[str, str] | None = None,
    ridge: float = 0.1,
    batch: int = 8,
) -> list[RefitReport]:
    """Refit every conv of ``pruned`` (in place, in forward order) to the teacher's outputs on ``crops``.

    One teacher pass stores each conv's outputs at the kept channels; one pass of ``pruned`` over all crops refits
    each conv in a hook just before it runs, so the convs after it see its refit output.

    Args:
        pruned: The pruned network (eval mode, plain convs with biases).
        teacher: The unpruned network (eval mode), same conv names unless ``sources`` maps them.
        crops: Calibration inputs ``(N, C, h, w)``.
        kept: For each conv of ``pruned``, the teacher's output channels it kept; absent: all of them.
        sources: For each conv of ``pruned``, the teacher conv it stands for (after dropped blocks); absent: itself.
        ridge: Penalty toward the teacher's weights, relative to the mean diagonal of the inputs' Gram matrix.
        batch: Crops per teacher pass and per Gram-matrix chunk.

    Returns:
        One :class:`RefitReport` per conv, in forward order (relative squared error to the teacher's output).
    """
    convs = {n: m for n, m in pruned.named_modules() if isinstance(m, nn.Conv2d)}
    odd = [n for n, m in convs.items() if m.bias is None or m.groups != 1 or m.padding_mode != "zeros"]
    if odd:
        raise ValueError(f"refit needs plain convs with a bias, zero padding and groups=1; not so: {', '.join(odd)}")
    plan = {}
    for name, conv in convs.items():
        source = (sources or {}).get(name, name)
        out_channels = teacher.get_submodule(source).out_channels
        same_input = conv.in_channels == teacher.get_submodule(source).in_channels
        plan[name] = _Plan(
            name, source, list(kept.get(name, range(out_channels))), reference=[] if same_input else None
        )
    _teacher_outputs(teacher, crops, plan, batch)
    reports = []

    def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        reports.append(_refit_conv(module, plan[names[module]], args[0], ridge, batch))

    names = {m: n for n, m in convs.items()}
    hooks = [m.register_forward_pre_hook(hook) for m in convs.values()]
    try:
        pruned(crops)
    finally:
        for h in hooks:
            h.remove()
    return reports
