"""PNG plots of a run's history (losses and validation metrics against the iteration)."""

from __future__ import annotations

import json
from pathlib import Path


def read_history(path: str | Path) -> list[dict]:
    """The JSON lines of ``history.jsonl`` (empty when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_history(history: str | Path, out: str | Path, title: str = "") -> Path | None:
    """Plot training losses (log scale) and validation metrics side by side; None when nothing to plot.

    Validation panels draw the ``reference`` records of the history (bicubic, the teacher) as dashed lines, so that
    a student's 30.17 dB reads against what it has to beat.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_history(history)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    if not train and not val:
        return None
    metric_keys = sorted({k for r in val for k in r} - {"kind", "iter", "dataset", "seconds"})
    fig, axes = plt.subplots(1, 1 + len(metric_keys), figsize=(5.5 * (1 + len(metric_keys)), 4), squeeze=False)
    axes = axes[0]
    loss_keys = sorted({k for r in train for k in r if k.startswith("l_")})
    for key in loss_keys:
        pts = [(r["iter"], r[key]) for r in train if key in r and r[key] > 0]
        if pts:  # markers while there are few points: one logged step is still seen
            axes[0].plot(*zip(*pts), label=key, marker="o" if len(pts) < 20 else None)
    axes[0].set(xlabel="iteration", ylabel="loss", title="training losses", yscale="log")
    if loss_keys:
        axes[0].legend(fontsize=8)
    references = [r for r in records if r.get("kind") == "reference"]  # bicubic, the teacher: what to beat
    colours = {what: f"C{i + 1}" for i, what in enumerate(dict.fromkeys(r["what"] for r in references))}
    for ax, key in zip(axes[1:], metric_keys):  # one panel per metric: PSNR (dB) and SSIM differ in scale
        pts = sorted({(r["iter"], r[key]) for r in val if key in r})
        ax.plot(*zip(*pts), marker="o", label="student")
        for ref in {r["what"]: r for r in references if key in r}.values():  # the latest of each
            ax.axhline(ref[key], linestyle="--", color=colours[ref["what"]], label=f"{ref['what']}: {ref[key]:.4g}")
        ax.set(xlabel="iteration", title=f"validation {key}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
