"""Dataset-scale extraction: bad videos are skipped and reported, runs resume, ranks share the work."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vidssl.data.signals import SignalSource
from vidssl.extract import extract_signals, shard
from vidssl.video.cache import SignalCache
from vidssl.video.writer import write_video


def make_dataset(root, count=4, size=32, frames=6):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        clip = np.repeat(rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8), frames, axis=0)
        for t in range(frames):
            clip[t, 8:20, 4 + 2 * t:16 + 2 * t] = 255 - 40 * i  # a bright square moving right
        path = root / f"class{i % 2}" / f"v{i}.avi"
        write_video(path, clip)
        paths.append(str(path))
    return paths


def test_corrupt_video_is_skipped_and_reported_while_the_others_complete(tmp_path):
    root = tmp_path / "data"
    paths = make_dataset(root)
    bad = root / "class1" / "broken.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 20)
    cache_dir = tmp_path / "cache"
    report = extract_signals(paths + [str(bad)], "motion-vectors", cache_dir, root=root, workers=2, progress=False)
    assert (report.total, report.done, report.skipped) == (5, 4, 0)
    assert list(report.failed) == ["class1/broken.avi"] and "broken.avi" in report.failed["class1/broken.avi"]
    failures = json.loads((cache_dir / "motion-vectors" / "failures.json").read_text())
    assert list(failures) == ["class1/broken.avi"] and report.failures_file.endswith("failures.json")
    cache = SignalCache(cache_dir, "motion-vectors", root)
    assert all(cache.has(p) for p in paths) and not cache.has(bad)
    assert json.loads((cache_dir / "motion-vectors" / "spec.json").read_text())["mv_downsample"] == 4

    # Resuming does only what is missing: the good files are skipped, the bad one is retried.
    again = extract_signals(paths + [str(bad)], "motion-vectors", cache_dir, root=root, progress=False)
    assert (again.done, again.skipped, list(again.failed)) == (0, 4, ["class1/broken.avi"])


def test_extracted_flow_is_what_the_dataset_computes(tmp_path):
    root = tmp_path / "data"
    paths = make_dataset(root, count=2)
    extract_signals(paths, "flow", tmp_path / "cache", root=root, frame_size=(32, 32), progress=False)
    cached = SignalSource("flow", cache_dir=tmp_path / "cache", root=root, frame_size=(32, 32))
    stored = SignalCache(tmp_path / "cache", "flow", root).load(paths[1])["flow"]
    assert stored.dtype == np.uint8 and stored.shape == (6, 32, 32, 2)
    np.testing.assert_array_equal(cached(paths[1], [0, 5]), SignalSource("flow", frame_size=(32, 32))(paths[1], [0, 5]))
    with pytest.raises(ValueError, match="computed with"):
        extract_signals(paths, "flow", tmp_path / "cache", root=root, frame_size=(16, 16), progress=False)


def test_ranks_take_disjoint_shares_that_cover_everything(tmp_path, monkeypatch):
    root = tmp_path / "data"
    paths = make_dataset(root, count=5)
    assert shard(list(range(7)), 1, 3) == [1, 4]
    done = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        report = extract_signals(paths, "motion-vectors", tmp_path / "cache", root=root, progress=False)
        assert (report.rank, report.world_size) == (rank, 2)
        done.append(report.done)
    assert done == [3, 2]
    cache = SignalCache(tmp_path / "cache", "motion-vectors", root)
    assert all(cache.has(p) for p in paths)


def test_frame_size_is_height_by_width_everywhere_and_a_mismatch_names_both(tmp_path, capsys):
    from vidssl.cli import main
    from vidssl.video.reader import VideoReader

    root = tmp_path / "data"
    clip = np.zeros((5, 36, 60, 3), np.uint8)
    for t in range(5):
        clip[t, 8:20, 4 + 3 * t:16 + 3 * t] = 255
    write_video(root / "a" / "v.avi", clip)
    path = str(root / "a" / "v.avi")
    # data.frame_size=[24, 40] (H, W) is --frame-size 24x40.
    assert main(["extract", "flow", "--root", str(root), "--out", str(tmp_path / "cache"), "--frame-size", "24x40",
                 "--workers", "1"]) == 0
    assert SignalCache(tmp_path / "cache", "flow", root).load(path)["flow"].shape == (5, 24, 40, 2)
    assert SignalSource("flow", cache_dir=tmp_path / "cache", root=root, frame_size=(24, 40)).cache is not None
    with pytest.raises(ValueError) as err:
        SignalSource("flow", cache_dir=tmp_path / "cache", root=root, frame_size=(40, 24))
    assert "frame size: the cache holds 24x40, this run reads 40x24 (height x width)" in str(err.value)
    with pytest.raises(ValueError, match="holds 24x40, asked for 12x20 \\(height x width\\)"):
        extract_signals([path], "flow", tmp_path / "cache", root=root, frame_size=(12, 20), progress=False)
    # Re-encoding takes the same order: --size 24x40 is 24 high, 40 wide.
    assert main(["extract", "reencode", "--root", str(root), "--out", str(tmp_path / "re"), "--size", "24x40",
                 "--workers", "1"]) == 0
    with VideoReader(tmp_path / "re" / "a" / "v.avi") as reader:
        assert reader.size == (24, 40)
    assert main(["extract", "reencode", "--root", str(root), "--out", str(tmp_path / "re2"), "--size", "340"]) == 2
    assert "expected HxW (height x width)" in capsys.readouterr().err


def test_motion_vector_extraction_reports_b_frame_files_per_file(tmp_path):
    root = tmp_path / "data"
    plain = make_dataset(root, count=1)[0]
    clip = np.repeat(np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8), 8, axis=0)
    with_b = root / "class1" / "xvid.avi"
    write_video(with_b, clip, max_b_frames=2)  # I B B P ..., as UCF101's Xvid files
    report = extract_signals([plain, str(with_b)], "motion-vectors", tmp_path / "cache", root=root, progress=False)
    assert report.done == 2 and not report.failed
    assert list(report.motion_vector_warnings) == ["class1/xvid.avi"]
    note = report.motion_vector_warnings["class1/xvid.avi"]
    assert "xvid.avi" in note and "B-frames" in note and "vidssl extract reencode" in note
    assert "class1/xvid.avi" in report.to_dict()["motion_vector_warnings"]  # what the CLI writes as JSON
