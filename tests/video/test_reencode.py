"""Re-encoding to the CoViAR convention: MPEG-4 Part 2, GOP 12, no B-frames, same layout."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vidssl.extract import reencode_dataset
from vidssl.video.compressed import read_compressed
from vidssl.video.reader import VideoReader, VideoReadError
from vidssl.video.reencode import reencode_video, reencoded_name
from vidssl.video.writer import write_video

FRAMES = 30


def clip(size=(48, 64), frames=FRAMES, seed=0):
    rng = np.random.default_rng(seed)
    out = np.repeat(rng.integers(0, 256, (1, *size, 3), dtype=np.uint8), frames, axis=0)
    for t in range(frames):
        out[t, 10:26, t:t + 16] = 200
    return out


def test_reencoded_video_has_gop_12_and_no_b_frames(tmp_path):
    src = tmp_path / "in.mp4"
    write_video(src, clip(), codec="libx264", max_b_frames=2, gop=250,
                options={"threads": "1", "x264-params": "ref=3:bframes=2"})
    assert "B" in read_compressed(src, motion_vectors=False).frame_types
    dst = tmp_path / "out.avi"
    assert reencode_video(src, dst, size=(32, 40)) == FRAMES
    video = read_compressed(dst, motion_vectors=False)
    assert video.codec == "mpeg4" and video.size == (32, 40)
    assert video.frame_types == (["I"] + ["P"] * 11) * 2 + ["I"] + ["P"] * 5
    np.testing.assert_array_equal(video.iframe_indices, [0, 12, 24])
    with VideoReader(dst) as reader:
        assert reader.num_frames == FRAMES


def test_reencode_dataset_keeps_the_layout_resumes_and_reports_bad_files(tmp_path):
    src_root, dst_root = tmp_path / "ucf", tmp_path / "ucf-mpeg4"
    for name in ("Walk/v_Walk_g01_c01.avi", "Run/v_Run_g01_c01.avi", "Run/v_Run_g02_c01.mp4"):
        write_video(src_root / name, clip(seed=len(name)), codec="libx264" if name.endswith(".mp4") else "mpeg4")
    (src_root / "Run" / "v_Run_g03_c01.avi").write_bytes(b"not a video at all" * 10)
    (src_root / "ucfTrainTestlist").mkdir()
    (src_root / "ucfTrainTestlist" / "trainlist01.txt").write_text("Walk/v_Walk_g01_c01.avi 1\n")

    report = reencode_dataset(src_root, dst_root, size=(24, 32), workers=1, progress=False)
    assert (report.total, report.done, report.skipped) == (4, 3, 0)
    assert list(report.failed) == ["Run/v_Run_g03_c01.avi"]
    assert json.loads((dst_root / "reencode_failures.json").read_text()).keys() == {"Run/v_Run_g03_c01.avi"}
    assert (dst_root / "ucfTrainTestlist" / "trainlist01.txt").read_text() == "Walk/v_Walk_g01_c01.avi 1\n"
    for name in ("Walk/v_Walk_g01_c01.avi", "Run/v_Run_g01_c01.avi", "Run/v_Run_g02_c01.mp4"):
        video = read_compressed(dst_root / name, motion_vectors=False)
        assert video.codec == "mpeg4" and video.size == (24, 32) and "B" not in video.frame_types

    stamp = (dst_root / "Walk" / "v_Walk_g01_c01.avi").stat().st_mtime_ns
    again = reencode_dataset(src_root, dst_root, size=(24, 32), progress=False)
    assert (again.done, again.skipped) == (0, 3)  # complete outputs are not redone
    assert (dst_root / "Walk" / "v_Walk_g01_c01.avi").stat().st_mtime_ns == stamp


def test_names_and_unreadable_input(tmp_path):
    assert str(reencoded_name("a/b.webm")) == "a/b.mkv" and str(reencoded_name("a/b.avi")) == "a/b.avi"
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoReadError, match="bad.avi"):
        reencode_video(bad, tmp_path / "out.avi")
    assert not (tmp_path / "out.avi").exists()
