"""The results table of an evaluation: JSON for machines, markdown and a bar chart for people.

``results`` everywhere is a nested mapping ``split -> method -> metric -> value`` with values
in percent, e.g. ``{"decorrelated": {"moco": {"R@1": 31.2, "R@5": 60.0, "linear_top1": 48.5}}}``.
The embedded benchmark has two test splits: "decorrelated" (scene and action independent,
so only motion tells the class) and "biased" (scene predicts the action, as in UCF101);
they come first in the table and chart, any other split follows in the order given.
"""
from __future__ import annotations

from vidssl.io import write_bytes_atomic

import io
import json
import math
import os
from pathlib import Path
from typing import Mapping

__all__ = ["format_table", "write_results", "SPLIT_ORDER", "TABLE_METRICS", "CHART_METRICS", "RESERVED_KEYS"]

SPLIT_ORDER = ("decorrelated", "biased")
TABLE_METRICS = ("R@1", "R@5", "linear_top1")
CHART_METRICS = ("R@1", "linear_top1")
# Top-level keys of results.json beside the splits: no split may take these names.
RESERVED_KEYS = ("wall_seconds", "run")
_METRIC_TITLES = {"linear_top1": "linear top-1"}

Results = Mapping[str, Mapping[str, Mapping[str, float]]]


def format_table(results: Results, metrics: tuple[str, ...] = TABLE_METRICS) -> str:
    """A markdown pipe table, columns aligned so it also reads well printed to a terminal.

    One row per method (in order of first appearance), one column per (split, metric); a
    value a method lacks for a split shows as "-". Values print with one decimal.
    """
    splits = _ordered_splits(results)
    methods = _ordered_methods(results, splits)
    header = ["method"] + [f"{split} {_METRIC_TITLES.get(m, m)}" for split in splits for m in metrics]
    rows = [[method] + [_format_value(results[split].get(method, {}).get(m))
                        for split in splits for m in metrics] for method in methods]
    widths = [max(len(line[c]) for line in [header] + rows) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        # Method names left-aligned, numbers right-aligned so decimals line up.
        padded = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])


def write_results(results: Results, out_dir: str | os.PathLike, wall_seconds: float,
                  explanation: str = "", run: dict | None = None) -> dict[str, Path]:
    """Write results.json, results.md and results.png into ``out_dir``; returns their paths.

    results.json holds ``split -> method -> metric`` plus a top-level ``"wall_seconds"`` and, when
    given, ``"run"`` (what the numbers depend on: machine, budgets, precision, seeds);
    results.md holds ``explanation`` (a paragraph the caller writes: what was run and what the
    numbers show) above the table; results.png is a grouped bar chart of R@1 and linear top-1
    per method, one panel per split. Every file is written atomically, so an interrupted run
    never leaves a truncated report next to a complete one.
    """
    for reserved in RESERVED_KEYS:
        if reserved in results:
            raise ValueError(f"{reserved!r} is reserved in results.json; rename that split")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {split: {method: {metric: _json_number(f"{split}/{method}/{metric}", value)
                                for metric, value in metrics.items()}
                       for method, metrics in by_method.items()}
               for split, by_method in results.items()}
    payload["wall_seconds"] = float(wall_seconds)
    if run is not None:
        payload["run"] = run  # what the numbers depend on: machine, budget, precision, seeds

    paths = {"json": out_dir / "results.json", "md": out_dir / "results.md", "png": out_dir / "results.png"}
    write_bytes_atomic(paths["json"], (json.dumps(payload, indent=2, allow_nan=False) + "\n").encode())
    markdown = "# Results\n\n"
    if explanation.strip():
        markdown += explanation.strip() + "\n\n"
    markdown += format_table(results) + "\n\n"
    markdown += ("R@k: percentage of test videos with a training video of the same class among their "
                 "k nearest neighbours (cosine). linear top-1: accuracy of a linear classifier on "
                 f"frozen features. Wall time: {wall_seconds:.1f} s.\n")
    write_bytes_atomic(paths["md"], markdown.encode())
    write_bytes_atomic(paths["png"], _bar_chart_png(results))
    return paths


def _bar_chart_png(results: Results) -> bytes:
    # The object-oriented API with an Agg canvas: no pyplot global state, no display needed,
    # safe to call from a training script that has its own figures open.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    splits = _ordered_splits(results)
    methods = _ordered_methods(results, splits)
    panels = max(len(splits), 1)
    fig = Figure(figsize=(max(4.0, 1.1 * len(methods) + 2.0) * panels, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False, sharey=True)[0]
    width = 0.8 / len(CHART_METRICS)
    for ax, split in zip(axes, splits):
        for j, metric in enumerate(CHART_METRICS):
            values = [results[split].get(method, {}).get(metric, math.nan) for method in methods]
            xs = [i + (j - (len(CHART_METRICS) - 1) / 2) * width for i in range(len(methods))]
            bars = ax.bar(xs, [math.nan if v is None else float(v) for v in values], width,
                          label=_METRIC_TITLES.get(metric, metric))
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set_ylim(0, 105)
        ax.set_title(f"{split} test split")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("%")
    axes[0].legend(loc="upper left", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def _ordered_splits(results: Results) -> list[str]:
    if not results:
        raise ValueError("results are empty: nothing to report")
    return [s for s in SPLIT_ORDER if s in results] + [s for s in results if s not in SPLIT_ORDER]


def _ordered_methods(results: Results, splits: list[str]) -> list[str]:
    methods: list[str] = []
    for split in splits:
        if not isinstance(results[split], Mapping):
            raise ValueError(f"results[{split!r}] must map method -> metric -> value, "
                             f"got {type(results[split]).__name__}")
        methods += [m for m in results[split] if m not in methods]
    return methods


def _format_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):.1f}"


def _json_number(key: str, value) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"results value {key} must be a number, got {value!r}") from None
    return number if math.isfinite(number) else None  # JSON has no NaN; null means "not measured"


