"""The `vidssl` command end to end on a tiny generated benchmark."""
import json
import subprocess
import sys


from conftest import tiny_overrides
from vidssl.cli import main


def test_make_benchmark_pretrain_evaluate(tmp_path, capsys):
    root = tmp_path / "bench"
    assert main(["make-benchmark", str(root), "--preset", "tiny", "--workers", "1"]) == 0
    assert (root / "ucfTrainTestlist" / "classInd.txt").is_file()
    run = tmp_path / "run"
    overrides = tiny_overrides(root, run, **{"method.queue_size": 16, "method.proj_hidden": 16})
    assert main(["pretrain", "-c", "configs/demo/moco.yaml", *overrides]) == 0
    assert (run / "backbone.safetensors").is_file()
    assert main(["evaluate", str(run), "--test-split", "1", "--test-split", "2"]) == 0
    results = json.loads((run / "eval.json").read_text())
    assert set(results) == {"split1", "split2"}
    for metrics in results.values():
        assert set(metrics) >= {"R@1", "R@5", "R@10", "R@20", "R@50", "linear_top1"}
        assert all(0 <= v <= 100 for v in metrics.values())
        assert metrics["R@1"] <= metrics["R@5"] <= metrics["R@50"]
    # Random initialisation as the lower reference, from a config alone.
    out = tmp_path / "random.json"
    assert main(["evaluate", "--random", "-c", "configs/demo/base.yaml", *tiny_overrides(root, tmp_path / "r"),
                 "--out", str(out)]) == 0
    assert "R@1" in json.loads(out.read_text())["split1"]


def test_config_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["pretrain", "-c", "configs/demo/moco.yaml", "data.root=/x", "trainer.batch_sise=3"]) == 2
    err = capsys.readouterr().err
    assert "trainer.batch_sise" in err and "Traceback" not in err
    assert main(["pretrain", "-c", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["pretrain", "-c", "configs/demo/moco.yaml", "data.root=/x", "method.queue=3"]) == 2
    assert "method" in capsys.readouterr().err


def test_check_videos_reports_bad_files(tmp_path, capsys):
    import numpy as np

    from vidssl.video.writer import write_video

    write_video(tmp_path / "good.avi", np.zeros((6, 32, 32, 3), np.uint8))
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video")
    out = tmp_path / "report.json"
    assert main(["check-videos", str(tmp_path), "--workers", "1", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    bad = {p.rsplit("/", 1)[-1] for p, *_ in (tuple(x) if isinstance(x, list) else (x["path"],) for x in report["bad"])}
    assert bad == {"empty.mp4", "text.mp4"}


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "vidssl.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("make-benchmark", "pretrain", "evaluate", "extract", "check-videos", "demo"):
        assert command in out.stdout


def test_extract_motion_map_and_reencode(tiny_benchmark, tmp_path):
    cache = tmp_path / "cache"
    assert main(["extract", "motion-map", "--dataset", "ucf101", "--root", str(tiny_benchmark), "--out", str(cache),
                 "--frame-size", "32x32", "--workers", "1"]) == 0
    report = json.loads((cache / "extract_motion-map_rank0.json").read_text())
    assert report["done"] > 0 and not report["failed"]
    # Resumable: a second run finds everything done.
    assert main(["extract", "motion-map", "--dataset", "ucf101", "--root", str(tiny_benchmark), "--out", str(cache),
                 "--frame-size", "32x32", "--workers", "1"]) == 0
    again = json.loads((cache / "extract_motion-map_rank0.json").read_text())
    assert again["done"] == 0 and again["skipped"] == report["done"]
    assert main(["extract", "reencode", "--root", str(tiny_benchmark), "--out", str(tmp_path / "re"),
                 "--size", "48x40", "--workers", "1"]) == 0
    assert len(list((tmp_path / "re").rglob("*.avi"))) == len(list(tiny_benchmark.rglob("*.avi")))
