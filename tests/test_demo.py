"""`vidssl demo` end to end on the tiny benchmark: rows, results files, frame cache, reuse."""
from __future__ import annotations

import json

import pytest

from vidssl.demo import run_demo

pytestmark = pytest.mark.slow

TINY = ["model.width=4", "trainer.batch_size=8", "trainer.max_steps=3", "data.num_workers=0",
        "trainer.progress=false", "eval.num_clips=1", "eval.batch_size=16", "data.frame_size=[32,32]",
        "augment.crop_size=28"]


def test_demo_writes_the_table_and_reuses_finished_rows(tmp_path):
    out, data = tmp_path / "demo", tmp_path / "bench"
    rows = ["scene-only", "random", "supervised"]
    results = run_demo(out, data, budget=20, methods=rows, preset="tiny", extra_overrides=TINY)

    saved = json.loads((out / "results.json").read_text())
    assert saved["wall_seconds"] > 0
    for split in ("decorrelated", "biased"):
        assert list(saved[split]) == rows == list(results[split])
        for metrics in saved[split].values():
            assert set(metrics) >= {"R@1", "R@5", "R@10", "R@20", "R@50", "linear_top1"}
            assert all(0 <= v <= 100 for v in metrics.values())
    assert (out / "results.md").is_file() and (out / "results.png").is_file()
    # The trained row ran in its own process and left a complete run directory.
    summary = json.loads((out / "supervised" / "pretrain_summary.json").read_text())
    assert summary["steps"] == 3 and (out / "supervised" / "backbone.safetensors").is_file()
    # Every video the rows read was decoded once into the frame cache.
    assert len(list((out / "frame-cache" / "32x32").rglob("*.npy"))) == 32 + 32 + 32  # train, two test lists

    stamp = (out / "supervised" / "eval.json").stat().st_mtime_ns
    again = run_demo(out, data, budget=20, methods=rows, preset="tiny", extra_overrides=TINY)
    assert again == results
    assert (out / "supervised" / "eval.json").stat().st_mtime_ns == stamp  # reused, not recomputed


def test_unknown_demo_row_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown row"):
        run_demo(tmp_path / "demo", tmp_path / "bench", methods=["nope"], preset="tiny")
    assert not (tmp_path / "bench").exists()  # checked before anything is generated
