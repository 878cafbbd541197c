"""`vidssl demo` end to end on the tiny benchmark: rows, results files, report, frame cache, reuse."""
from __future__ import annotations

import json

import pytest

from vidssl.demo import run_demo
from vidssl.eval.compare import ROW_FILE

pytestmark = pytest.mark.slow

TINY = ["model.width=4", "trainer.batch_size=8", "data.num_workers=0",
        "trainer.progress=false", "eval.num_clips=1", "eval.batch_size=16", "data.frame_size=[32,32]",
        "augment.crop_size=28"]


def test_quick_demo_writes_the_table_and_report_records_its_seeds_and_reuses_finished_rows(tmp_path, capsys):
    out, data = tmp_path / "demo", tmp_path / "bench"
    rows = ["scene-only", "random", "supervised"]
    results = run_demo(out, data, methods=rows, preset="tiny", extra_overrides=TINY, seed=3, train_seed=5,
                       quick=True, steps=2)

    saved = json.loads((out / "results.json").read_text())
    assert saved["wall_seconds"] > 0
    # What the numbers depend on travels with them: steps taken, precision, seeds, machine.
    run = saved.pop("run")
    assert run["rows"]["supervised"].items() >= {"steps": 2, "budget_steps": 2, "seed": 5,
                                                 "precision": "32-true"}.items()
    assert run["benchmark"] == {"preset": "tiny", "seed": 3} and run["machine"]["cores"] and run["quick"]
    assert json.loads((data / "benchmark.json").read_text())["seed"] == 3
    markdown = (out / "results.md").read_text()
    assert "QUICK SMOKE RUN" in markdown and "QUICK SMOKE RUN" in capsys.readouterr().out
    assert "Budget: supervised 2 steps; precision 32-true; benchmark tiny seed 3" in markdown
    for split in ("decorrelated", "biased"):
        assert list(saved[split]) == rows == list(results[split])
        for metrics in saved[split].values():
            assert set(metrics) >= {"R@1", "R@5", "R@10", "R@20", "R@50", "linear_top1"}
            assert all(0 <= v <= 100 for v in metrics.values())
    assert (out / "results.png").is_file()
    # The demo is compare: its report, with the calibration row and the demo's columns.
    report = json.loads((out / "report.json").read_text())
    assert report["splits"] == ["decorrelated", "biased"] and [r["name"] for r in report["rows"]] == rows
    assert [r["kind"] for r in report["rows"]] == ["calibration", "random", "trained"]
    assert report["rows"][0]["saliency"] == [] and len(report["rows"][1]["saliency"]) == 3
    assert "QUICK SMOKE RUN" in report["explanation"] and "data:image/png;base64," in (out / "report.html").read_text()
    # The trained row ran in its own process and left a complete run directory.
    summary = json.loads((out / "supervised" / "pretrain_summary.json").read_text())
    assert summary["steps"] == 2 and (out / "supervised" / "backbone.safetensors").is_file()
    # Every video the rows read was decoded once into the frame cache.
    assert len(list((out / "frame-cache" / "32x32").rglob("*.npy"))) == 32 + 32 + 32  # train, two test lists

    stamp = (out / "supervised" / ROW_FILE).stat().st_mtime_ns
    again = run_demo(out, data, methods=rows, preset="tiny", extra_overrides=TINY, seed=3, train_seed=5,
                     quick=True, steps=2)
    assert again == results
    assert (out / "supervised" / ROW_FILE).stat().st_mtime_ns == stamp  # reused, not recomputed
    with pytest.raises(ValueError, match="--steps"):
        run_demo(out, data, methods=["random"], preset="tiny", seed=3, steps=0)


def test_unknown_demo_row_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown row"):
        run_demo(tmp_path / "demo", tmp_path / "bench", methods=["nope"], preset="tiny")
    assert not (tmp_path / "bench").exists()  # checked before anything is generated


def test_each_demo_column_is_scored_against_its_own_splits_train_list(tmp_path):
    from vidssl import demo
    from vidssl.eval.compare import evaluation_lists, resolve_rows, row_config

    root = tmp_path / "ucf"
    for cls in ("A", "B"):
        for g in (1, 2, 3):
            (root / cls).mkdir(parents=True, exist_ok=True)
            (root / cls / f"v_{cls}_g0{g}_c01.avi").write_bytes(b"")
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 A\n2 B\n")
    clip = "{c}/v_{c}_g0{g}_c01.avi"
    for split, (train_g, test_g) in {1: (1, 2), 2: (2, 3)}.items():  # split 2 tests on split 1's train group
        (lists / f"trainlist0{split}.txt").write_text("".join(f"{clip.format(c=c, g=train_g)} {i + 1}\n"
                                                              for i, c in enumerate("AB")))
        (lists / f"testlist0{split}.txt").write_text("".join(f"{clip.format(c=c, g=test_g)}\n" for c in "AB"))
    cfg = row_config(resolve_rows(["random"], demo.demo_config_dir())[0], tmp_path, overrides=[f"data.root={root}"])
    lists = evaluation_lists(cfg, demo.SPLITS)
    assert {name: (train.name, test.name) for name, (train, test) in lists.items()} == {
        "decorrelated": ("ucf101-split1-train", "ucf101-split1-test"),
        "biased": ("ucf101-split2-train", "ucf101-split2-test")}
