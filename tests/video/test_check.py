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


def _noise(num: int, size: int = 48) -> np.ndarray:
    return np.random.default_rng(num).integers(0, 256, (num, size, size, 3), dtype=np.uint8)


def test_xvid_placeholder_packets_are_not_damage(tmp_path):
    # Xvid stores a dropped frame as a 1-byte packet: it takes a time slot and a header count
    # but holds no picture; the decoder skips it by design.
    src = tmp_path / "src.avi"
    write_video(src, _frames(20), gop=5)
    xvid = tmp_path / "xvid.avi"
    with av.open(str(src)) as inp, av.open(str(xvid), "w") as out:
        stream = inp.streams.video[0]
        ostream = out.add_stream_from_template(stream)
        t = 0
        for i, packet in enumerate(p for p in inp.demux(stream) if p.size):
            packets = [packet]
            if i in (7, 12):
                placeholder = av.Packet(b"\x7f")
                placeholder.time_base = stream.time_base
                packets.insert(0, placeholder)
            for p in packets:
                p.pts = p.dts = t
                p.stream = ostream
                out.mux(p)
                t += 1
    with av.open(str(xvid)) as c:
        assert c.streams.video[0].frames == 22
    report = check_videos([xvid], workers=1, progress=False)
    assert (report.ok, report.bad, report.damaged, report.total_frames) == (1, [], [], 20)


def test_cut_off_avi_mp4_and_raw_streams_are_damaged(tmp_path):
    names = []
    for name in ("clip.avi", "clip.m4v", "clip.mp4"):
        whole = tmp_path / name
        options = {"movflags": "faststart"} if name.endswith(".mp4") else None  # moov first: readable when cut
        if options:
            with av.open(str(whole), "w", options=options) as c:
                s = c.add_stream("mpeg4", rate=25)
                s.width = s.height = 48
                s.pix_fmt = "yuv420p"
                for f in _noise(30):
                    for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                        c.mux(p)
                for p in s.encode(None):
                    c.mux(p)
        else:
            write_video(whole, _noise(30), gop=5)
        data = whole.read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: int(len(data) * (0.93 if name.endswith(".m4v") else 0.6))])
        names.append(cut)
    # An AVI header that overcounts a complete index is a lying header, not a cut-off file.
    data = bytearray((tmp_path / "clip.avi").read_bytes())
    for tag, offset in ((b"avih", 8 + 16), (b"strh", 8 + 32)):  # dwTotalFrames, dwLength
        at = data.find(tag) + offset
        data[at:at + 4] = (int.from_bytes(data[at:at + 4], "little") + 1).to_bytes(4, "little")
    (tmp_path / "lying.avi").write_bytes(bytes(data))
    whole = [tmp_path / n for n in ("clip.avi", "clip.m4v", "clip.mp4", "lying.avi")]
    report = check_videos(names + whole, workers=1, progress=False)
    assert report.ok == 7 and report.bad == []
    damaged = {p.rsplit("/", 1)[1]: r for p, r in report.damaged}
    assert set(damaged) == {"cut_clip.avi", "cut_clip.m4v", "cut_clip.mp4"}
    assert "cut off: the header promises 30 frames, the file holds 18" in damaged["cut_clip.avi"]
    assert "cut off: the header promises 30 frames" in damaged["cut_clip.mp4"]
    assert "frames decode with errors" in damaged["cut_clip.m4v"]  # no header: the cut last frame shows


def test_collects_the_csv_that_training_reads(tmp_path):
    root = tmp_path / "videos"
    write_video(root / "walk" / "a.avi", _frames(4))
    write_video(root / "run" / "b.avi", _frames(4))
    write_video(root / "k400" / "train" / "abseiling" / "xyz_000010_000020.mp4", _frames(4))
    plain = tmp_path / "train.csv"
    plain.write_text("path,label\nwalk/a.avi,walk\nrun/b.avi,run\n")
    assert collect_video_paths(plain, root=root) == [str(root / "walk" / "a.avi"), str(root / "run" / "b.avi")]
    kinetics = tmp_path / "kinetics_train.csv"
    kinetics.write_text("label,youtube_id,time_start,time_end,split\nabseiling,xyz,10,20,train\n")
    assert collect_video_paths(kinetics, root=root / "k400") == [
        str(root / "k400" / "train" / "abseiling" / "xyz_000010_000020.mp4")]
