"""``kit-eval``: PSNR/SSIM (and optionally LPIPS) of a checkpoint, an ONNX file, the teacher and bicubic, side by side.

Usage::

    kit-eval -opt options/distill.yml                          # student (net_g_latest.pth) on the val set
    kit-eval -opt options/distill.yml --teacher --bicubic --csv results/eval.csv --json results/eval.json
    kit-eval --onnx submissions/distill_rlfn_x4/model.onnx --lq LR/X4 --gt HR --scale 4
    kit-eval -opt options/distill_naf_denoise.yml --gt my_photos/   # LQ made by the training degradation (seeded)
    kit-eval -opt options/distill.yml --rgb --crop-border 4    # NTIRE ESR convention instead of the papers' Y
    python -m kit.evaluate ...                                 # the same

Data: ``--lq DIR --gt DIR`` (paired by file name), or ``--gt DIR`` alone (LQ made from each GT by the options'
training degradation: a ``DegradedImageDataset``'s ``degradations``, else MATLAB bicubic ×scale; seed fixed),
or nothing: the options' ``val`` dataset, else the bundled val photos at the scale.

Metrics are those of :mod:`kit.metrics.psnr_ssim` (equal to BasicSR's numpy reference) on outputs rounded to
8 bits as ``tensor2img`` does. Default: the Y channel (BT.601) with a border of ``scale`` pixels (papers); NTIRE
Efficient SR uses ``--rgb --crop-border 4``. Every report states which.

The function API, reused by the export and the benchmarks::

    result = evaluate({"student": runner}, folder_pairs(lq_dir, gt_dir, 4), scale=4)
    result.means()["student"]["psnr"]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import kit  # noqa: F401  (compat + registries)
from kit.checkpoint import CheckpointError
from kit.infer.images import list_images, mod_crop, pair_folders, read_image
from kit.metrics.psnr_ssim import psnr, quantize, ssim
from kit.options import load_options, resolve_path

__all__ = [
    "EvalResult",
    "EvalRow",
    "ImagePair",
    "PairSource",
    "bundled_pairs",
    "degraded_pairs",
    "evaluate",
    "folder_pairs",
    "main",
    "training_degradation",
    "validation_pairs",
]

Model = Callable[[Tensor], Tensor]


# ----------------------------------------------------------------------------------------------------- data
@dataclass
class ImagePair:
    """One evaluation image: LQ input and GT, RGB float32 HWC in [0, 1]; ``note`` says what was changed."""

    name: str
    lq: np.ndarray
    gt: np.ndarray
    note: str = ""


@dataclass
class PairSource:
    """Named, lazily loaded image pairs (one image pair in memory at a time)."""

    description: str
    loaders: list[tuple[str, Callable[[], ImagePair]]]

    def __iter__(self) -> Iterator[ImagePair]:
        for _, load in self.loaders:
            yield load()

    def __len__(self) -> int:
        return len(self.loaders)


def _crop_note(before: tuple[int, ...], after: tuple[int, ...], scale: int) -> str:
    return f"GT mod-cropped from {before[0]}x{before[1]} to {after[0]}x{after[1]} (multiple of scale {scale})"


def folder_pairs(lq_dir: str | os.PathLike, gt_dir: str | os.PathLike, scale: int) -> PairSource:
    """Pairs from an LQ folder and a GT folder matched by file name (``0001x4.png`` ↔ ``0001.png`` too).

    The GT is mod-cropped to a multiple of ``scale`` (as BasicSR) and must then be exactly ``scale`` × the LQ.

    Raises:
        ValueError: unmatched names (both sides listed), an empty folder; when loading, an undecodable file
            (named) or sizes that do not agree with ``scale``.
    """
    triples = pair_folders(lq_dir, gt_dir)

    def loader(name: str, lq_path: Path, gt_path: Path) -> Callable[[], ImagePair]:
        def load() -> ImagePair:
            lq, gt = read_image(lq_path), read_image(gt_path)
            cropped, changed = mod_crop(gt, scale)
            lh, lw = lq.shape[:2]
            if cropped.shape[:2] != (lh * scale, lw * scale):
                raise ValueError(
                    f"'{lq_path}' is {lh}x{lw}, so its x{scale} output is {lh * scale}x{lw * scale}, but GT "
                    f"'{gt_path}' is {gt.shape[0]}x{gt.shape[1]} ({cropped.shape[0]}x{cropped.shape[1]} mod-cropped); "
                    "check --scale and that the folders hold matching images"
                )
            note = _crop_note(gt.shape, cropped.shape, scale) if changed else ""
            return ImagePair(name, lq, np.ascontiguousarray(cropped), note)

        return load

    return PairSource(f"LQ '{lq_dir}' + GT '{gt_dir}'", [(n, loader(n, lq, gt)) for n, lq, gt in triples])


def degraded_pairs(
    gt_dir: str | os.PathLike, degradations: list[dict], scale: int, seed: int = 0, label: str = ""
) -> PairSource:
    """GT images with LQ made by ``degradations`` (as ``DegradedImageDataset`` validation: one fixed draw each).

    Image ``i`` (sorted by name) is mod-cropped to ``scale`` and degraded with ``np.random.default_rng([seed, i])``,
    the generator ``DegradedImageDataset`` uses for validation, so the same folder gives the same LQ.

    Args:
        gt_dir: Folder of GT images.
        degradations: Options-style list, e.g. ``[{type: GaussianNoise, sigma: 25}]``; must downscale by ``scale``.
        scale: The model's scale.
        seed: Seed of the draws.
        label: How the degradation is described in reports.
    """
    from kit.data.degradations import BicubicDown, apply_degradations, build_degradations

    files = list_images(gt_dir)
    if not files:
        raise ValueError(f"no images in GT folder '{gt_dir}'")
    degs = build_degradations(degradations)
    factor = int(np.prod([d.scale for d in degs if isinstance(d, BicubicDown)] or [1]))
    if factor != scale:
        raise ValueError(
            f"the degradations {degradations} downscale by {factor} but the scale is {scale}; "
            f"add {{type: BicubicDown, scale: {scale}}} or fix the scale"
        )

    def loader(index: int, path: Path) -> Callable[[], ImagePair]:
        def load() -> ImagePair:
            gt = read_image(path)
            cropped, changed = mod_crop(gt, scale)
            cropped = np.ascontiguousarray(cropped)
            lq = apply_degradations(cropped.copy(), degs, np.random.default_rng([seed, index]))
            return ImagePair(path.stem, lq, cropped, _crop_note(gt.shape, cropped.shape, scale) if changed else "")

        return load

    what = label or json.dumps(degradations)
    return PairSource(
        f"GT '{gt_dir}', LQ made by {what} (seed {seed})", [(p.stem, loader(i, p)) for i, p in enumerate(files)]
    )


def _dataset(opt: Mapping[str, Any] | None, phase: str) -> dict | None:
    for key, ds in ((opt or {}).get("datasets") or {}).items():
        if (key == phase or key.startswith(phase)) and isinstance(ds, dict):
            return ds
    return None


def training_degradation(opt: Mapping[str, Any] | None, scale: int) -> tuple[list[dict], int, str]:
    """The degradation that made the training LQ: ``(specs, seed, description)``.

    A ``DegradedImageDataset`` training set gives its ``degradations`` and ``seed``; any other (paired folders,
    such as DIV2K's bicubic LR) gives MATLAB bicubic ×``scale`` (``BicubicDown``), seed 0.

    Raises:
        ValueError: scale 1 without a ``DegradedImageDataset``: there is no degradation to reproduce.
    """
    train = _dataset(opt, "train")
    if train is not None and train.get("type") == "DegradedImageDataset":
        specs = [dict(s) for s in train.get("degradations") or []]
        return specs, int(train.get("seed", 0)), f"the training degradations {json.dumps(specs)}"
    if scale > 1:
        return [{"type": "BicubicDown", "scale": scale}], 0, f"MATLAB bicubic x{scale} (as the training LR)"
    raise ValueError(
        "GT-only evaluation needs a degradation, but the options' training dataset is not a DegradedImageDataset "
        "and the scale is 1; pass --lq DIR too, or use options with a DegradedImageDataset"
    )


def _ensure_bundled(*paths: str) -> None:
    from kit.data import bundled

    root = bundled.DEFAULT_ROOT.resolve()
    if any(root in Path(p).resolve().parents for p in paths) and not bundled.is_complete(bundled.DEFAULT_ROOT):
        bundled.build()


def bundled_pairs(scale: int, opt: Mapping[str, Any] | None = None) -> PairSource:
    """The bundled val photos (built on first use): ``LR_bicubic/X<scale>`` + ``HR``, or GT-only with the
    options' training degradation when that is a ``DegradedImageDataset`` (or the scale has no LR folder)."""
    from kit.data import bundled

    root = bundled.build()
    train = _dataset(opt, "train")
    if (train is None or train.get("type") != "DegradedImageDataset") and scale in bundled.SCALES:
        return folder_pairs(root / "val" / "LR_bicubic" / f"X{scale}", root / "val" / "HR", scale)
    specs, seed, label = training_degradation(opt, scale)
    return degraded_pairs(root / "val" / "HR", specs, scale, seed, label)


def validation_pairs(opt: Mapping[str, Any], scale: int) -> PairSource:
    """The options' ``val`` dataset (paired folders or a ``DegradedImageDataset``), else :func:`bundled_pairs`."""
    val = _dataset(opt, "val")
    if val is not None and val.get("dataroot_gt"):
        gt = resolve_path(val["dataroot_gt"])
        if val.get("type") == "DegradedImageDataset":
            _ensure_bundled(gt)
            specs = [dict(s) for s in val.get("degradations") or []]
            return degraded_pairs(
                gt, specs, scale, int(val.get("seed", 0)), f"the val degradations {json.dumps(specs)}"
            )
        if val.get("dataroot_lq"):
            lq = resolve_path(val["dataroot_lq"])
            _ensure_bundled(gt, lq)
            source = folder_pairs(lq, gt, scale)
            source.description = f"val dataset '{val.get('name', 'val')}': {source.description}"
            return source
    return bundled_pairs(scale, opt)


# ------------------------------------------------------------------------------------------------ evaluation
@dataclass
class EvalRow:
    """Metrics of one model on one image (``lpips`` is ``None`` when not measured)."""

    image: str
    model: str
    psnr: float
    ssim: float
    lpips: float | None = None


@dataclass
class EvalResult:
    """Per-image rows and settings of one evaluation; :meth:`means` averages per model."""

    rows: list[EvalRow]
    models: list[str]
    scale: int
    y_channel: bool
    crop_border: int
    data: str = ""
    tile: int | None = None
    tile_overlap: int | None = None
    lpips: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def metric_label(self) -> str:
        """E.g. ``PSNR/SSIM on Y (BT.601), border 4 px``."""
        space = "Y (BT.601, as BasicSR's test_y_channel)" if self.y_channel else "RGB"
        text = f"PSNR (dB) / SSIM on {space}, border {self.crop_border} px, 8-bit outputs"
        return text + (f"; LPIPS ({self.lpips}) on RGB, whole image" if self.lpips else "")

    def images(self) -> list[str]:
        """Image names in evaluation order."""
        return list(dict.fromkeys(r.image for r in self.rows))

    def means(self) -> dict[str, dict[str, float]]:
        """``{model: {"psnr", "ssim"[, "lpips"]}}``: the mean over images of each per-image value."""
        out = {}
        for model in self.models:
            rows = [r for r in self.rows if r.model == model]
            out[model] = {
                "psnr": float(np.mean([r.psnr for r in rows])),
                "ssim": float(np.mean([r.ssim for r in rows])),
            }
            if self.lpips:
                out[model]["lpips"] = float(np.mean([r.lpips for r in rows]))
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, per-image rows and means."""
        return {
            "metric": self.metric_label,
            "y_channel": self.y_channel,
            "crop_border": self.crop_border,
            "scale": self.scale,
            "data": self.data,
            "num_images": len(self.images()),
            "tile": self.tile,
            "tile_overlap": self.tile_overlap,
            "lpips": self.lpips,
            "models": self.models,
            "notes": self.notes,
            "per_image": [asdict(r) for r in self.rows],
            "means": self.means(),
        }

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`as_dict` as JSON; parent folders are created."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write one row per (image, model), then one ``mean`` row per model; full precision."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = ["image", "model", "psnr", "ssim"] + (["lpips"] if self.lpips else [])
        means = self.means()
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for r in self.rows:
                writer.writerow(
                    [r.image, r.model, repr(r.psnr), repr(r.ssim)] + ([repr(r.lpips)] if self.lpips else [])
                )
            for model, m in means.items():
                writer.writerow(["mean", model] + [repr(m[c]) for c in columns[2:]])
        return path

    def table(self) -> str:
        """Per-image table with a mean row, models side by side (PSNR 3 decimals, SSIM/LPIPS 4)."""
        metrics = ["psnr", "ssim"] + (["lpips"] if self.lpips else [])
        header = ["image"] + [f"{m} {k.upper()}" for m in self.models for k in metrics]
        by_key = {(r.image, r.model): r for r in self.rows}

        def fmt(metric: str, value: float) -> str:
            return f"{value:.3f}" if metric == "psnr" else f"{value:.4f}"

        lines = [
            [img] + [fmt(k, getattr(by_key[img, m], k)) for m in self.models for k in metrics] for img in self.images()
        ]
        means = self.means()
        lines.append(["mean"] + [fmt(k, means[m][k]) for m in self.models for k in metrics])
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

        def render(row: list[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

        rule = "-" * len(render(header))
        return "\n".join([render(header), rule, *map(render, lines[:-1]), rule, render(lines[-1])])


def _to_tensor(img: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().unsqueeze(0)


def _to_image(t: Tensor) -> np.ndarray:
    return t[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


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

    Returns:
        An :class:`EvalResult`.

    Raises:
        ValueError: no models or no images, or a model's output does not have the GT's size.
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
        lq, gt = _to_tensor(pair.lq), _to_tensor(pair.gt)
        gt_q = quantize(gt)
        outputs = {}
        for label, model in models.items():
            if tile:
                from kit.infer.tiled import tiled_forward

                out = tiled_forward(model, lq, scale, int(tile), int(tile_overlap))
            else:
                out = model(lq)
            out = torch.as_tensor(out).float().cpu()
            if tuple(out.shape) != tuple(gt.shape):
                raise ValueError(
                    f"model '{label}' returned {tuple(out.shape)} for '{pair.name}' (input {tuple(lq.shape)}), but the "
                    f"GT is {tuple(gt.shape)}; is the scale ({scale}) the model's?"
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
                )
            )
            outputs[label] = out
        if compare_dir is not None:
            _write_comparison(Path(compare_dir), pair, outputs, rows[-len(outputs) :], scale, y_channel, border)
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
    folder: Path, pair: ImagePair, outputs: dict[str, Tensor], rows: list[EvalRow], scale: int, y: bool, border: int
) -> Path:
    from kit.infer.compare import comparison_png, pick_crop_box

    crops = {"LQ": pair.lq, **{k: _to_image(v) for k, v in outputs.items()}, "GT": pair.gt}
    box = pick_crop_box(pair.gt, size=min(128, *pair.gt.shape[:2]), align=scale)
    title = f"{pair.name}: PSNR on {'Y' if y else 'RGB'}, border {border}"
    return comparison_png(folder / f"{pair.name}.png", crops, {r.model: r.psnr for r in rows}, box, title)


# -------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """``kit-eval``'s flags."""
    p = argparse.ArgumentParser(
        prog="kit-eval",
        description="PSNR/SSIM (and LPIPS) of a student checkpoint, an ONNX file, the teacher and bicubic.",
    )
    m = p.add_argument_group("models")
    m.add_argument("-opt", help="options YAML: its student (network_g), scale, teacher and data")
    m.add_argument("--checkpoint", help="student weights (default experiments/<name>/models/net_g_latest.pth)")
    m.add_argument("--onnx", help="an exported ONNX model (with -opt, the student runs too only if --checkpoint)")
    m.add_argument("--teacher", action="store_true", help="also evaluate the options' teacher(s)")
    m.add_argument("--bicubic", action="store_true", help="also evaluate bicubic upscaling")
    m.add_argument(
        "--bicubic-method", choices=("matlab", "torch"), default="matlab", help="MATLAB imresize (default) or torch"
    )
    m.add_argument("--device", default="cpu", help="device of the PyTorch models (default cpu)")
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
    from kit.runners import BicubicRunner, OnnxRunner, student_runner, teacher_runners

    opt = load_options(args.opt) if args.opt else None
    scale = _scale(args, opt)
    models: dict[str, Model] = {}
    notes = []
    if args.onnx:
        onnx = OnnxRunner(args.onnx)
        scale = scale if scale is not None else onnx.probe_scale()
        models["onnx"] = onnx
    if scale is None:
        raise ValueError("nothing to evaluate: give -opt OPTIONS (a student checkpoint) or --onnx FILE")
    if opt is not None and (args.checkpoint or not args.onnx):
        models["student"] = student_runner(opt, args.checkpoint, args.device)
    if args.teacher:
        if opt is None:
            raise ValueError("--teacher needs -opt OPTIONS (the teacher is declared there)")
        models.update(teacher_runners(opt, args.device))
    if args.bicubic:
        bicubic = BicubicRunner(scale, args.bicubic_method)
        models["bicubic"] = bicubic
        notes.append(bicubic.describe())
    if args.checkpoint and opt is None:
        raise ValueError("--checkpoint needs -opt OPTIONS (to build the network it belongs to)")
    if args.lq and not args.gt:
        raise ValueError("--lq needs --gt (the ground truths to compare with)")
    if args.lq:
        pairs = folder_pairs(args.lq, args.gt, scale)
    elif args.gt:
        specs, seed, label = training_degradation(opt, scale)
        pairs = degraded_pairs(args.gt, specs, scale, seed if args.seed is None else args.seed, label)
    elif opt is not None:
        pairs = validation_pairs(opt, scale)
    else:
        pairs = bundled_pairs(scale)
    lpips = None
    if args.lpips:
        from kit.metrics.lpips_metric import LPIPSMetric

        lpips = LPIPSMetric(args.lpips)
    result = evaluate(
        models,
        pairs,
        scale,
        y_channel=args.y_channel,
        crop_border=args.crop_border,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        lpips=lpips,
        lpips_name=args.lpips,
        compare_dir=args.compare,
    )
    result.notes = notes + result.notes
    return result


def report(result: EvalResult) -> str:
    """The printed report: what was measured, the table, notes."""
    n = len(result.images())
    lines = [
        f"{result.metric_label}; x{result.scale}, {n} image{'s' if n != 1 else ''}",
        f"data: {result.data}" if result.data else "",
        f"tiled: {result.tile} px LR tiles, {result.tile_overlap} px overlap" if result.tile else "",
        "",
        result.table(),
    ]
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(line for i, line in enumerate(lines) if line or i == 3)


def main(argv: list[str] | None = None) -> int:
    """``kit-eval``: evaluate, print the table, write ``--csv``/``--json``; exit 2 with one message on bad input."""
    args = build_parser().parse_args(argv)
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
    if any(not math.isfinite(m["psnr"]) for m in result.means().values()):
        print("note: PSNR is inf where an output equals the GT exactly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
