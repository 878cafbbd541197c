"""The report page: self-contained (pictures inlined, no script, nothing external), tables per split."""
from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from vidssl.viz import pictures as pic
from vidssl.viz.html import data_uri, render_report_html


def report(strip: str) -> dict:
    row = lambda name, kind, r1: {"name": name, "kind": kind, "backbone": "r3d-10 (width 4, 3 input channels)",
                                  "input": "8x28x28", "pretrain_steps": 3 if kind == "trained" else None,
                                  "metrics": {s: {"R@1": r1, "R@5": 50.0, "linear_top1": 20.0} for s in ("a", "b")},
                                  "per_class": {}, "saliency": [{"video": "v0", "strip": strip}] if kind != "calibration" else []}
    return {"title": "t <&>", "budget": "Budget: 3 steps", "explanation": "One **bold** word.\n\nSecond paragraph.",
            "splits": ["a", "b"], "ks": [1, 5], "rows": [row("scene-only", "calibration", 90.0), row("moco", "trained", 30.0),
                                                         row("pace<x>", "trained", 40.0)],
            "saliency_videos": [{"name": "v0", "title": "v0.avi", "class": "Orbit", "clip": strip}],
            "saliency": {"description": "Grad-CAM."}, "run": {"machine": {"cpu": "cpu", "cores": 2}}, "wall_seconds": 3}


def test_page_inlines_every_picture_and_lays_out_one_table_per_split(tmp_path):
    image = pic.strip(np.zeros((2, 4, 4, 3), np.uint8))
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "s.png").write_bytes(pic.png_bytes(image))
    page = render_report_html(report("pics/s.png"), tmp_path, {"recall_bars": pic.png_bytes(image)})
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(sources) == 1 + 1 + 2  # chart, clip strip, two network rows
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert base64.b64decode(sources[1].split(",", 1)[1]) == (tmp_path / "pics" / "s.png").read_bytes()
    assert page.count('<table class="results"') == 2 and 'data-split="b"' in page
    assert "pace&lt;x&gt;" in page and "t &lt;&amp;&gt;" in page and "<b>bold</b>" in page
    # The best learned row is bold; the calibration row (90.0) is a reference, not a competitor.
    assert '<td class="best">40.0</td>' in page and '<td class="best">90.0</td>' not in page


def test_a_missing_picture_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.png"):
        render_report_html(report("gone.png"), tmp_path)
    with pytest.raises(ValueError, match="no image type"):
        data_uri(b"x", ".svg")
