"""The result of an evaluation: per-image rows, means, a printable table, CSV and JSON."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class EvalRow:
    """Metrics of one model on one image (``lpips`` is ``None`` when not measured)."""

    image: str
    model: str
    psnr: float
    ssim: float
    lpips: float | None = None
    reference: str = "GT"  # what the output was compared with: "GT", or e.g. "teacher" (its output image)


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

    @property
    def references(self) -> list[str]:
        """What the outputs were compared with: ``"GT"`` (when there is one) first, then e.g. ``"teacher"``."""
        refs = list(dict.fromkeys(r.reference for r in self.rows))
        return sorted(refs, key=lambda r: r != "GT")

    def _reference(self, reference: str | None) -> str:
        if reference is None:
            return self.references[0] if self.rows else "GT"
        if reference not in self.references:
            raise KeyError(f"no results against '{reference}'; this evaluation has {', '.join(self.references)}")
        return reference

    def models_for(self, reference: str | None = None) -> list[str]:
        """The models measured against ``reference`` (the reference model itself is not)."""
        ref = self._reference(reference)
        return [m for m in self.models if any(r.model == m and r.reference == ref for r in self.rows)]

    def means(self, reference: str | None = None) -> dict[str, dict[str, float]]:
        """``{model: {"psnr", "ssim"[, "lpips"]}}``: the mean over images of each per-image value.

        Args:
            reference: ``"GT"``, ``"teacher"``, ...; ``None``: the first of :attr:`references` (the GT if any).
        """
        ref = self._reference(reference)
        out = {}
        for model in self.models_for(ref):
            rows = [r for r in self.rows if r.model == model and r.reference == ref]
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
            "references": self.references,
            "means_by_reference": {ref: self.means(ref) for ref in self.references},
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
        metrics = ["psnr", "ssim"] + (["lpips"] if self.lpips else [])
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "model", *metrics, "reference"])
            for r in self.rows:
                writer.writerow([r.image, r.model, *(repr(getattr(r, c)) for c in metrics), r.reference])
            for ref in self.references:
                for model, m in self.means(ref).items():
                    writer.writerow(["mean", model, *(repr(m[c]) for c in metrics), ref])
        return path

    def table(self, reference: str | None = None) -> str:
        """Per-image table against one reference, with a mean row, models side by side (PSNR 3 decimals,
        SSIM/LPIPS 4); ``reference`` as in :meth:`means`."""
        ref = self._reference(reference)
        models = self.models_for(ref)
        metrics = ["psnr", "ssim"] + (["lpips"] if self.lpips else [])
        header = ["image"] + [f"{m} {k.upper()}" for m in models for k in metrics]
        by_key = {(r.image, r.model): r for r in self.rows if r.reference == ref}

        def fmt(metric: str, value: float) -> str:
            return f"{value:.3f}" if metric == "psnr" else f"{value:.4f}"

        lines = [[img] + [fmt(k, getattr(by_key[img, m], k)) for m in models for k in metrics] for img in self.images()]
        means = self.means(ref)
        lines.append(["mean"] + [fmt(k, means[m][k]) for m in models for k in metrics])
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

        def render(row: list[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

        rule = "-" * len(render(header))
        return "\n".join([render(header), rule, *map(render, lines[:-1]), rule, render(lines[-1])])
