"""The charts of a comparison report, as PNG bytes: training-loss curves, R@k bars, per-class accuracy.

matplotlib's object-oriented API on an Agg canvas: no pyplot state, no display, safe next to a
training script's own figures (the same choice as ``vidssl.eval.report``).
"""
from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import numpy as np

__all__ = ["loss_curves_png", "recall_bars_png", "per_class_png"]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def loss_curves_png(curves: Mapping[str, Mapping[str, Sequence[float]]]) -> bytes:
    """One panel per row ``{row: {"step": [...], "loss": [...]}}`` (losses of different methods
    have different scales, so they do not share an axis)."""
    if not curves:
        raise ValueError("no training curves to draw")
    cols = min(4, len(curves))
    rows = math.ceil(len(curves) / cols)
    fig = _figure(3.2 * cols, 2.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, curve) in zip(axes, curves.items()):
        ax.plot(curve["step"], curve["loss"], color="tab:blue", linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    return _png(fig)


def recall_bars_png(results: Mapping[str, Mapping[str, Mapping[str, float]]],
                    ks: Sequence[int] = (1, 5, 10, 20)) -> bytes:
    """Grouped bars of R@k per row, one panel per split: ``results`` is split -> row -> metrics (%)."""
    splits = list(results)
    if not splits:
        raise ValueError("no results to draw")
    names = list(dict.fromkeys(name for split in splits for name in results[split]))
    fig = _figure(max(4.5, 0.55 * len(names) * max(1, len(ks)) / 2 + 2.0) * len(splits), 3.6)
    axes = fig.subplots(1, len(splits), squeeze=False, sharey=True)[0]
    width = 0.8 / max(1, len(ks))
    for ax, split in zip(axes, splits):
        for j, k in enumerate(ks):
            values = [results[split].get(name, {}).get(f"R@{k}") for name in names]
            xs = np.arange(len(names)) + (j - (len(ks) - 1) / 2) * width
            ax.bar(xs, [math.nan if v is None else float(v) for v in values], width, label=f"R@{k}")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_title(f"retrieval, {split}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=7, ncols=len(ks), loc="upper left")
    return _png(fig)


def per_class_png(per_class: Mapping[str, Mapping[str, float]], classes: Sequence[str], title: str) -> bytes:
    """Heat map of per-class accuracy (%): one row per report row ``{row: {class: accuracy}}``."""
    names = list(per_class)
    if not names or not classes:
        raise ValueError("no per-class accuracy to draw")
    grid = np.array([[per_class[n].get(c, math.nan) for c in classes] for n in names], dtype=np.float64)
    fig = _figure(max(4.0, 0.55 * len(classes) + 2.2), max(1.8, 0.38 * len(names) + 1.3))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(classes)), classes, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 60 else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="accuracy %", shrink=0.9)
    return _png(fig)
