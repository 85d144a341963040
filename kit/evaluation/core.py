"""``evaluate``: PSNR/SSIM (optionally LPIPS) of several models on the same image pairs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
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


def evaluate(
    models: Mapping[str, Model],
    pairs: Iterable[ImagePair],
    scale: int,
    y_channel: bool = True,
    crop_border: int | None = None,
    tile: int | None = None,
    tile_overlap: int = 16,
    lpips: Callable[[Tensor, Tensor], Tensor] | None = None,
    lpips_name: str | None = None,
    compare_dir: str | os.PathLike | None = None,
    reference_model: str | None = None,
) -> EvalResult:
    """PSNR/SSIM (optionally LPIPS) of each model on each image pair.

    Args:
        models: Label → callable mapping ``(1, 3, h, w)`` RGB [0, 1] to ``(1, 3, h·scale, w·scale)`` (see
            :mod:`kit.runners`).
        pairs: Image pairs, e.g. :func:`folder_pairs`; a :class:`PairSource` also names the data in the report.
        scale: Output/input size ratio of every model.
        y_channel: Measure on Y (BT.601) instead of RGB.
        crop_border: Pixels dropped on each side; ``None``: ``scale``.
        tile: Run the models on LR tiles of this size (:func:`kit.infer.tiled.tiled_forward`); ``None``: whole.
        tile_overlap: LR pixels shared by neighbouring tiles.
        lpips: Optional ``(img01, ref01) -> (N,)`` distance, e.g. :class:`kit.metrics.LPIPSMetric`.
        lpips_name: Name of the LPIPS backbone for reports.
        compare_dir: Write ``<image>.png`` comparison pictures (LQ / models / GT crops with PSNR) here.
        reference_model: The label of a model in ``models`` whose output is a reference too (e.g. ``"teacher"``:
            the others are measured *to the teacher*, and the teacher to the GT where there is one).

    Every model is measured against every reference of a pair: its GT (when it has one), its ``refs`` (e.g.
    teacher images read from a folder) and ``reference_model``'s output; each row names its reference.

    Returns:
        An :class:`EvalResult`.

    Raises:
        ValueError: no models or no images, a pair without any reference, or an output that does not have
            the reference's size.
    """
    if not models:
        raise ValueError("evaluate: no models to evaluate")
    border = scale if crop_border is None else int(crop_border)
    rows: list[EvalRow] = []
    notes: list[str] = []
    from tqdm import tqdm

    total = len(pairs) if hasattr(pairs, "__len__") else None
    for pair in tqdm(pairs, total=total, desc="evaluate", unit="image", disable=None, leave=False):
        if pair.note:
            notes.append(f"{pair.name}: {pair.note}")
        lq = _to_tensor(pair.lq)
        refs = {"GT": pair.gt} if pair.gt is not None else {}
        refs |= dict(pair.refs)
        if not refs and reference_model is None:
            raise ValueError(f"'{pair.name}' has no reference to measure against: give its GT or the teacher's image")
        outputs = {}
        for label, model in models.items():
            if tile:
                from kit.infer.tiled import tiled_forward

                out = tiled_forward(model, lq, scale, int(tile), int(tile_overlap))
            else:
                out = model(lq)
            outputs[label] = torch.as_tensor(out).float().cpu()
        ref_q = {name: quantize(_to_tensor(img)) for name, img in refs.items()}
        if reference_model is not None:
            ref_q[reference_model] = quantize(outputs[reference_model])
        first = len(rows)
        for ref_name, gt_q in ref_q.items():
            for label, out in outputs.items():
                if label == ref_name:
                    continue
                if tuple(out.shape) != tuple(gt_q.shape):
                    raise ValueError(
                        f"model '{label}' returned {tuple(out.shape)} for '{pair.name}' (input {tuple(lq.shape)}), "
                        f"but the {ref_name} image is {tuple(gt_q.shape)}; is the scale ({scale}) the model's?"
                    )
                out_q = quantize(out)
                value_lpips = float(lpips(out_q / 255.0, gt_q / 255.0).flatten()[0]) if lpips is not None else None
                rows.append(
                    EvalRow(
                        pair.name,
                        label,
                        float(psnr(out_q, gt_q, border, y_channel)[0]),
                        float(ssim(out_q, gt_q, border, y_channel)[0]),
                        value_lpips,
                        ref_name,
                    )
                )
        if compare_dir is not None:
            primary = next(iter(ref_q))
            shown = [r for r in rows[first:] if r.reference == primary]
            extra = {k: v for k, v in pair.refs.items() if k not in outputs}
            _write_comparison(Path(compare_dir), pair, outputs | extra, shown, scale, y_channel, border, primary)
    if not rows:
        raise ValueError("evaluate: no images to evaluate")
    return EvalResult(
        rows=rows,
        models=list(models),
        scale=scale,
        y_channel=y_channel,
        crop_border=border,
        data=getattr(pairs, "description", ""),
        tile=tile,
        tile_overlap=tile_overlap if tile else None,
        lpips=lpips_name or (type(lpips).__name__ if lpips is not None else None),
        notes=notes,
    )


def _write_comparison(
    folder: Path,
    pair: ImagePair,
    outputs: dict[str, Tensor | np.ndarray],
    rows: list[EvalRow],
    scale: int,
    y: bool,
    border: int,
    reference: str = "GT",
) -> Path:
    from kit.infer.compare import comparison_png, detail_box, tensor_to_image

    images = {k: v if isinstance(v, np.ndarray) else tensor_to_image(v) for k, v in outputs.items()}
    crops = {"LQ": pair.lq, **images} | ({"GT": pair.gt} if pair.gt is not None else {})
    box = detail_box(pair.gt if pair.gt is not None else images[reference], scale)
    title = f"{pair.name}: PSNR to the {reference} on {'Y' if y else 'RGB'}, border {border}"
    return comparison_png(folder / f"{pair.name}.png", crops, {r.model: r.psnr for r in rows}, box, title)
