"""One self-contained HTML page for a comparison: tables, charts and saliency strips, nothing external.

Every picture is inlined as a base64 ``data:`` URI and the style sheet sits in the page, so the
file can be mailed, archived or opened offline and shows the same thing; the page has no
script. The page renders the dictionary ``vidssl compare`` writes as report.json (see
:mod:`vidssl.eval.compare` for its keys); pictures named there by a path relative to the
report's folder are read from it.
"""
from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Mapping

__all__ = ["render_report_html", "data_uri"]

_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 24px auto;
       max-width: 1200px; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.note, p.meta { color: #555; } p.meta { font-size: 12px; }
table.results { border-collapse: collapse; margin: 8px 0 16px; font-variant-numeric: tabular-nums; }
table.results th, table.results td { padding: 4px 10px; border-bottom: 1px solid #e4e4e4; text-align: right; }
table.results th { background: #f5f5f7; border-bottom: 2px solid #ccc; }
table.results td.name, table.results th.name, table.results td.text { text-align: left; }
table.results tr.calibration td { color: #666; font-style: italic; }
table.results td.best { font-weight: 700; }
table.saliency td { padding: 2px 8px 2px 0; vertical-align: middle; }
table.saliency td.label { font-size: 12px; color: #333; white-space: nowrap; text-align: right; }
table.saliency td.head { font-size: 11px; color: #777; }
table.saliency td + td + td { padding-left: 14px; }
img { image-rendering: pixelated; max-width: 100%; }
img.chart { image-rendering: auto; }
"""


def data_uri(data: bytes, suffix: str = ".png") -> str:
    """``data:<mime>;base64,...`` for image bytes of the type ``suffix`` names."""
    mime = _MIME.get(suffix.lower())
    if mime is None:
        raise ValueError(f"no image type for {suffix!r}; expected one of {sorted(_MIME)}")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def render_report_html(report: Mapping, base_dir: str | Path, charts: Mapping[str, bytes] | None = None) -> str:
    """The page for ``report`` (report.json's dictionary); ``charts`` maps a chart's name
    ("loss_curves", "recall_bars", "per_class/<split>", "color_wheel") to PNG bytes."""
    base_dir = Path(base_dir)
    charts = dict(charts or {})
    esc = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             f"<title>{esc(report.get('title', 'vidssl compare'))}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{esc(report.get('title', 'vidssl compare'))}</h1>"]
    if report.get("budget"):
        parts.append(f"<p><b>{esc(report['budget'])}</b></p>")
    for paragraph in re.split(r"\n\s*\n", report.get("explanation", "").strip()):
        if paragraph.strip():
            parts.append(f"<p class=\"note\">{_inline_markup(paragraph)}</p>")

    parts.append("<h2>Results</h2>")
    parts.append("<p class=\"note\">R@k: share of test videos with a training video of the same class among their k "
                 "nearest neighbours (cosine similarity of clip-averaged features). Linear top-1: accuracy of a "
                 "linear classifier trained on the frozen features of the training list. Each test list is scored "
                 "against the training list of its own split.</p>")
    for split in report["splits"]:
        parts.append(f"<h3>Test list: {esc(split)}</h3>")
        parts.append(_results_table(report, split))

    sections = [("loss_curves", "Training loss", "Per optimiser step, as the run logged it (metrics.jsonl)."),
                ("recall_bars", "Retrieval recall", "R@k per row and split.")]
    for key, title, note in sections:
        if key in charts:
            parts.append(f"<h2>{title}</h2><p class=\"note\">{note}</p>")
            parts.append(_img(data_uri(charts[key]), title, css="chart"))
    per_class = [s for s in report["splits"] if f"per_class/{s}" in charts]
    if per_class:
        parts.append("<h2>Per-class accuracy</h2><p class=\"note\">Linear-probe top-1 per class of each test "
                     "list.</p>")
        for split in per_class:
            parts.append(_img(data_uri(charts[f"per_class/{split}"]), f"per-class accuracy, {split}", css="chart"))

    videos = report.get("saliency_videos") or []
    if videos:
        parts.append(_saliency_section(report, videos, base_dir, charts.get("color_wheel")))

    meta = report.get("run", {}).get("machine", {})
    footer = []
    if meta:
        footer.append(f"{meta.get('cpu') or 'unknown CPU'}, {meta.get('cores')} cores, Python {meta.get('python')}, "
                      f"torch {meta.get('torch')}")
    if report.get("wall_seconds") is not None:
        footer.append(f"wall time {float(report['wall_seconds']):.0f} s")
    if footer:
        parts.append(f"<p class=\"meta\">{esc('; '.join(footer))}. The numbers and settings behind this page are in "
                     f"report.json beside it.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _results_table(report: Mapping, split: str) -> str:
    esc = html.escape
    ks = [int(k) for k in report.get("ks", (1, 5, 10, 20))]
    metrics = [f"R@{k}" for k in ks] + ["linear_top1"]
    titles = [f"R@{k}" for k in ks] + ["Linear top-1"]
    rows = report["rows"]
    # Bold the best learned row per column (calibration rows are references, not competitors).
    best = {}
    for m in metrics:
        values = [r["metrics"].get(split, {}).get(m) for r in rows if r.get("kind") != "calibration"]
        values = [v for v in values if v is not None and math.isfinite(v)]
        best[m] = max(values) if values else None
    head = ("<tr><th class=\"name\">Method</th><th class=\"name\">Backbone</th><th class=\"name\">Input</th>"
            "<th>Pretrain steps</th>" + "".join(f"<th>{t}</th>" for t in titles) + "</tr>")
    body = []
    for r in rows:
        cells = [f"<td class=\"name\">{esc(r['name'])}</td>", f"<td class=\"text\">{esc(r.get('backbone') or '-')}</td>",
                 f"<td class=\"text\">{esc(r.get('input') or '-')}</td>",
                 f"<td>{esc(str(r['pretrain_steps'])) if r.get('pretrain_steps') is not None else '-'}</td>"]
        for m in metrics:
            value = r["metrics"].get(split, {}).get(m)
            mark = " class=\"best\"" if value is not None and value == best[m] and r.get("kind") != "calibration" else ""
            cells.append(f"<td{mark}>{'-' if value is None else f'{float(value):.1f}'}</td>")
        kind = " class=\"calibration\"" if r.get("kind") == "calibration" else ""
        body.append(f"<tr{kind}>" + "".join(cells) + "</tr>")
    return f"<table class=\"results\" data-split=\"{esc(split)}\"><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _saliency_section(report: Mapping, videos, base_dir: Path, wheel: bytes | None) -> str:
    esc = html.escape
    how = report.get("saliency", {})
    out = ["<h2>Where each network looks</h2>",
           f"<p class=\"note\">{esc(how.get('description', ''))} The same test videos for every row; below each "
           "clip its motion map (motion boundaries of the optical flow, MCL eq. 1) and its flow on the colour wheel "
           "(hue: direction, brightness: speed). A network that learned motion lights up the moving object; one "
           "that learned the scene lights up the background.</p>"]
    if wheel:
        out.append(f"<p class=\"note\">Flow colours: {_img(data_uri(wheel), 'flow colour wheel', css='chart')}</p>")
    by_video = {}
    for r in report["rows"]:
        for item in r.get("saliency") or []:
            by_video.setdefault(item["video"], []).append((r["name"], item))
    for video in videos:
        out.append(f"<h3>{esc(video.get('title', video['name']))} (class {esc(video['class'])})</h3>"
                   "<table class=\"saliency\"><tr><td></td><td class=\"head\">each frame of the clip; last panel: the "
                   "average over time (clip: the middle frame; flow: the colour wheel)</td>"
                   "<td class=\"head\">animated</td></tr>")
        for label, key in (("clip", "clip"), ("motion map", "motion"), ("flow", "flow")):
            if video.get(key):
                gif = _file_img(base_dir, video[f"{key}_gif"], f"{label} animated") if video.get(f"{key}_gif") else ""
                out.append(f"<tr><td class=\"label\">{label}</td><td>{_file_img(base_dir, video[key], label)}</td>"
                           f"<td>{gif}</td></tr>")
        for name, item in by_video.get(video["name"], []):
            gif = _file_img(base_dir, item["gif"], f"{name} animated") if item.get("gif") else ""
            out.append(f"<tr><td class=\"label\">{esc(name)}</td><td>{_file_img(base_dir, item['strip'], name)}</td>"
                       f"<td>{gif}</td></tr>")
        out.append("</table>")
    return "\n".join(out)


def _file_img(base_dir: Path, relative: str, alt: str) -> str:
    path = base_dir / relative
    if not path.is_file():
        raise FileNotFoundError(f"report picture missing: {path} (named in report.json)")
    return _img(data_uri(path.read_bytes(), path.suffix), alt)


def _img(uri: str, alt: str, css: str = "") -> str:
    cls = f" class=\"{css}\"" if css else ""
    return f"<img{cls} src=\"{uri}\" alt=\"{html.escape(alt)}\">"


def _inline_markup(text: str) -> str:
    """Escape, then the one markdown emphasis the explanations use: ``**bold**``."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text)).replace("\n", " ")
