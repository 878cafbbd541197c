"""Several runs of one table (training seeds, benchmark seeds): mean, spread and what is noise.

``vidssl summarize runs/demo runs/demo-train1 runs/demo-seed1`` reads each folder's
``results.json`` (written by ``vidssl compare`` / ``vidssl demo``) and writes ``summary.json`` and
``summary.md`` into ``--out``: per split, row and metric the values of every run, their mean and
sample standard deviation, and the rows' gaps to reference rows (``moco`` and ``random`` by
default), run by run, with their minimum.

Noise. A test list of n queries scores an accuracy p with binomial standard error
sqrt(p (1 - p) / n): at n = 200 and p = 0.3 that is 3.2 points, so the difference of two rows
scored on the same queries but otherwise independent has a standard error of about
sqrt(2) x 3.2 = 4.6 points, and a gap below about twice that (9 points at p = 0.3, 10 at p = 0.5)
can be luck of the draw in a single run. :func:`noise_points` gives that two-standard-error band
for a gap between two accuracies; the summary prints it for each gap it reports.
"""
from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Mapping, Sequence

from vidssl.eval.report import RESERVED_KEYS
from vidssl.io import write_bytes_atomic

__all__ = ["load_run", "summarize_runs", "noise_points", "format_summary", "write_summary"]


def load_run(path: str | os.PathLike) -> dict:
    """``results.json`` of a run folder (or the file itself): ``{"results": split -> row -> metric, "run": ...}``."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no results.json (a finished `vidssl compare` or `vidssl demo` folder)")
    try:
        payload = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from None
    results = {k: v for k, v in payload.items() if k not in RESERVED_KEYS}
    if not results or not all(isinstance(v, dict) for v in results.values()):
        raise ValueError(f"{file}: expected split -> row -> metric tables")
    return {"results": results, "run": payload.get("run", {}), "wall_seconds": payload.get("wall_seconds"),
            "source": str(file)}


def noise_points(p1: float, p2: float, queries: int) -> float:
    """Two standard errors, in points, of the gap between accuracies ``p1`` and ``p2`` (percent) each
    measured on ``queries`` independent queries: ``2 sqrt((p1 (1 - p1) + p2 (1 - p2)) / n)``."""
    if queries < 1:
        raise ValueError(f"noise_points: queries must be >= 1, got {queries}")
    a, b = p1 / 100.0, p2 / 100.0
    return 200.0 * math.sqrt((a * (1 - a) + b * (1 - b)) / queries)


def summarize_runs(runs: Sequence[Mapping], metric: str = "R@1", references: Sequence[str] = ("moco", "random"),
                   queries: int | None = None) -> dict:
    """Mean, spread and gaps over ``runs`` (from :func:`load_run`).

    Returns ``{"runs": [...sources], "splits": {split: {row: {metric: {"values", "mean", "std"}}}},
    "gaps": {split: {row: {reference: {"values", "min", "noise"}}}}}``: every metric any run has;
    gaps of ``metric`` to each reference row present, one per run that has both; ``noise`` is
    :func:`noise_points` at the two rows' mean accuracies when ``queries`` is given.
    """
    if not runs:
        raise ValueError("summarize_runs: no runs given")
    splits: dict[str, dict] = {}
    for run in runs:
        for split, rows in run["results"].items():
            for row, metrics in rows.items():
                for name, value in metrics.items():
                    if value is not None:
                        splits.setdefault(split, {}).setdefault(row, {}).setdefault(name, []).append(float(value))
    table = {split: {row: {name: _stats(values) for name, values in metrics.items()} for row, metrics in rows.items()}
             for split, rows in splits.items()}
    gaps: dict[str, dict] = {}
    for split in splits:
        for row in splits[split]:
            for ref in references:
                if ref == row:
                    continue
                values = [r["results"][split][row][metric] - r["results"][split][ref][metric] for r in runs
                          if _has(r, split, row, metric) and _has(r, split, ref, metric)]
                if not values:
                    continue
                entry = {"values": values, "min": min(values)}
                if queries:
                    entry["noise"] = noise_points(table[split][row][metric]["mean"], table[split][ref][metric]["mean"],
                                                  queries)
                gaps.setdefault(split, {}).setdefault(row, {})[ref] = entry
    return {"runs": [r["source"] for r in runs], "metric": metric, "queries": queries, "splits": table, "gaps": gaps}


def format_summary(summary: Mapping, metric: str | None = None) -> str:
    """Markdown: one table per split, ``mean +- std (run values)`` of ``metric``, then each gap's minimum."""
    metric = metric or summary["metric"]
    lines = [f"{len(summary['runs'])} runs: " + ", ".join(summary["runs"]), ""]
    for split, rows in summary["splits"].items():
        refs = sorted({ref for gaps in summary["gaps"].get(split, {}).values() for ref in gaps})
        header = ["row", f"{metric} mean +- std", "runs"] + [f"- {ref} (min)" for ref in refs]
        body = []
        for row, metrics in rows.items():
            if metric not in metrics:
                continue
            s = metrics[metric]
            cells = [row, f"{s['mean']:.1f} +- {s['std']:.1f}", " / ".join(f"{v:.1f}" for v in s["values"])]
            for ref in refs:
                gap = summary["gaps"].get(split, {}).get(row, {}).get(ref)
                cells.append("" if gap is None else f"{gap['min']:+.1f}" + (f" (noise {gap['noise']:.1f})"
                                                                              if "noise" in gap else ""))
            body.append(cells)
        lines += [f"## {split}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        lines.append("")
    if summary.get("queries"):
        lines.append(f"noise: two standard errors of a gap between two rows' accuracies at their means, "
                     f"{summary['queries']} queries per split; a gap inside it can be chance in one run.")
    return "\n".join(lines) + "\n"


def write_summary(summary: Mapping, out_dir: str | os.PathLike) -> dict[str, Path]:
    """summary.json and summary.md into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "summary.json", "md": out_dir / "summary.md"}
    write_bytes_atomic(paths["json"], (json.dumps(summary, indent=2) + "\n").encode())
    write_bytes_atomic(paths["md"], ("# Summary over runs\n\n" + format_summary(summary)).encode())
    return paths


def _stats(values: list[float]) -> dict:
    return {"values": values, "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _has(run: Mapping, split: str, row: str, metric: str) -> bool:
    return run["results"].get(split, {}).get(row, {}).get(metric) is not None
