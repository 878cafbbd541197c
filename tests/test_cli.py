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
    # DSM's clip-level protocol: the tiny preset's 16-frame videos hold two 4-frame clips at stride 2.
    clips = tmp_path / "clips.json"
    assert main(["evaluate", str(run), "eval.protocol=clips", "eval.clip_len=4", "eval.stride=2",
                 "--out", str(clips)]) == 0
    metrics = json.loads(clips.read_text())["split1"]
    assert metrics["query_clips"] == 2 * metrics["query_videos"] and metrics["gallery_clips"] == 2 * metrics[
        "gallery_videos"]
    assert 0 <= metrics["R@1"] <= metrics["R@5"] <= 100 and "linear_top1" not in metrics
    assert "query_clips" in capsys.readouterr().out


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
    for command in ("make-benchmark", "pretrain", "evaluate", "extract", "check-videos", "finetune", "compare", "demo",
                    "summarize"):
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


def _ucf_layout(root):
    """Four empty 'videos' in two classes; split 2 trains on what split 1 tests and the other way round."""
    names = {"a0": "ClassA", "a1": "ClassA", "b0": "ClassB", "b1": "ClassB"}
    for name, cls in names.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        (root / cls / f"v_{cls}_g0{name[1]}_c01.avi").write_bytes(b"")
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ClassA\n2 ClassB\n")
    path = {name: f"{cls}/v_{cls}_g0{name[1]}_c01.avi" for name, cls in names.items()}
    for split, (train, test) in {1: (("a0", "b0"), ("a1", "b1")), 2: (("a1", "b1"), ("a0", "b0"))}.items():
        (lists / f"trainlist0{split}.txt").write_text("".join(f"{path[n]} {1 + (n[0] == 'b')}\n" for n in train))
        (lists / f"testlist0{split}.txt").write_text("".join(f"{path[n]}\n" for n in test))


def test_evaluate_scores_each_test_split_against_its_own_train_list(tmp_path, monkeypatch):
    import numpy as np

    from vidssl.eval import protocol
    from vidssl.eval.features import FeatureSet

    extracted = []

    def fake_extract(backbone, catalog, desc, **kwargs):  # no decoding: record which list is which
        extracted.append((desc, catalog.name))
        return FeatureSet(np.random.default_rng(len(extracted)).normal(size=(len(catalog), 4)).astype(np.float32),
                          catalog.labels(), catalog.paths())

    monkeypatch.setattr(protocol, "extract_features", fake_extract)
    _ucf_layout(tmp_path / "ucf")
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--random", "-c", "configs/demo/base.yaml", *tiny_overrides(tmp_path / "ucf", tmp_path / "r"),
                 "--test-split", "2", "--test-split", "1", "--out", str(out), "--device", "cpu"]) == 0
    assert list(json.loads(out.read_text())) == ["split2", "split1"]
    # testlist02 holds trainlist01's videos: it is scored against trainlist02, never trainlist01.
    assert extracted == [("train", "ucf101-split2-train"), ("split2", "ucf101-split2-test"),
                         ("train", "ucf101-split1-train"), ("split1", "ucf101-split1-test")]


def test_folder_dataset_evaluates_a_held_out_split_recorded_by_pretraining(tmp_path, capsys):
    import numpy as np

    from vidssl.video.writer import write_video

    root = tmp_path / "videos"
    rng = np.random.default_rng(0)
    for cls in ("left", "right"):
        for i in range(4):
            (root / cls).mkdir(parents=True, exist_ok=True)
            write_video(root / cls / f"{cls}{i}.avi", rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8))
    folder = {"data.dataset": "folder", "model.width": 4, "trainer.max_steps": 2, "trainer.batch_size": 2,
              "eval.num_clips": 1}
    # No test list: the training videos would be scored against themselves (R@1 100): refused.
    assert main(["evaluate", "--random", "-c", "configs/demo/base.yaml",
                 *tiny_overrides(root, tmp_path / "r", **folder), "--out", str(tmp_path / "x.json")]) == 2
    assert "no test list" in capsys.readouterr().err and not (tmp_path / "x.json").exists()

    run = tmp_path / "run"
    overrides = tiny_overrides(root, run, **folder, **{"data.test_fraction": 0.5, "data.split_seed": 1})
    assert main(["pretrain", "-c", "configs/demo/supervised.yaml", *overrides]) == 0
    split = json.loads((run / "data_split.json").read_text())
    assert len(split["train"]) == len(split["test"]) == 4 and not set(split["train"]) & set(split["test"])
    assert main(["evaluate", str(run), "--device", "cpu"]) == 0
    results = json.loads((run / "eval.json").read_text())
    assert list(results) == ["test"] and 0 <= results["test"]["R@1"] <= 100


def test_overrides_are_accepted_before_between_and_after_options():
    from vidssl.cli import build_parser

    parser = build_parser()
    for argv in (["evaluate", "runs/x", "--test-split", "1", "data.frame_cache=DIR"],
                 ["evaluate", "data.frame_cache=DIR", "--test-split", "1", "runs/x"],
                 ["evaluate", "--test-split", "1", "runs/x", "data.frame_cache=DIR"]):
        args = parser.parse_args(argv)
        assert (sorted(args.targets), args.test_split) == (["data.frame_cache=DIR", "runs/x"], [1]), argv
    for argv in (["pretrain", "-c", "a.yaml", "x=1", "--resume", "y=2"],
                 ["pretrain", "x=1", "y=2", "-c", "a.yaml", "--resume"],
                 ["pretrain", "--resume", "-c", "a.yaml", "x=1", "y=2"]):
        args = parser.parse_args(argv)
        assert (args.config, args.overrides, args.resume) == (["a.yaml"], ["x=1", "y=2"], True), argv
    args = parser.parse_args(["evaluate", "--random", "a=1", "-c", "a.yaml", "b=2", "--out", "o.json"])
    assert (args.targets, args.config, args.out) == (["a=1", "b=2"], ["a.yaml"], "o.json")


def test_override_after_options_reaches_the_config(tmp_path, capsys):
    # A config error after the options proves the override was parsed (not "unrecognized arguments").
    assert main(["pretrain", "-c", "configs/demo/moco.yaml", "data.root=/x", "--resume", "trainer.batch_sise=3"]) == 2
    assert "trainer.batch_sise" in capsys.readouterr().err


def test_check_videos_prints_damaged_files_reads_csv_and_refuses_empty_input(tmp_path, capsys):
    import numpy as np

    from vidssl.video.writer import write_video

    root = tmp_path / "videos"
    write_video(root / "walk" / "good.avi", np.zeros((6, 32, 32, 3), np.uint8))
    write_video(root / "walk" / "whole.avi", np.random.default_rng(0).integers(0, 256, (30, 48, 48, 3), np.uint8), gop=5)
    data = (root / "walk" / "whole.avi").read_bytes()
    (root / "walk" / "cut.avi").write_bytes(data[: int(len(data) * 0.6)])
    (root / "walk" / "whole.avi").unlink()
    out = tmp_path / "report.json"
    assert main(["check-videos", str(root), "--workers", "1", "--out", str(out)]) == 0  # damaged is still readable
    printed = capsys.readouterr().out
    assert "2 readable, 0 unreadable, 1 damaged" in printed
    assert f"damaged {root / 'walk' / 'cut.avi'}: " in printed and "cut off" in printed
    assert [d["path"] for d in json.loads(out.read_text())["damaged"]] == [str(root / "walk" / "cut.avi")]
    # The path,label CSV that data.dataset=csv trains on.
    csv = tmp_path / "train.csv"
    csv.write_text("path,label\nwalk/good.avi,walk\nwalk/cut.avi,walk\n")
    assert main(["check-videos", str(csv), "--root", str(root), "--workers", "1", "--out", str(out)]) == 0
    assert "2 readable, 0 unreadable, 1 damaged" in capsys.readouterr().out
    (tmp_path / "nothing").mkdir()
    assert main(["check-videos", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "no videos to check" in capsys.readouterr().err


def test_extract_exits_non_zero_when_a_video_failed(tmp_path, capsys):
    import numpy as np

    from vidssl.video.writer import write_video

    root = tmp_path / "videos"
    write_video(root / "walk" / "good.avi", np.zeros((6, 32, 32, 3), np.uint8))
    (root / "walk" / "broken.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 20)
    args = ["extract", "motion-map", "--root", str(root), "--out", str(tmp_path / "cache"), "--workers", "1"]
    assert main(args) == 1
    assert "1 computed, 0 already there, 1 failed" in capsys.readouterr().out
    (root / "walk" / "broken.avi").unlink()
    assert main(args) == 0


def test_evaluate_scores_any_named_network_of_a_run(tiny_benchmark, tmp_path, capsys):
    import two_networks  # registers the "two-networks" test method: backbone + iframe (RGB) + motion (2 channels)

    from vidssl.config import load_config

    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_benchmark, run, **{"method.name": two_networks.NAME, "trainer.max_steps": 2,
                                                       "model.networks.iframe.width": 4})
    assert main(["pretrain", "-c", "configs/demo/base.yaml", *overrides]) == 0
    index = json.loads((run / "networks.json").read_text())
    assert {name: entry["file"] for name, entry in index.items()} == {
        "backbone": "backbone.safetensors", "iframe": "iframe.safetensors", "motion": "motion.safetensors"}
    assert all((run / entry["file"]).is_file() for entry in index.values())
    # config.yaml spells every network out, whatever the method's declaration becomes later.
    assert dict(load_config([run / "config.yaml"]).model.networks.iframe) == {
        "backbone": "r2d", "width": 4, "depth": 10, "in_channels": 3}

    assert main(["evaluate", str(run), "--network", "iframe", "--device", "cpu"]) == 0
    results = json.loads((run / "eval_iframe.json").read_text())
    assert 0 <= results["split1"]["R@1"] <= 100 and not (run / "eval.json").exists()
    assert main(["evaluate", str(run), "--device", "cpu"]) == 0  # the backbone, as always
    assert (run / "eval.json").is_file()
    capsys.readouterr()
    # The 2-channel network cannot be fed RGB clips: one line naming what it expects and what can be scored.
    assert main(["evaluate", str(run), "--network", "motion", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "r3d-10 (width 8, 2 input channels) expects 2-channel input" in err
    assert "networks it can score here: backbone, iframe" in err and "Traceback" not in err
    assert main(["evaluate", str(run), "--network", "flow", "--device", "cpu"]) == 2
    assert "no network 'flow'; it has: backbone, iframe, motion" in capsys.readouterr().err


def test_evaluate_random_network_comes_from_the_method_declaration(tmp_path, capsys):
    import two_networks  # noqa: F401  registers "two-networks"

    args = ["evaluate", "--random", "-c", "configs/demo/base.yaml", *tiny_overrides(tmp_path, tmp_path / "r"),
            "method.name=two-networks", "model.networks.motion.width=4", "--out", str(tmp_path / "x.json")]
    assert main([*args, "--network", "motion"]) == 2
    assert "r3d-10 (width 4, 2 input channels) expects 2-channel input" in capsys.readouterr().err
    assert main([*args, "--network", "flow"]) == 2
    assert "the config has no network 'flow'; it has: backbone, iframe, motion" in capsys.readouterr().err
