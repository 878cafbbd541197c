"""VideoReader on real encoded files: containers, codecs, odd sizes, VFR, damage, leaks.

Every test video encodes its frame index in its brightness (frame t is filled with 10 + 6 t,
plus a small moving patch so P-frames carry motion), so a read can be checked frame by frame
after any seek pattern.
"""
from __future__ import annotations

import os
import pickle
import shutil
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from vidssl.video import bitstream
from vidssl.video import reader as reader_module
from vidssl.video.reader import VideoReader, VideoReadError, probe_video
from vidssl.video.writer import write_video

T = 40
H, W = 48, 64


def ramp_frames(num: int = T, height: int = H, width: int = W) -> np.ndarray:
    frames = np.empty((num, height, width, 3), np.uint8)
    for t in range(num):
        frames[t] = 10 + 6 * t
        x = 2 + t % 8
        frames[t, 2:6, x:x + 4] = 255 - (10 + 6 * t)
    return frames


def frame_numbers(frames: np.ndarray) -> list[int]:
    """Recover the encoded index of each frame from its median brightness."""
    return [int(round((float(np.median(f)) - 10) / 6)) for f in frames]


def mux_video(path, *, pts_ms=None, audio=None, subtitle=False, video=True, gop=5,
              num=20, height=H, width=W, codec="libx264"):
    """Write a file by hand with PyAV: optional audio/subtitle streams, explicit pts in ms."""
    with av.open(str(path), "w") as container:
        if audio:
            astream = container.add_stream(audio, rate=16000)
            astream.layout = "mono"
        if video:
            vstream = container.add_stream(codec, rate=25)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            vstream.codec_context.gop_size = gop
            if codec == "libx264":
                vstream.codec_context.options = {"g": str(gop), "bf": "0"}
            if pts_ms is not None:
                vstream.codec_context.time_base = Fraction(1, 1000)
        if subtitle:
            sstream = container.add_stream("subrip" if str(path).endswith(".mkv") else "mov_text")
            sstream.codec_context.subtitle_header = b"[Script Info]\nScriptType: v4.00+\n"
        if audio:
            fmt, samples = ("s16", 1152) if audio == "mp2" else ("fltp", 1024)
            for i in range(8):
                data = np.zeros((1, samples), np.int16 if fmt == "s16" else np.float32)
                frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
                frame.sample_rate, frame.pts = 16000, i * samples
                container.mux(astream.encode(frame))
            container.mux(astream.encode())
        if subtitle:
            for i in range(2):
                packet = av.Packet(b"subtitle %d" % i)
                packet.stream, packet.pts, packet.dts, packet.duration = sstream, i * 400, i * 400, 200
                packet.time_base = Fraction(1, 1000)
                container.mux(packet)
        if video:
            for t, rgb in enumerate(ramp_frames(num, height, width)):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                if pts_ms is not None:
                    frame.pts, frame.time_base = pts_ms[t], Fraction(1, 1000)
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode())
    return path


def remux_mpeg4(src, dst, *, replace=None, codec_tag=None, first_packet_insert=None, pack=False):
    """Copy an AVI's MPEG-4 packets to ``dst`` with surgery: replace packets by raw bytes,
    set a fourcc, insert bytes before the first VOP, or pack each P-frame with the following
    B-frame followed by an N-VOP placeholder (the DivX "packed B-frames" layout)."""
    replace = replace or {}
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        payloads = [bytes(p) for p in inp.demux(stream) if p.size]
        with av.open(str(dst), "w") as out:
            ostream = out.add_stream_from_template(stream)
            if codec_tag:
                ostream.codec_tag = codec_tag
            if first_packet_insert:
                at = payloads[0].find(b"\x00\x00\x01\xb6")
                payloads[0] = payloads[0][:at] + first_packet_insert + payloads[0][at:]
            if pack:
                packed = [payloads[0]]
                for i in range(1, len(payloads) - 1, 2):
                    packed += [payloads[i] + payloads[i + 1], nvop(2, 25)]
                if len(payloads) % 2 == 0:
                    packed.append(payloads[-1])
                payloads = packed
            for i, data in enumerate(payloads):
                packet = av.Packet(replace.get(i, data))
                packet.stream, packet.pts, packet.dts = ostream, i, i
                packet.time_base = stream.time_base
                packet.is_keyframe = i == 0 or (not pack and _is_intra_vop(data))
                out.mux(packet)
    return dst


def _is_intra_vop(data: bytes) -> bool:
    at = data.find(b"\x00\x00\x01\xb6")
    return at >= 0 and at + 4 < len(data) and data[at + 4] >> 6 == 0  # vop_coding_type I


def nvop(time_increment: int, resolution: int) -> bytes:
    """A "not coded" MPEG-4 VOP (ISO 14496-2 6.2.5): P type, vop_coded = 0."""
    n = max(1, (resolution - 1).bit_length())
    bits = "01" + "0" + "1" + format(time_increment, f"0{n}b") + "1" + "0"
    bits += "0" + "1" * (-(len(bits) + 1) % 8)  # next_start_code() stuffing
    return b"\x00\x00\x01\xb6" + int(bits, 2).to_bytes(len(bits) // 8, "big")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    frames = ramp_frames()
    write_video(root / "mpeg4.avi", frames, gop=8)
    write_video(root / "mpeg4_bframes.avi", frames, gop=8, max_b_frames=2)
    write_video(root / "raw.m4v", frames, gop=8)
    write_video(root / "h264_bframes.mp4", frames, codec="libx264", gop=8, max_b_frames=2)
    write_video(root / "h264_bframes.mkv", frames, codec="libx264", gop=8, max_b_frames=2)
    return root


FORMATS = ["mpeg4.avi", "mpeg4_bframes.avi", "raw.m4v", "h264_bframes.mp4", "h264_bframes.mkv"]


@pytest.mark.parametrize("name", FORMATS)
def test_reads_exact_frames_for_unordered_repeated_indices(videos, name):
    rng = np.random.default_rng(0)
    with VideoReader(videos / name) as reader:
        assert reader.num_frames == T
        assert reader.size == (H, W)
        assert reader.fps == pytest.approx(25.0)
        for indices in ([0], [T - 1], [5, 3, 5, 39, 0, 17, 17], rng.integers(0, T, 12).tolist(),
                        [33, 2, 24, 9, 16], list(range(T))):
            out = reader.read(indices)
            assert out.dtype == np.uint8 and out.shape == (len(indices), H, W, 3)
            assert frame_numbers(out) == list(indices)


@pytest.mark.parametrize("name", FORMATS)
def test_a_clip_late_in_the_file_decodes_one_gop_not_the_whole_file(videos, name):
    with VideoReader(videos / name) as reader:
        clip = reader.read([34, 35, 36, 37])
        assert frame_numbers(clip) == [34, 35, 36, 37]
        # Keyframes every 8 frames: seeking to frame 32 decodes 32..37 (+ reorder delay).
        assert reader.frames_decoded <= 10, reader.frames_decoded
        before = reader.frames_decoded
        reader.read([2, 3])  # backwards: seek to frame 0
        assert reader.frames_decoded - before <= 6


@pytest.mark.parametrize("ext", ["avi", "m4v", "mp4", "mkv"])
@pytest.mark.parametrize("qscale", [1, 3, 10, 31])
def test_late_clips_in_bframe_mpeg4_decode_one_gop_at_any_qscale(tmp_path, qscale, ext):
    # B-frame MPEG-4 puts keyframes closer together than the reorder delay here (keyframe
    # pts >= the next keyframe's dts), and AVI / raw streams seek by dts: seeking to a
    # keyframe's pts landed one keyframe late, and the reader fell back to full decodes.
    # High qscale also makes B-frame packets small enough for the N-VOP check to parse.
    gop, clip = 8, 4
    path = tmp_path / f"b{qscale}.{ext}"
    write_video(path, ramp_frames(), gop=gop, max_b_frames=2, qscale=qscale)
    with av.open(str(path)) as c:  # reference: one sequential decode (lossy at high qscale)
        expected = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert len(expected) == T
    with VideoReader(path) as reader:
        assert reader.num_frames == T
        for start in range(T - clip, -1, -1):
            before = reader.frames_decoded
            wanted = list(range(start, start + clip))
            np.testing.assert_array_equal(reader.read(wanted), expected[wanted])
            assert reader.frames_decoded - before <= gop + clip, (start, reader.frames_decoded - before)
        assert reader._index.source == "packets"  # never re-indexed by a full decode
    with VideoReader(path) as reader:  # the exact index from decoding seeks as well
        reader.count_decodable()
        before = reader.frames_decoded
        np.testing.assert_array_equal(reader.read([34, 35, 36, 37]), expected[34:38])
        assert reader.frames_decoded - before <= gop + clip


def test_seek_timestamps_never_pass_the_next_keyframe_in_decoding_order():
    # Keyframes (pts, dts): (1, 0), (10, 7), (16, 13), (19, 16), (25, None), (28, 26).
    targets = reader_module._seek_timestamps([1, 10, 16, 19, 25, 28], [0, 7, 13, 16, None, 26])
    # 16 >= next dts 16: seek to 15, which finds this keyframe by dts and never the next one
    # by pts; where a dts is unknown the pts stays.
    assert targets.tolist() == [1, 10, 15, 19, 25, 28]
    assert reader_module._seek_timestamps([0, 4096], [-1024, 3072]).tolist() == [0, 4096]


def test_raw_mpeg4_stream_behind_mp4_extension(videos, tmp_path):
    # The auto-probe picks the MP4 demuxer from the extension when the raw stream starts at
    # its VOL header (no VOS/VO headers), and that demuxer finds no moov atom.
    data = (videos / "raw.m4v").read_bytes()
    path = tmp_path / "mislabelled.mp4"
    path.write_bytes(data[data.find(b"\x00\x00\x01\x20"):])
    with pytest.raises(av.error.InvalidDataError):
        av.open(str(path)).close()
    with VideoReader(path) as reader:
        assert reader.codec == "mpeg4" and reader.num_frames == T
        assert frame_numbers(reader.read([39, 0, 13])) == [39, 0, 13]
    shutil.copy(videos / "raw.m4v", tmp_path / "copy.mp4")  # with headers: probed as m4v
    assert probe_video(tmp_path / "copy.mp4")["num_frames"] == T


@pytest.mark.parametrize("name", ["stream.h264", "stream_h264.mp4"])
def test_raw_h264_stream_without_timestamps_or_seeking(tmp_path, name):
    # Raw H.264 has no timestamps and FFmpeg cannot seek in it: frames are counted from the
    # start (the reader reopens the file to rewind).
    path = tmp_path / name
    write_video(tmp_path / "stream.h264", ramp_frames(), codec="libx264", gop=8, max_b_frames=2)
    if name != "stream.h264":
        shutil.copy(tmp_path / "stream.h264", path)
    with VideoReader(path) as reader:
        assert reader.codec == "h264" and reader.num_frames == T
        assert frame_numbers(reader.read([39, 0, 20, 21, 0])) == [39, 0, 20, 21, 0]
        assert frame_numbers(reader.read([5])) == [5]


@pytest.mark.parametrize("fourcc", ["XVID", "DIVX", "DX50"])
def test_avi_with_xvid_and_divx_fourcc(videos, tmp_path, fourcc):
    path = remux_mpeg4(videos / "mpeg4.avi", tmp_path / f"{fourcc}.avi", codec_tag=fourcc)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.codec_tag == fourcc
    with VideoReader(path) as reader:
        assert frame_numbers(reader.read([20, 1, 39])) == [20, 1, 39]


@pytest.mark.parametrize("name,size,codec", [
    ("odd.avi", (49, 65), "mpeg4"),
    ("odd.m4v", (49, 65), "mpeg4"),
    ("wide.mp4", (256, 452), "libx264"),
    ("wide.avi", (256, 452), "mpeg4"),
])
def test_odd_frame_sizes(tmp_path, name, size, codec):
    path = tmp_path / name
    write_video(path, ramp_frames(12, *size), codec=codec, gop=4)
    with VideoReader(path) as reader:
        assert reader.size == size and reader.num_frames == 12
        out = reader.read([11, 0, 6])
        assert out.shape == (3, *size, 3)
        assert frame_numbers(out) == [11, 0, 6]


@pytest.mark.parametrize("name", ["with_audio_subs.mkv", "with_audio_subs.mp4"])
def test_picks_the_video_stream_among_audio_and_subtitles(tmp_path, name):
    path = mux_video(tmp_path / name, audio="aac", subtitle=True)
    with av.open(str(path)) as c:
        assert [s.type for s in c.streams] == ["audio", "video", "subtitle"]
    with VideoReader(path) as reader:
        assert reader.num_frames == 20
        assert frame_numbers(reader.read([19, 7, 0, 12])) == [19, 7, 0, 12]


@pytest.mark.parametrize("name", ["vfr.mkv", "vfr.mp4"])
def test_variable_frame_rate_indices_count_decoded_frames(tmp_path, name):
    pts = [0, 40, 80, 200, 210, 220, 400, 440, 445, 1000,
           1040, 1080, 1100, 1200, 1300, 1310, 1320, 1500, 1600, 1700]
    path = mux_video(tmp_path / name, pts_ms=pts, gop=5)
    with VideoReader(path) as reader:
        assert reader.num_frames == 20
        assert reader.fps > 0
        for indices in ([19], [8, 9, 10], [17, 3, 3, 11, 0], list(range(20))):
            assert frame_numbers(reader.read(indices)) == indices


def test_resize_is_swscale_area_close_to_cv2_inter_area(videos):
    # Resizing happens inside the YUV -> RGB conversion (swscale's area filter): the same frame
    # as the native read, within a small difference of cv2.INTER_AREA on the native RGB frame,
    # and bit-identical to a sequential decode converted the same way.
    with VideoReader(videos / "mpeg4.avi") as native, \
            VideoReader(videos / "mpeg4.avi", size=(20, 30)) as small:
        assert small.size == (20, 30)
        out = small.read([3, 30, 3])
        assert out.shape == (3, 20, 30, 3)
        assert frame_numbers(out) == [3, 30, 3]
        for frame, full in zip(out, native.read([3, 30])):
            diff = np.abs(frame.astype(int) - cv2.resize(full, (30, 20), interpolation=cv2.INTER_AREA))
            assert diff.mean() < 2 and np.percentile(diff, 99) <= 8
    with av.open(str(videos / "mpeg4.avi")) as container:
        decoded = [f for _, f in zip(range(31), container.decode(video=0))]
    for k, frame in zip([3, 30], out):
        np.testing.assert_array_equal(frame, decoded[k].reformat(
            width=30, height=20, format="rgb24", interpolation=reader_module.RESIZE_FLAGS).to_ndarray())
    with pytest.raises(ValueError, match="size"):
        VideoReader(videos / "mpeg4.avi", size=(0, 4))


def test_header_that_overcounts_frames_does_not_break_the_last_index(videos, tmp_path):
    # Packet 5 becomes an MPEG-4 "not coded" VOP: the AVI header still says 40 frames, the
    # decoder produces 39 (the UCF101 "header says 176, 175 decode" situation).
    path = remux_mpeg4(videos / "mpeg4.avi", tmp_path / "nvop.avi", replace={5: nvop(5, 25)})
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 40
    with VideoReader(path) as reader:
        assert reader.num_frames == 39
        expected = [0, 1, 2, 3, 4] + list(range(6, 40))  # encoded content of each decoded frame
        assert frame_numbers(reader.read([38])) == [39]
        assert frame_numbers(reader.read(list(range(39)))) == expected
        assert frame_numbers(reader.read([5, 4, 20])) == [6, 4, 21]
        with pytest.raises(IndexError, match="nvop.avi"):
            reader.read([39])


def test_avi_header_that_overcounts_is_not_trusted(videos, tmp_path):
    data = bytearray((videos / "mpeg4.avi").read_bytes())
    for tag, offset in ((b"avih", 8 + 16), (b"strh", 8 + 32)):  # dwTotalFrames, dwLength
        at = data.find(tag) + offset
        data[at:at + 4] = (int.from_bytes(data[at:at + 4], "little") + 1).to_bytes(4, "little")
    path = tmp_path / "lying.avi"
    path.write_bytes(bytes(data))
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == T + 1
    with VideoReader(path) as reader:
        assert reader.num_frames == T
        assert reader._index.source == "packets"  # the AVI index disagrees with the header
        assert frame_numbers(reader.read([T - 1, 0])) == [T - 1, 0]


def test_index_source_per_file_kind(videos):
    expected = {"mpeg4.avi": "avi index", "mpeg4_bframes.avi": "packets", "raw.m4v": "packets",
                "h264_bframes.mp4": "packets", "h264_bframes.mkv": "packets"}
    for name, source in expected.items():
        with VideoReader(videos / name) as reader:
            assert reader._index.source == source, name


def test_counting_catches_an_index_the_packets_got_wrong(videos, tmp_path, monkeypatch):
    # Blind the packet scan to "not coded" VOPs: it now predicts 40 frames. Decoding across
    # the hole reveals the gap, and the reader re-indexes from one full decode.
    path = remux_mpeg4(videos / "mpeg4.avi", tmp_path / "nvop.avi", replace={5: nvop(5, 25)})
    monkeypatch.setattr(bitstream, "mpeg4_vop_coded", lambda data, resolution: True)
    with VideoReader(path) as reader:
        assert reader._index.source == "packets"
        assert reader.num_frames == 40  # predicted, wrong
        assert frame_numbers(reader.read([3, 4, 5, 6])) == [3, 4, 6, 7]
        assert reader.num_frames == 39  # corrected
        assert frame_numbers(reader.read([38])) == [39]
    with VideoReader(path) as reader:  # a request beyond the corrected end is a read error
        with pytest.raises(VideoReadError, match="only 39 frames decode"):
            reader.read([5, 39])
    assert probe_video(path, full=True)["num_frames"] == 39
    # A hole at the tail shows on the quick probe too: it reads the last frame.
    tail = remux_mpeg4(videos / "mpeg4.avi", tmp_path / "tail.avi", replace={39: nvop(39, 25)})
    assert probe_video(tail) == {"num_frames": 39, "fps": 25.0, "size": (H, W), "codec": "mpeg4"}


@pytest.mark.parametrize("divx_flag", [True, False])
def test_packed_bframes_are_unpacked(tmp_path, divx_flag):
    # DivX "packed B-frames": [I] [P+B] [N-VOP placeholder] [P+B] ... With the DivX user
    # data flag FFmpeg's decoder unpacks them itself; without it, it drops the B-frames.
    src = tmp_path / "b1.avi"
    write_video(src, ramp_frames(30), gop=30, max_b_frames=1)
    flag = b"\x00\x00\x01\xb2DivX503b1393p" if divx_flag else None
    path = remux_mpeg4(src, tmp_path / "packed.avi", pack=True, first_packet_insert=flag)
    if not divx_flag:
        with av.open(str(path)) as c:
            assert len(list(c.decode(video=0))) < 30
    with VideoReader(path) as reader:
        assert reader.num_frames == 30
        assert frame_numbers(reader.read(list(range(30)))) == list(range(30))
        assert frame_numbers(reader.read([29, 4, 4, 17])) == [29, 4, 4, 17]


def test_out_of_range_index_names_the_file(videos):
    with VideoReader(videos / "mpeg4.avi") as reader:
        for bad in ([40], [0, 41], [-1]):
            with pytest.raises(IndexError, match="mpeg4.avi"):
                reader.read(bad)
        assert reader.read([]).shape == (0, H, W, 3)


def _assert_read_error(path, words):
    with pytest.raises(VideoReadError) as info:
        with VideoReader(path) as reader:
            reader.read([0, reader.num_frames - 1])
    assert str(path) in str(info.value)
    assert words in info.value.reason
    with pytest.raises(VideoReadError):
        probe_video(path)


def test_missing_empty_and_non_video_files_raise_read_errors(tmp_path):
    _assert_read_error(tmp_path / "missing.mp4", "does not exist")
    (tmp_path / "empty.mp4").write_bytes(b"")
    _assert_read_error(tmp_path / "empty.mp4", "empty")
    (tmp_path / "notes.mp4").write_text("this is a text file, not a video\n" * 40)
    _assert_read_error(tmp_path / "notes.mp4", "not a readable video file")
    _assert_read_error(tmp_path, "not a regular file")


@pytest.mark.parametrize("name,codec", [("voice.m4a", "aac"), ("voice.mp4", "aac"), ("voice.mkv", "mp2")])
def test_audio_only_files_raise_read_errors(tmp_path, name, codec):
    path = mux_video(tmp_path / name, audio=codec, video=False)
    _assert_read_error(path, "no video stream (streams found: audio")


def test_file_with_no_decodable_frames_raises(videos, tmp_path):
    rng = np.random.default_rng(1)
    garbage = {i: rng.integers(0, 256, 200, dtype=np.uint8).tobytes() for i in range(T)}
    path = remux_mpeg4(videos / "mpeg4.avi", tmp_path / "garbage.avi", replace=garbage)
    _assert_read_error(path, "no frame decodes")


@pytest.mark.parametrize("name", FORMATS)
def test_truncated_files_read_what_decodes_or_raise(videos, tmp_path, name):
    data = (videos / name).read_bytes()
    for cut in (len(data) // 2, int(len(data) * 0.8), 300):
        path = tmp_path / f"cut{cut}_{name}"
        path.write_bytes(data[:cut])
        try:
            reader = VideoReader(path)
        except VideoReadError as e:
            assert str(path) in str(e)
            continue
        with reader:
            try:
                n = reader.num_frames
                frames = reader.read(list(range(n)))
            except VideoReadError as e:
                assert str(path) in str(e)
                continue
            assert 0 < n < T
            numbers = frame_numbers(frames)
            if "bframes" in name:
                # Frames lost to the cut may sit mid-way in presentation order; what decodes
                # still comes out in order, starting at the first frame.
                assert numbers[0] == 0 and numbers[:-1] == sorted(numbers[:-1])
            else:  # the last frame may be partly concealed damage; every other one is exact
                assert numbers[:-1] == list(range(n - 1))
    # Containers without a front index that lose their tail keep their head.
    cut = tmp_path / f"half_{name}"
    cut.write_bytes(data[: len(data) // 2])
    if name.endswith((".m4v", ".mkv")):
        assert 0 < probe_video(cut)["num_frames"] < T
    if name.endswith(".mp4"):  # moov atom at the end: nothing is left to index
        with pytest.raises(VideoReadError):
            probe_video(cut)


def test_truncated_avi_with_damaged_last_packet_reads_its_head(tmp_path):
    path = tmp_path / "long.avi"
    rng = np.random.default_rng(0)
    frames = ramp_frames(T)
    frames[:, 20:, :] = rng.integers(0, 256, (T, H - 20, W, 3), dtype=np.uint8)  # big packets
    write_video(path, frames, gop=8)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with VideoReader(cut) as reader:
        n = reader.num_frames
        assert 0 < n < T
        assert frame_numbers(reader.read(list(range(n - 1)))[:, :20]) == list(range(n - 1))


def test_probe_video_reports_stream_facts(videos):
    info = probe_video(videos / "h264_bframes.mp4")
    assert info == {"num_frames": T, "fps": pytest.approx(25.0), "size": (H, W), "codec": "h264"}
    assert probe_video(videos / "raw.m4v", full=True)["num_frames"] == T


def test_read_error_survives_pickling_for_worker_processes():
    error = pickle.loads(pickle.dumps(VideoReadError("/data/x.avi", "file is empty (0 bytes)")))
    assert error.path == "/data/x.avi" and error.reason == "file is empty (0 bytes)"
    assert str(error) == "/data/x.avi: file is empty (0 bytes)"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_repeated_reads_and_failures_leave_no_open_files(videos, tmp_path):
    (tmp_path / "bad.mp4").write_text("not a video")
    audio = mux_video(tmp_path / "audio.m4a", audio="aac", video=False)
    garbage = remux_mpeg4(videos / "mpeg4.avi", tmp_path / "garbage.avi",
                          replace={i: b"\x00\x00\x01\xb6" + bytes(60) for i in range(T)})

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    with VideoReader(videos / "mpeg4.avi") as reader:  # warm up lazy imports and caches
        reader.read([1])
    before = open_fds()
    for i in range(300):
        with VideoReader(videos / FORMATS[i % len(FORMATS)]) as reader:
            reader.read([i % T, (7 * i) % T])
        reader = VideoReader(videos / "raw.m4v")
        reader.read([i % T])
        reader.close()
        for bad in (tmp_path / "bad.mp4", audio, garbage):  # fail after the container opened
            with pytest.raises(VideoReadError):
                with VideoReader(bad) as broken:
                    broken.read([0])
    assert open_fds() == before


def test_closed_reader_refuses_to_read(videos):
    reader = VideoReader(videos / "mpeg4.avi")
    reader.close()
    reader.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        reader.read([0])


@pytest.mark.parametrize("fps,resolution", [(25, 25), (30, 30), (Fraction(30000, 1001), 30000)])
def test_mpeg4_vol_parser_finds_the_time_resolution(tmp_path, fps, resolution):
    path = tmp_path / "v.avi"
    write_video(path, ramp_frames(2, 32, 32), fps=fps)
    with av.open(str(path)) as c:
        extradata = c.streams.video[0].codec_context.extradata
    assert bitstream.mpeg4_time_resolution(extradata) == resolution
    assert bitstream.mpeg4_vop_coded(nvop(3, resolution), resolution) is False


def write_two_stream_video(path):
    """Two mpeg4 streams in one MKV: stream 0 is 32x32 grey 50, stream 1 (the best) 64x48 grey 200."""
    with av.open(str(path), "w") as c:
        streams = []
        for width, height in ((32, 32), (64, 48)):  # the small one first: "first" is not "best"
            s = c.add_stream("mpeg4", rate=25)
            s.width, s.height, s.pix_fmt = width, height, "yuv420p"
            streams.append(s)
        for t in range(6):
            for s, value in zip(streams, (50, 200)):
                frame = av.VideoFrame.from_ndarray(np.full((s.height, s.width, 3), value, np.uint8), format="rgb24")
                for packet in s.encode(frame):
                    c.mux(packet)
        for s in streams:
            for packet in s.encode(None):
                c.mux(packet)
    return path


def test_two_video_streams_read_the_named_one_default_the_best(tmp_path, caplog):
    path = write_two_stream_video(tmp_path / "two.mkv")
    with caplog.at_level("INFO", logger="vidssl.video.reader"):
        with VideoReader(path) as reader:
            assert (reader.stream, reader.size, reader.num_frames) == (1, (48, 64), 6)
            assert abs(float(reader.read([5]).mean()) - 200) < 8
    assert "2 video streams; reading the best one, video stream 1" in caplog.text and "two.mkv" in caplog.text
    with VideoReader(path, stream=0) as reader:
        assert (reader.stream, reader.size) == (0, (32, 32))
        assert abs(float(reader.read([5]).mean()) - 50) < 8
    with pytest.raises(VideoReadError, match="no usable video stream 2 .*counted from 0"):
        VideoReader(path, stream=2)


# -- picture types, key frames, frames left out of a decode, open_video ------------------------


def decoded_types(path) -> str:
    kinds = {1: "I", 2: "P", 3: "B", 4: "P"}
    with av.open(str(path)) as c:
        return "".join(kinds[int(f.pict_type)] for f in c.decode(video=0))


@pytest.mark.parametrize("name", FORMATS)
def test_frame_types_from_headers_match_a_full_decode(videos, name):
    with VideoReader(videos / name) as reader:
        types = reader.frame_types
        assert reader.frames_decoded == 0  # headers only
        assert types == decoded_types(videos / name) and len(types) == reader.num_frames
        assert reader.frame_types is types  # cached
        assert all(types[k] == "I" for k in reader.keyframes)


@pytest.mark.parametrize("name", FORMATS)
def test_read_keyframes_decodes_only_the_key_frames_and_equals_read(videos, name):
    with VideoReader(videos / name) as reader:
        keys = reader.keyframes.tolist()
        assert keys[0] == 0 and 0 < len(keys) < T // 2
        wanted = [keys[-1], 0, keys[len(keys) // 2], keys[len(keys) // 2]]
        got = reader.read_keyframes(wanted)
        assert reader.frames_decoded == 3
        assert frame_numbers(got) == wanted
        np.testing.assert_array_equal(got, reader.read(wanted))
        other = next(k for k, c in enumerate(reader.frame_types) if c != "I")
        with pytest.raises(ValueError, match=rf"frame {other} is not a key frame or I-frame"):
            reader.read_keyframes([0, other])
        assert reader.read(np.arange(6, 10)).shape == (4, H, W, 3)  # decoding goes on normally after


def test_read_keyframes_in_packed_and_unseekable_streams(tmp_path):
    src = tmp_path / "b1.avi"
    write_video(src, ramp_frames(30), gop=10, max_b_frames=1)
    packed = remux_mpeg4(src, tmp_path / "packed.avi", pack=True,
                         first_packet_insert=b"\x00\x00\x01\xb2DivX503b1393p")
    raw = tmp_path / "stream.h264"
    write_video(raw, ramp_frames(), codec="libx264", gop=8, max_b_frames=2)
    for path in (packed, raw):
        with VideoReader(path) as reader:
            types = reader.frame_types
            assert types == decoded_types(path)
            iframes = [k for k, c in enumerate(types) if c == "I"]
            assert frame_numbers(reader.read_keyframes(iframes)) == iframes


@pytest.mark.parametrize("ext", ["avi", "mp4"])
def test_non_reference_frames_before_a_clip_are_left_out_exactly(tmp_path, ext):
    # Long GOP with B-frames: a clip late in the GOP needs its anchors decoded, not its B-frames
    # (nothing predicts from them). Leaving them out must not change a single pixel.
    codec = {"avi": "mpeg4", "mp4": "libx264"}[ext]
    path = tmp_path / f"long.{ext}"
    options = {"threads": "1", "x264-params": "b-adapt=0:b-pyramid=none:scenecut=0"} if codec == "libx264" else None
    write_video(path, ramp_frames(), codec=codec, gop=T, max_b_frames=2, qscale=10, options=options)
    with av.open(str(path)) as c:
        expected = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with VideoReader(path) as reader:
        assert reader.frame_types.count("B") >= T // 2
        clip = [30, 31, 32, 33]
        np.testing.assert_array_equal(reader.read(clip), expected[clip])
        assert reader.frames_decoded < 34 - 10, reader.frames_decoded  # most B-frames before 30 skipped
        strided = [3, 9, 15, 21, 27, 33, 39]
        np.testing.assert_array_equal(reader.read(strided), expected[strided])
        np.testing.assert_array_equal(reader.read(np.arange(T)), expected)
        assert reader._index.source == "packets"  # no mismatch, no re-index


def test_open_video_returns_container_stream_and_a_format_that_reopens(videos, tmp_path):
    from vidssl.video import open_video

    for name in ("mpeg4.avi", "h264_bframes.mp4", "raw.m4v"):
        container, stream, fmt = open_video(videos / name)
        try:
            assert stream.type == "video" and container.format.name == fmt
        finally:
            container.close()
        with av.open(str(videos / name), format=fmt) as again:
            assert again.streams.video[0].codec_context.name == stream.codec_context.name
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty"):
        open_video(tmp_path / "empty.mp4")
    with pytest.raises(VideoReadError, match="no usable video stream 3"):
        open_video(videos / "mpeg4.avi", stream=3)
