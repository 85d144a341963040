"""``evaluate``: PSNR/SSIM (optionally LPIPS) of several models on the same image pairs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kit.evaluation.result import EvalResult, EvalRow
from kit.evaluation.sources import ImagePair
from kit.metrics.psnr_ssim import psnr, quantize, ssim

Model = Callable[[Tensor], Tensor]


def _to_tensor(img: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().unsqueeze(0)


@dataclass(frozen=True)
class EvalSettings:
    """How :func:`evaluate` runs the models and what it measures beyond PSNR/SSIM.

    Attributes:
        tile: Run the models on LR tiles of this size (:func:`kit.infer.tiled.tiled_forward`); ``None``: whole.
        tile_overlap: LR pixels shared by neighbouring tiles.
        lpips: Optional ``(img01, ref01) -> (N,)`` distance, e.g. :class:`kit.metrics.LPIPSMetric`.
        lpips_name: Name of the LPIPS backbone for reports.
        compare_dir: Write ``<image>.png`` comparison pictures (LQ / models / GT crops with PSNR) here.
        reference_model: The label of a model whose output is a reference too (e.g. ``"teacher"``: the others are
            measured *to the teacher*, and the teacher to the GT where there is one).
        progress: Called after each image with ``(done, total or None, seconds so far)`` (a progress line with an
            ETA where no terminal shows the bar).
    """

    tile: int | None = None
    tile_overlap: int = 16
    lpips: Callable[[Tensor, Tensor], Tensor] | None = None
    lpips_name: str | None = None
    compare_dir: str | os.PathLike | None = None
    reference_model: str | None = None
    progress: Callable[[int, int | None, float], None] | None = None


@dataclass(frozen=True)
class _Measure:
    """What one row measures: the metric's settings and the optional LPIPS distance."""

    scale: int
    y_channel: bool
    border: int
    lpips: Callable[[Tensor, Tensor], Tensor] | None


def evaluate(
    models: Mapping[str, Model],
    pairs: Iterable[ImagePair],
    scale: int,
    y_channel: bool = True,
    crop_border: int | None = None,
    settings: EvalSettings | None = None,
) -> EvalResult:
    """PSNR/SSIM (optionally LPIPS) of each model on each image pair.

    Args:
        models: Label → callable mapping ``(1, 3, h, w)`` RGB [0, 1] to ``(1, 3, h·scale, w·scale)`` (see
            :mod:`kit.runners`).
        pairs: Image pairs, e.g. :func:`folder_pairs`; a :class:`PairSource` also names the data in the report.
        scale: Output/input size ratio of every model.
        y_channel: Measure on Y (BT.601) instead of RGB.
        crop_border: Pixels dropped on each side; ``None``: ``scale``.
        settings: Tiling, LPIPS, comparison pictures, a model as reference (:class:`EvalSettings`).

    Every model is measured against every reference of a pair: its GT (when it has one), its ``refs`` (e.g.
    teacher images read from a folder) and ``settings.reference_model``'s output; each row names its reference.

    Returns:
        An :class:`EvalResult`.

    Raises:
        ValueError: no models or no images, a pair without any reference, or an output that does not have
            the reference's size.
    """
    if not models:
        raise ValueError("evaluate: no models to evaluate")
    s = settings or EvalSettings()
    measure = _Measure(scale, y_channel, scale if crop_border is None else int(crop_border), s.lpips)
    rows, notes = _measure_all(models, pairs, scale, s, measure)
    if not rows:
        raise ValueError("evaluate: no images to evaluate")
    return EvalResult(
        rows=rows,
        models=list(models),
        scale=scale,
        y_channel=y_channel,
        crop_border=measure.border,
        data=getattr(pairs, "description", ""),
        tile=s.tile,
        tile_overlap=s.tile_overlap if s.tile else None,
        lpips=s.lpips_name or (type(s.lpips).__name__ if s.lpips is not None else None),
        notes=notes,
    )


def _measure_all(
    models: Mapping[str, Model], pairs: Iterable[ImagePair], scale: int, s: EvalSettings, measure: _Measure
) -> tuple[list[EvalRow], list[str]]:
    """Every pair run and measured (a tqdm bar on a terminal, ``s.progress`` after each image); rows and notes."""
    from tqdm import tqdm

    rows: list[EvalRow] = []
    notes: list[str] = []
    total = len(pairs) if hasattr(pairs, "__len__") else None
    start = time.monotonic()
    for done, pair in enumerate(tqdm(pairs, total=total, desc="evaluate", unit="image", disable=None, leave=False), 1):
        if pair.note:
            notes.append(f"{pair.name}: {pair.note}")
        first = len(rows)
        outputs, ref_q = _run_pair(models, pair, scale, s)
        rows += _measure_pair(pair, outputs, ref_q, measure)
        if s.compare_dir is not None:
            _compare(Path(s.compare_dir), pair, outputs, next(iter(ref_q)), rows[first:], measure)
        if s.progress is not None:
            s.progress(done, total, time.monotonic() - start)
    return rows, notes


def _run_pair(
    models: Mapping[str, Model], pair: ImagePair, scale: int, s: EvalSettings
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Every model's output on ``pair.lq`` and the quantised references it is measured against, by name."""
    refs = {"GT": pair.gt} if pair.gt is not None else {}
    refs |= dict(pair.refs)
    if not refs and s.reference_model is None:
        raise ValueError(f"'{pair.name}' has no reference to measure against: give its GT or the teacher's image")
    lq = _to_tensor(pair.lq)
    outputs = {}
    for label, model in models.items():
        if s.tile:
            from kit.infer.tiled import tiled_forward

            out = tiled_forward(model, lq, scale, int(s.tile), int(s.tile_overlap))
        else:
            out = model(lq)
        outputs[label] = torch.as_tensor(out).float().cpu()
    ref_q = {name: quantize(_to_tensor(img)) for name, img in refs.items()}
    if s.reference_model is not None:
        ref_q[s.reference_model] = quantize(outputs[s.reference_model])
    return outputs, ref_q


def _measure_pair(
    pair: ImagePair, outputs: Mapping[str, Tensor], ref_q: Mapping[str, Tensor], m: _Measure
) -> list[EvalRow]:
    """One row per (reference, model) of a pair; a model is not measured against itself."""
    rows = []
    for ref_name, gt_q in ref_q.items():
        for label, out in outputs.items():
            if label == ref_name:
                continue
            if tuple(out.shape) != tuple(gt_q.shape):
                lq_shape = tuple(_to_tensor(pair.lq).shape)
                raise ValueError(
                    f"model '{label}' returned {tuple(out.shape)} for '{pair.name}' (input {lq_shape}), "
                    f"but the {ref_name} image is {tuple(gt_q.shape)}; is the scale ({m.scale}) the model's?"
                )
            out_q = quantize(out)
            value_lpips = float(m.lpips(out_q / 255.0, gt_q / 255.0).flatten()[0]) if m.lpips is not None else None
            psnr_value = float(psnr(out_q, gt_q, m.border, m.y_channel)[0])
            ssim_value = float(ssim(out_q, gt_q, m.border, m.y_channel)[0])
            rows.append(EvalRow(pair.name, label, psnr_value, ssim_value, value_lpips, ref_name))
    return rows


def _compare(
    folder: Path, pair: ImagePair, outputs: dict[str, Tensor], primary: str, rows: list[EvalRow], m: _Measure
) -> Path:
    """The comparison picture of a pair: its images (outputs and references), PSNR to the ``primary`` reference."""
    shown = [r for r in rows if r.reference == primary]
    extra = {k: v for k, v in pair.refs.items() if k not in outputs}
    return _write_comparison(folder, pair, outputs | extra, shown, m, primary)


def _write_comparison(
    folder: Path,
    pair: ImagePair,
    outputs: dict[str, Tensor | np.ndarray],
    rows: list[EvalRow],
    m: _Measure,
    reference: str = "GT",
) -> Path:
    from kit.infer.compare import comparison_png, detail_box, tensor_to_image

    images = {k: v if isinstance(v, np.ndarray) else tensor_to_image(v) for k, v in outputs.items()}
    crops = {"LQ": pair.lq, **images} | ({"GT": pair.gt} if pair.gt is not None else {})
    box = detail_box(pair.gt if pair.gt is not None else images[reference], m.scale)
    title = f"{pair.name}: PSNR to the {reference} on {'Y' if m.y_channel else 'RGB'}, border {m.border}"
    return comparison_png(folder / f"{pair.name}.png", crops, {r.model: r.psnr for r in rows}, box, title)
