"""check_videos / collect_video_paths: scanning a collection for unreadable files."""
from __future__ import annotations

import json

import av
import numpy as np
import pytest

from vidssl.video.check import CheckReport, check_videos, collect_video_paths
from vidssl.video.writer import write_video


def _frames(num: int) -> np.ndarray:
    return np.stack([np.full((32, 32, 3), 10 + 6 * t, np.uint8) for t in range(num)])


@pytest.fixture()
def collection(tmp_path):
    """A folder of good and bad videos, nested, with distractors the collector must skip."""
    root = tmp_path / "videos"
    write_video(root / "a" / "good1.avi", _frames(12))
    write_video(root / "a" / "b" / "good2.MP4", _frames(9), codec="libx264")
    write_video(root / "good3.m4v", _frames(7))
    (root / "a" / "empty.mkv").write_bytes(b"")
    (root / "notes.mp4").write_text("not a video\n" * 30)
    good = (root / "a" / "good1.avi").read_bytes()
    (root / "cut.avi").write_bytes(good[:300])
    (root / "readme.txt").write_text("skip me")  # not a video extension
    (root / "._good3.m4v").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    (root / ".hidden").mkdir()
    write_video(root / ".hidden" / "x.avi", _frames(3))
    return root


def test_collects_videos_recursively_by_extension(collection):
    paths = collect_video_paths(collection)
    names = [p[len(str(collection)) + 1:] for p in paths]
    assert names == ["a/b/good2.MP4", "a/empty.mkv", "a/good1.avi", "cut.avi", "good3.m4v", "notes.mp4"]


def test_collects_from_a_list_file_with_comments_and_labels(collection, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my videos\n\n{collection}/good3.m4v\nvideos/a/good1.avi 3\n"
                       "videos/a/b/good2.MP4\t12\n")
    assert collect_video_paths(listing) == [
        f"{collection}/good3.m4v", f"{tmp_path}/videos/a/good1.avi", f"{tmp_path}/videos/a/b/good2.MP4"]
    assert collect_video_paths(listing, root="/data")[1] == "/data/videos/a/good1.avi"
    assert collect_video_paths(collection / "good3.m4v") == [str(collection / "good3.m4v")]
    assert collect_video_paths([collection / "x.avi"]) == [str(collection / "x.avi")]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        collect_video_paths(tmp_path / "nowhere")


@pytest.mark.parametrize("workers", [1, 2])
def test_check_reports_good_count_and_reasons_for_bad_files(collection, workers):
    report = check_videos(collect_video_paths(collection), workers=workers, progress=False)
    assert report.total == 6 and report.ok == 3
    assert report.total_frames == 12 + 9 + 7
    reasons = {p.rsplit("/", 1)[1]: r for p, r in report.bad}
    assert set(reasons) == {"empty.mkv", "cut.avi", "notes.mp4"}
    assert "empty" in reasons["empty.mkv"]
    assert "not a readable video file" in reasons["notes.mp4"]
    assert "not a readable video file" in reasons["cut.avi"]
    assert [p for p, _ in report.bad] == sorted(p for p, _ in report.bad)


def test_readable_files_with_undecodable_frames_are_listed_as_damaged(tmp_path):
    good = tmp_path / "good.avi"
    write_video(good, _frames(20), gop=5)
    damaged = tmp_path / "damaged.avi"
    with av.open(str(good)) as inp, av.open(str(damaged), "w") as out:
        stream = inp.streams.video[0]
        ostream = out.add_stream_from_template(stream)
        for i, packet in enumerate(p for p in inp.demux(stream) if p.size):
            if i == 7:  # a P-frame's payload replaced by bytes no decoder accepts
                packet = av.Packet(b"garbage" * 10)
                packet.pts = packet.dts = i
                packet.time_base = stream.time_base
            packet.stream = ostream
            out.mux(packet)
    report = check_videos([good, damaged], workers=1, progress=False)
    assert report.ok == 2 and report.bad == []
    assert report.damaged == [(str(damaged), "1 of 20 frames do not decode")]
    assert report.total_frames == 20 + 19


def test_missing_paths_are_reported_not_raised(tmp_path):
    report = check_videos([tmp_path / "gone.avi", tmp_path / "gone.avi"], workers=2, progress=False)
    assert report.ok == 0 and report.bad == [(str(tmp_path / "gone.avi"), "file does not exist")]


def test_report_json_is_written_atomically(collection, tmp_path):
    report = check_videos(collect_video_paths(collection), progress=False)
    out = tmp_path / "out" / "check.json"
    report.write_json(out)
    data = json.loads(out.read_text())
    assert data["ok"] == 3 and data["total"] == 6
    assert {b["path"].rsplit("/", 1)[1] for b in data["bad"]} == {"empty.mkv", "cut.avi", "notes.mp4"}
    assert [p.name for p in out.parent.iterdir()] == ["check.json"]  # no temp file left
    assert "3/6 videos readable" in report.summary()


def test_progress_bar_is_shown_when_asked(collection, capsys):
    check_videos(collect_video_paths(collection)[:2], workers=1, progress=True)
    assert "check-videos" in capsys.readouterr().err


def test_empty_report():
    report = check_videos([], progress=False)
    assert report == CheckReport(total=0, ok=0, bad=[], damaged=[], total_frames=0,
                                 seconds=report.seconds)
