import json
import math
import subprocess
import sys

import pytest

from vidssl.eval.runs import format_summary, load_run, noise_points, summarize_runs, write_summary


def _run(folder, pace, moco, random, wall=100.0):
    folder.mkdir(parents=True)
    results = {"decorrelated": {"pace": {"R@1": pace, "linear_top1": pace + 1}, "moco": {"R@1": moco},
                                "random": {"R@1": random}},
               "biased": {"moco": {"R@1": 40.0}}, "wall_seconds": wall, "run": {"benchmark": {"seed": 0}}}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_mean_spread_and_smallest_gap_over_runs(tmp_path):
    runs = [load_run(_run(tmp_path / "a", 33.5, 15.5, 21.0)), load_run(_run(tmp_path / "b", 30.0, 14.0, 25.0))]
    summary = summarize_runs(runs, queries=200)
    pace = summary["splits"]["decorrelated"]["pace"]["R@1"]
    assert pace["values"] == [33.5, 30.0] and pace["mean"] == pytest.approx(31.75)
    assert pace["std"] == pytest.approx(math.sqrt(((33.5 - 31.75) ** 2 + (30.0 - 31.75) ** 2) / 1))
    gap = summary["gaps"]["decorrelated"]["pace"]
    assert gap["random"]["values"] == [12.5, 5.0] and gap["random"]["min"] == 5.0 and gap["moco"]["min"] == 16.0
    # the noise band of the gap at the two rows' means, computed here from the binomial formula
    a, b = 0.3175, 0.23
    assert gap["random"]["noise"] == pytest.approx(2 * 100 * math.sqrt((a * (1 - a) + b * (1 - b)) / 200))
    assert "moco" not in gap["moco"] and "pace" not in summary["gaps"].get("biased", {})
    text = format_summary(summary)
    assert "31.8 +- 2.5" in text and "+5.0 (noise" in text and "## biased" in text
    paths = write_summary(summary, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["splits"]["decorrelated"]["moco"]["R@1"]["mean"] == 14.75


def test_noise_points_and_bad_inputs(tmp_path):
    assert noise_points(50.0, 50.0, 200) == pytest.approx(10.0)
    assert noise_points(0.0, 100.0, 200) == 0.0
    with pytest.raises(ValueError, match="queries"):
        noise_points(50, 50, 0)
    with pytest.raises(FileNotFoundError, match="no results.json"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_run(tmp_path)
    with pytest.raises(ValueError, match="no runs"):
        summarize_runs([])


def test_cli_prints_and_writes_the_summary(tmp_path):
    a, b = _run(tmp_path / "a", 33.5, 15.5, 21.0), _run(tmp_path / "b", 30.0, 14.0, 25.0)
    out = subprocess.run([sys.executable, "-m", "vidssl.cli", "summarize", str(a), str(b), "--queries", "200",
                          "--out", str(tmp_path / "s")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "| pace | 31.8 +- 2.5 | 33.5 / 30.0 |" in out.stdout
    assert (tmp_path / "s" / "summary.md").is_file()
    missing = subprocess.run([sys.executable, "-m", "vidssl.cli", "summarize", str(tmp_path / "nope")],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "no results.json" in missing.stderr
