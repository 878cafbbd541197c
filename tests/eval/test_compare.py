"""`vidssl compare` end to end on the tiny benchmark: report.json, report.html in Chromium, resuming."""
from __future__ import annotations

import json
import os

import pytest

from vidssl.cli import main
from vidssl.eval import compare as compare_module
from vidssl.eval.compare import CONFIG_STAMP, ROW_FILE, compare, resolve_rows, row_config

pytestmark = pytest.mark.slow

METHODS = ["moco", "supervised"]
STEPS = 3


def overrides(bench, out):
    return [f"data.root={bench}", f"data.frame_cache={out / 'frame-cache'}", "data.frame_size=[32,32]",
            "augment.crop_size=28", "model.width=4", "trainer.batch_size=8", f"trainer.max_steps={STEPS}",
            "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_steps=100", "data.num_workers=0",
            "trainer.progress=false", "trainer.threads=1", "eval.num_clips=1", "eval.batch_size=16"]


@pytest.fixture(scope="module")
def compared(tiny_benchmark, tmp_path_factory):
    """One compare run through the CLI, shared by the tests below."""
    out = tmp_path_factory.mktemp("compare") / "out"
    code = main(["compare", "--methods", ",".join(METHODS), "--out", str(out), "--saliency-videos", "2",
                 *overrides(tiny_benchmark, out)])
    assert code == 0
    return tiny_benchmark, out


def test_report_json_holds_the_table_curves_classes_and_pictures(compared):
    bench, out = compared
    report = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in report["rows"]] == METHODS and report["splits"] == ["split1"]
    assert report["ks"] == [1, 5, 10, 20] and len(report["classes"]) == 8
    videos = report["saliency_videos"]
    assert [v["class"] for v in videos] == report["classes"][:2]  # the first test video of the first classes
    for video in videos:
        for key in ("clip", "motion", "flow", "clip_gif"):
            assert (out / video[key]).stat().st_size > 0
    for row in report["rows"]:
        assert row["kind"] == "trained" and row["pretrain_steps"] == STEPS and row["input"] == "8x28x28"
        assert row["backbone"] == "r3d-10 (width 4, 3 input channels)"
        metrics = row["metrics"]["split1"]
        assert set(metrics) >= {"R@1", "R@5", "R@10", "R@20", "linear_top1"}
        assert all(0 <= v <= 100 for v in metrics.values())
        # Per-class accuracy averages (4 test videos per class) to the linear top-1.
        per_class = row["per_class"]["split1"]
        assert list(per_class) == report["classes"]
        assert sum(per_class.values()) / 8 == pytest.approx(metrics["linear_top1"])
        assert row["curve"]["step"] == list(range(1, STEPS + 1)) and len(row["curve"]["loss"]) == STEPS
        # The same test videos for every method.
        assert [p["video"] for p in row["saliency"]] == [v["name"] for v in videos]
        assert all((out / p["strip"]).is_file() and (out / p["gif"]).is_file() for p in row["saliency"])
    assert report["saliency"]["layer"] == "stages.p5" and report["saliency"]["method"] == "grad-cam"
    results = json.loads((out / "results.json").read_text())
    assert results["split1"] == report["results"]["split1"]
    assert results["run"]["rows"]["moco"]["steps"] == STEPS and results["run"]["machine"]["cores"]


def test_report_renders_in_headless_chromium(compared, tmp_path):
    from vidssl.viz.browser import HeadlessChromium, find_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium on this machine: `make test` installs Debian's chromium with apt-get where apt "
                    "is available (or set VIDSSL_CHROMIUM)")
    _, out = compared
    with HeadlessChromium() as browser:
        page = browser.open(out / "report.html")
        shot = browser.screenshot(tmp_path / "report.png")
    assert page.console_errors == [] and page.scripts == 0 and page.external == []
    results = [t for t in page.tables if t["className"] == "results"]
    assert [t["split"] for t in results] == ["split1"]
    assert results[0]["rows"] == 1 + len(METHODS) and results[0]["height"] > 0
    assert sum(t["className"] == "saliency" for t in page.tables) == 2
    # Charts (loss, R@k, per class) + per video: clip, motion, flow, clip GIF, one strip and one GIF per method.
    assert len(page.images) == 3 + 2 * (4 + 2 * len(METHODS))
    assert all(i["complete"] and i["naturalWidth"] > 0 and i["naturalHeight"] > 0 for i in page.images), page.images
    assert shot.stat().st_size > 10_000


def test_a_rerun_reuses_finished_rows_and_scores_a_trained_unscored_row_without_training(compared, monkeypatch):
    bench, out = compared
    before = json.loads((out / "results.json").read_text())["split1"]

    def no_training(jobs):
        raise AssertionError(f"retrained {[name for name, _ in jobs]}")

    monkeypatch.setattr(compare_module, "_pretrain_in_fresh_process", no_training)
    stamps = {m: (out / m / ROW_FILE).stat().st_mtime_ns for m in METHODS}
    again = compare(METHODS, out, overrides=overrides(bench, out), saliency_videos=2)
    assert again["split1"] == before
    assert {m: (out / m / ROW_FILE).stat().st_mtime_ns for m in METHODS} == stamps  # reused, not recomputed

    (out / "moco" / ROW_FILE).unlink()  # as if interrupted between training and scoring
    third = compare(METHODS, out, overrides=overrides(bench, out), saliency_videos=2)
    assert third["split1"] == before  # the same weights score the same
    assert (out / "supervised" / ROW_FILE).stat().st_mtime_ns == stamps["supervised"]
    assert (out / "moco" / ROW_FILE).is_file()


def test_a_row_made_with_another_config_is_removed_whole(tmp_path):
    row = resolve_rows(["moco"])[0]
    cfg = row_config(row, tmp_path, overrides=["data.root=/nowhere"])
    row_dir = tmp_path / "moco"
    row_dir.mkdir()
    (row_dir / CONFIG_STAMP).write_text("trainer:\n  max_steps: 1\n")
    (row_dir / "backbone.safetensors").write_bytes(b"old weights")
    compare_module._claim_row_dir(row, cfg)
    assert not (row_dir / "backbone.safetensors").exists()
    assert (row_dir / CONFIG_STAMP).read_text() == compare_module.to_yaml(cfg)
    (row_dir / "backbone.safetensors").write_bytes(b"weights of this config")
    compare_module._claim_row_dir(row, cfg)  # same config: kept
    assert (row_dir / "backbone.safetensors").is_file()


def test_a_row_stamped_before_a_setting_existed_is_kept(tmp_path):
    # eval.protocol and eval.clip_pool were added after rows had been made: a stamp without them,
    # where the config holds their defaults, is the same row; a non-default value or any other change is not.
    import yaml

    row = resolve_rows(["moco"])[0]
    cfg = row_config(row, tmp_path, overrides=["data.root=/nowhere"])
    stamp = yaml.safe_load(compare_module.to_yaml(cfg))
    del stamp["eval"]["protocol"], stamp["eval"]["clip_pool"]
    older = yaml.safe_dump(stamp)
    assert compare_module.same_config(older, cfg)
    row_dir = tmp_path / "moco"
    row_dir.mkdir()
    (row_dir / CONFIG_STAMP).write_text(older)
    (row_dir / "backbone.safetensors").write_bytes(b"weights")
    compare_module._claim_row_dir(row, cfg)
    assert (row_dir / "backbone.safetensors").is_file()
    for change in (["eval.protocol=clips"], ["eval.clip_pool=[1,1,1]"], ["trainer.max_steps=7"]):
        assert not compare_module.same_config(older, row_config(row, tmp_path, overrides=["data.root=/nowhere", *change]))
    assert not compare_module.same_config(None, cfg) and not compare_module.same_config("{: not yaml", cfg)


def test_rows_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match=r"no recipe for 'nope'.*moco") as err:
        compare(["moco", "nope"], tmp_path / "out", overrides=["data.root=/nowhere"])
    assert "random, scene-only, motion-only" in str(err.value)
    with pytest.raises(ValueError, match="given twice: moco"):
        resolve_rows(["moco", "moco"])
    assert not (tmp_path / "out").exists()
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("defaults: [" + os.fspath(resolve_rows(["moco"])[0].recipe.parent / "moco.yaml") + "]\n")
    rows = resolve_rows(["random", str(recipe)])
    assert [(r.name, r.kind) for r in rows] == [("random", "random"), ("mine", "trained")]
    assert rows[0].recipe == recipe  # no base.yaml beside it: the untrained rows take the trained row's settings
    assert resolve_rows(["random", "moco"])[0].recipe.name == "base.yaml"
