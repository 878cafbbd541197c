import json

import numpy as np
import pytest

from vidssl.eval.report import format_table, write_results

RESULTS = {
    "biased": {
        "supervised": {"R@1": 80.0, "R@5": 95.5, "linear_top1": 90.25},
        "moco": {"R@1": 70.0, "R@5": 90.0, "linear_top1": 75.0},
    },
    "decorrelated": {
        "supervised": {"R@1": 40.0, "R@5": 60.0, "linear_top1": 50.0, "R@10": 70.0},
        "moco": {"R@1": 12.5, "R@5": 33.0},  # no linear probe for this one
        "pace": {"R@1": 30.0, "R@5": 55.0, "linear_top1": np.float32(45.0)},
    },
}


def test_format_table_layout():
    table = format_table(RESULTS)
    lines = table.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    # decorrelated first, then biased, whatever the dict order
    assert header == ["method", "decorrelated R@1", "decorrelated R@5", "decorrelated linear top-1",
                      "biased R@1", "biased R@5", "biased linear top-1"]
    assert set(lines[1]) <= {"|", "-", ":"}
    rows = {cells[0]: cells[1:] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    assert list(rows) == ["supervised", "moco", "pace"]
    assert rows["supervised"] == ["40.0", "60.0", "50.0", "80.0", "95.5", "90.2"]
    assert rows["moco"] == ["12.5", "33.0", "-", "70.0", "90.0", "75.0"]
    assert rows["pace"][3:] == ["-", "-", "-"]  # not evaluated on the biased split
    assert len({len(line) for line in lines}) == 1  # columns aligned


def test_write_results_files(tmp_path):
    paths = write_results(RESULTS, tmp_path / "out", wall_seconds=12.34,
                          explanation="Motion-aware methods win on the decorrelated split.")
    data = json.loads(paths["json"].read_text())
    assert data["wall_seconds"] == pytest.approx(12.34)
    assert data["decorrelated"]["supervised"]["R@10"] == 70.0
    assert data["decorrelated"]["pace"]["linear_top1"] == 45.0
    assert set(data) == {"biased", "decorrelated", "wall_seconds"}

    md = paths["md"].read_text()
    assert "Motion-aware methods win on the decorrelated split." in md
    assert format_table(RESULTS) in md
    assert "12.3 s" in md

    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread
    image = imread(paths["png"])
    assert image.shape[1] > image.shape[0] > 100  # two panels side by side
    assert image[..., :3].std() > 0.05  # something was drawn
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "results.json", "results.md", "results.png"]  # no temp files left behind


def test_write_results_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match="decorrelated/moco/R@1"):
        write_results({"decorrelated": {"moco": {"R@1": "high"}}}, tmp_path, 1.0)
    with pytest.raises(ValueError, match="wall_seconds"):
        write_results({"wall_seconds": {}}, tmp_path, 1.0)
    with pytest.raises(ValueError, match="empty"):
        format_table({})
