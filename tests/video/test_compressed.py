"""Compressed-domain reading: picture types, I-frames and motion vectors of known motion."""
from __future__ import annotations

import dataclasses
import warnings

import cv2
import numpy as np
import pytest
import torch

from vidssl.data.augment import ClipAugment
from vidssl.video.compressed import (
    MotionVectorWarning,
    accumulate_motion_vectors,
    read_compressed,
    resize_vector_map,
)
from vidssl.video.reader import VideoReader, VideoReadError
from vidssl.video.writer import write_video

SIZE, OBJ, FRAMES = 96, 32, 14
# (top, left, dx, dy): each object moves a known integer number of pixels per frame.
OBJECTS = ((12, 6, 3, 0), (44, 58, -2, 1))


def render(objects=OBJECTS, size=SIZE, obj=OBJ, frames=FRAMES, seed=0) -> np.ndarray:
    """Objects with a blocky random texture moving over a smooth static background.

    Sharp 4-px texture cells make the encoders' motion search unambiguous (noise makes the
    MPEG-4 encoder code some blocks intra, smooth textures invite H.264 sub-pixel guesses).
    """
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (5, 5), 1.0)
    textures = [rng.integers(0, 256, (obj // 4, obj // 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
                for _ in objects]
    out = np.repeat(background[None], frames, axis=0)
    for t in range(frames):
        for (top, left, dx, dy), texture in zip(objects, textures):
            out[t, top + dy * t:top + dy * t + obj, left + dx * t:left + dx * t + obj] = texture
    return out


def write(tmp_path, name, frames=None, **kw):
    path = tmp_path / name
    write_video(path, render() if frames is None else frames, **kw)
    return path


def h264(tmp_path, name="clip.mp4", frames=None, refs=1, bframes=0):
    # One encoder thread (codec-level option; x264-params' threads=1 is overridden): threaded
    # x264 may take different decisions from run to run.
    return write(tmp_path, name, frames, codec="libx264", max_b_frames=bframes,
                 options={"threads": "1", "x264-params": f"ref={refs}:bframes={bframes}"})


def object_boxes(t, objects=OBJECTS, obj=OBJ):
    return [(top + dy * t, left + dx * t, dx, dy) for top, left, dx, dy in objects]


def macroblocks_inside(top, left, obj=OBJ, mb=16):
    """16x16 macroblocks (pixel slices) lying entirely inside an object's square."""
    rows = [r for r in range(0, SIZE, mb) if r >= top and r + mb <= top + obj]
    cols = [c for c in range(0, SIZE, mb) if c >= left and c + mb <= left + obj]
    return [(slice(r, r + mb), slice(c, c + mb)) for r in rows for c in cols]


def interior(maps_t, top, left, obj=OBJ):
    """Map values [K, 2] over the 16x16 macroblocks lying entirely inside an object."""
    blocks = macroblocks_inside(top, left, obj)
    assert blocks, "the object must cover at least one whole macroblock"
    return np.concatenate([maps_t[rows, cols].reshape(-1, 2) for rows, cols in blocks])


def agreement(values, expected) -> float:
    return float((values == np.asarray(expected, np.float32)).all(axis=-1).mean())


def check_known_motion(maps, valid, frame_types):
    """Vectors inside each object equal its motion; the static background far from them is zero.

    Encoders are free to code a block intra (no vector) or, in H.264, to skip a background
    block with its neighbours' predicted vector; a sign or placement error would instead
    break every block. So: at least 90% of the objects' interior and 95% of the far
    background must match exactly, and every object's median vector must be its motion.
    """
    inside, matched, background = 0, 0, []
    for t in range(1, len(frame_types)):
        if frame_types[t] == "I":
            assert not valid[t] and not maps[t].any()
            continue
        assert valid[t]
        near_motion = np.zeros((SIZE, SIZE), bool)
        for top, left, dx, dy in object_boxes(t):
            values = interior(maps[t], top, left)
            np.testing.assert_array_equal(np.median(values, axis=0), [dx, dy])
            inside += len(values)
            matched += agreement(values, [dx, dy]) * len(values)
            for tt in (t - 1, t):  # where the object is now or was (uncovered background)
                top2, left2 = top - dy * (t - tt), left - dx * (t - tt)
                near_motion[max(0, top2 - 16):top2 + OBJ + 16, max(0, left2 - 16):left2 + OBJ + 16] = True
        background.append(agreement(maps[t][~near_motion], [0, 0]))
    assert matched / inside >= 0.9, matched / inside
    assert np.mean(background) >= 0.95 and min(background) >= 0.8, background


@pytest.mark.parametrize("codec", ["mpeg4", "h264"])
def test_vectors_equal_known_motion(tmp_path, codec):
    path = write(tmp_path, "clip.avi") if codec == "mpeg4" else h264(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MotionVectorWarning)  # a CoViAR-style stream warns nothing
        video = read_compressed(path, downsample=1)
    assert video.codec == codec and video.per_frame
    assert video.frame_types == ["I"] + ["P"] * 11 + ["I", "P"]
    assert video.motion_vectors.shape == (FRAMES, SIZE, SIZE, 2) and video.motion_vectors.dtype == np.float32
    check_known_motion(video.motion_vectors, video.mv_valid, video.frame_types)


def test_downsampled_maps_are_the_full_map_on_a_coarser_grid(tmp_path):
    path = write(tmp_path, "clip.avi", frames=render(size=SIZE - 6, frames=4))  # 90 px: partial blocks
    full = read_compressed(path, downsample=1, iframes=False).motion_vectors
    quarter = read_compressed(path, iframes=False).motion_vectors  # default 1/4
    assert quarter.shape == (4, 23, 23, 2)
    np.testing.assert_array_equal(quarter, full[:, ::4, ::4])
    eighth = read_compressed(path, downsample=8, iframes=False).motion_vectors
    assert eighth.shape == (4, 12, 12, 2)
    np.testing.assert_allclose(eighth[:, :11, :11], full[:, :88, :88].reshape(4, 11, 8, 11, 8, 2).mean(axis=(2, 4)),
                               atol=1e-5)


def test_iframes_and_types_match_a_full_decode(tmp_path):
    path = write(tmp_path, "clip.avi")
    video = read_compressed(path)
    np.testing.assert_array_equal(video.iframe_indices, [0, 12])
    with VideoReader(path) as reader:
        np.testing.assert_array_equal(video.iframes, reader.read([0, 12]))
    fast = read_compressed(path, motion_vectors=False)  # key frames only
    assert fast.frame_types == video.frame_types and fast.motion_vectors is None
    np.testing.assert_array_equal(fast.iframes, video.iframes)
    short = read_compressed(path, max_frames=5)
    assert short.num_frames == 5 and short.motion_vectors.shape[0] == 5
    np.testing.assert_array_equal(short.motion_vectors, video.motion_vectors[:5])


def test_key_frame_mode_reads_b_frame_types_from_headers(tmp_path):
    path = write(tmp_path, "clip.m4v", max_b_frames=2)
    with pytest.warns(MotionVectorWarning):
        full = read_compressed(path)
    fast = read_compressed(path, motion_vectors=False)
    assert "B" in full.frame_types and fast.frame_types == full.frame_types
    np.testing.assert_array_equal(fast.iframes, full.iframes)


def test_h264_with_b_frames_and_references_warns_and_keeps_what_is_correct(tmp_path):
    path = h264(tmp_path, refs=3, bframes=2)
    with pytest.warns(MotionVectorWarning) as caught:
        video = read_compressed(path, downsample=1)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert str(path) in message and "vidssl extract reencode" in message and "B-frames" in message
    assert "B" in video.frame_types and not video.per_frame and video.max_ref_frames >= 3
    with VideoReader(path) as reader:
        np.testing.assert_array_equal(video.iframes, reader.read(video.iframe_indices))
    # Only frames right after the IDR frame are known to reference the previous frame.
    after_idr = [t for t in range(1, FRAMES) if video.frame_types[t - 1] == "I"]
    assert list(np.flatnonzero(video.mv_valid)) == after_idr == [1, 13]
    assert not video.motion_vectors[~video.mv_valid].any()
    for t in after_idr:
        for top, left, dx, dy in object_boxes(t):
            values = interior(video.motion_vectors[t], top, left)
            # A B-frame block predicted only from the future (or intra) has no past vector: 0.
            assert agreement(values, [dx, dy]) + agreement(values, [0, 0]) >= 0.9
            assert agreement(values, [dx, dy]) >= (0.9 if video.frame_types[t] == "P" else 0.0)
        assert any(agreement(interior(video.motion_vectors[t], top, left), [dx, dy]) > 0.5
                   for top, left, dx, dy in object_boxes(t))


def test_mpeg4_with_b_frames_keeps_the_p_frames_per_frame(tmp_path):
    path = write(tmp_path, "clip.avi", max_b_frames=1)
    with pytest.warns(MotionVectorWarning, match="B-frames"):
        video = read_compressed(path, downsample=1)
    types = video.frame_types
    last_anchor = max(t for t, c in enumerate(types) if c != "B")
    expected = [types[t] == "P" and t != last_anchor for t in range(len(types))]
    np.testing.assert_array_equal(video.mv_valid, expected)
    assert video.mv_valid.any() and not video.per_frame
    for t in np.flatnonzero(video.mv_valid):  # predicted from 2 frames back, read per frame
        assert types[t - 1] == "B"
        for top, left, dx, dy in object_boxes(t):
            np.testing.assert_array_equal(np.median(interior(video.motion_vectors[t], top, left), axis=0), [dx, dy])


def test_accumulated_vectors_trace_back_to_the_iframe(tmp_path):
    path = write(tmp_path, "clip.avi")
    video = read_compressed(path, downsample=1, accumulated=True)
    assert video.accumulated and video.mv_valid.all()  # I-frames: zero displacement, by definition
    for t in (0, 5, 11, 12, 13):
        since_i = t - (12 if t >= 12 else 0)
        for top, left, dx, dy in object_boxes(t):
            centre = video.motion_vectors[t, top + OBJ // 2, left + OBJ // 2]
            np.testing.assert_array_equal(centre, [dx * since_i, dy * since_i])
    # The function itself: a chain broken by an unknown frame stays broken until the next I-frame.
    maps = np.ones((4, 2, 2, 2), np.float32)
    acc, valid = accumulate_motion_vectors(maps, ["I", "P", "P", "P"], np.array([False, True, False, True]))
    np.testing.assert_array_equal(valid, [True, True, False, False])
    assert acc[1, 0, 0, 0] == 1 and not acc[2:].any()


def test_unreadable_file_raises_naming_it(tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    with pytest.raises(VideoReadError, match="broken.avi"):
        read_compressed(bad)


def _geometry(n, size, box, flip):
    aug = ClipAugment(crop_size=size)
    params = aug.sample_params(n, SIZE, SIZE, torch.Generator().manual_seed(0))
    params = dataclasses.replace(params, boxes=torch.tensor([box] * n, dtype=torch.float32),
                                 flip=torch.tensor([flip] * n))
    return aug, params


def test_flip_of_vector_maps_matches_the_flipped_video(tmp_path):
    frames = render(frames=4)
    original = read_compressed(write(tmp_path, "a.avi", frames), downsample=1).motion_vectors
    flipped_video = read_compressed(write(tmp_path, "b.avi", np.ascontiguousarray(frames[:, :, ::-1])),
                                    downsample=1).motion_vectors
    aug, params = _geometry(1, SIZE, (0, 0, SIZE, SIZE), True)
    flipped_maps = aug.apply_geometry(torch.from_numpy(original[None]), params, vector_field=True)
    flipped_maps = flipped_maps[0].permute(1, 2, 3, 0).numpy()  # [T, H, W, 2]
    for t in range(1, 4):
        for top, left, dx, dy in object_boxes(t):
            mirrored_left = SIZE - left - OBJ
            of_video = interior(flipped_video[t], top, mirrored_left)
            of_maps = interior(flipped_maps[t], top, mirrored_left)
            assert agreement(of_video, [-dx, dy]) >= 0.75  # moving the other way
            assert agreement(of_maps, [-dx, dy]) >= 0.75
            assert agreement(of_maps, of_video) >= 0.75


def test_resize_of_vector_maps_rescales_the_values(tmp_path):
    frames = render(objects=((8, 8, 4, 2),), obj=64, frames=4)
    original = read_compressed(write(tmp_path, "a.avi", frames), downsample=1).motion_vectors
    half = np.stack([cv2.resize(f, (SIZE // 2, SIZE // 2), interpolation=cv2.INTER_AREA) for f in frames])
    half_video = read_compressed(write(tmp_path, "b.avi", half), downsample=1).motion_vectors
    aug, params = _geometry(1, SIZE // 2, (0, 0, SIZE, SIZE), False)
    resized = aug.apply_geometry(torch.from_numpy(original[None]), params, vector_field=True)
    resized = resized[0].permute(1, 2, 3, 0).numpy()
    np.testing.assert_allclose(resize_vector_map(original, (SIZE // 2, SIZE // 2)), resized[..., :, :, :], atol=1e-5)
    for t in range(1, 4):
        for top, left, dx, dy in object_boxes(t, ((8, 8, 4, 2),)):
            cy, cx = (top + 32) // 2, (left + 32) // 2  # object centre in the half-size frame
            np.testing.assert_allclose(resized[t, cy, cx], [dx / 2, dy / 2], atol=1e-5)
            np.testing.assert_allclose(half_video[t, cy, cx], [dx / 2, dy / 2], atol=0.5)


# -- MPEG-4 Part 2 with B-frames (Xvid / DivX AVIs), packed or not -------------------------------

BF_SIZE, BF_FRAMES, BF_OBJECT = 64, 14, ((16, 4, 2, 1),)  # 32 px object moving (2, 1) px per frame
_VOP = b"\x00\x00\x01\xb6"


def _mpeg4_packets(frames, max_b_frames):
    """Encode with libavcodec's mpeg4 encoder: (pts, dts, data, key) in decode order, VOL header."""
    from fractions import Fraction

    import av

    ctx = av.CodecContext.create("mpeg4", "w")
    ctx.width, ctx.height, ctx.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    ctx.time_base, ctx.framerate = Fraction(1, 25), Fraction(25)
    ctx.gop_size, ctx.max_b_frames = 12, max_b_frames
    ctx.options = {"qmin": "3", "qmax": "3"}
    packets = []
    for i, frame in enumerate(list(frames) + [None]):
        video_frame = None
        if frame is not None:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = i
        packets += [(int(p.pts), int(p.dts), bytes(p), bool(p.is_keyframe)) for p in ctx.encode(video_frame)]
    first = packets[0][2]
    return packets, first[:first.find(_VOP)]


def _nvop(resolution, increment):
    """A DivX placeholder: a P-VOP header with vop_coded = 0 (ISO 14496-2 6.2.5), byte-stuffed."""
    bits = "01" + "0" + "1" + format(increment % resolution, f"0{max(1, (resolution - 1).bit_length())}b") + "10"
    bits += "0" + "1" * ((-len(bits) - 1) % 8)
    return _VOP + int(bits, 2).to_bytes(len(bits) // 8, "big")


def _pack(packets, resolution):
    """DivX/Xvid "packed bitstream": an anchor travels with the next B-frame, an N-VOP fills in after
    the remaining B-frames, so there is one chunk per displayed frame and no reordering."""
    kinds = ["IPBP"[data[data.find(_VOP) + 4] >> 6] for _, _, data, _ in packets]
    chunks, i = [], 0
    while i < len(packets):
        pts, _, data, key = packets[i]
        if kinds[i] != "B" and i + 1 < len(packets) and kinds[i + 1] == "B":
            chunks.append((data + packets[i + 1][2], key))
            i += 2
            while i < len(packets) and kinds[i] == "B":
                chunks.append((packets[i][2], False))
                i += 1
            chunks.append((_nvop(resolution, pts), False))
        else:
            chunks.append((data, key))
            i += 1
    return [(t, t, data, key) for t, (data, key) in enumerate(chunks)]


def write_mpeg4(path, frames, max_b_frames=2, packed=False):
    """One libavcodec encode muxed to AVI or MP4, optionally as a DivX packed bitstream
    (user data "DivX503b1393p" after the VOL header, as DivX 5 and Xvid write it)."""
    from fractions import Fraction

    import av

    from vidssl.video.bitstream import mpeg4_time_resolution

    packets, vol = _mpeg4_packets(frames, max_b_frames)
    if packed:
        _, _, first, key = packets[0]
        packets[0] = (0, 0, vol + b"\x00\x00\x01\xb2DivX503b1393p" + first[len(vol):], key)
        packets = _pack(packets, mpeg4_time_resolution(vol))
        assert any(data.count(_VOP) > 1 for _, _, data, _ in packets)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.time_base = Fraction(1, 25)
        if str(path).endswith(".mp4"):
            stream.codec_context.extradata = vol
        for pts, dts, data, key in packets:
            packet = av.Packet(data)
            packet.pts, packet.dts, packet.time_base, packet.stream = pts, dts, Fraction(1, 25), stream
            packet.is_keyframe = key
            container.mux(packet)
    return path


@pytest.mark.parametrize("name,packed", [("clip.avi", False), ("clip.mp4", False), ("packed.avi", True),
                                         ("packed.mp4", True)])
def test_mpeg4_b_frame_vectors_match_the_same_content_without_b_frames(tmp_path, name, packed):
    frames = render(objects=BF_OBJECT, size=BF_SIZE, frames=BF_FRAMES)
    plain = read_compressed(write_mpeg4(tmp_path / "plain.avi", frames, max_b_frames=0), downsample=1)
    assert plain.frame_types == ["I"] + ["P"] * 11 + ["I", "P"] and plain.mv_valid.sum() == 12
    with pytest.warns(MotionVectorWarning) as caught:
        video = read_compressed(write_mpeg4(tmp_path / name, frames, packed=packed), downsample=1)
    types = video.frame_types
    assert "".join(types) == "IBBPBBPBBPBBIP"
    with VideoReader(tmp_path / name) as reader:  # the same frame numbers as the RGB reader
        assert reader.num_frames == BF_FRAMES
        np.testing.assert_array_equal(video.iframes, reader.read(video.iframe_indices))
    # P-frames (predicted from the anchor 3 frames back) are valid; B-frames are not (the MPEG-4
    # decoder exports no vectors of their own for them); the last anchor is flushed without vectors.
    assert list(np.flatnonzero(video.mv_valid)) == [3, 6, 9]
    assert not video.motion_vectors[~video.mv_valid].any()
    for t in (3, 6, 9):
        for top, left, dx, dy in object_boxes(t, BF_OBJECT):
            mine, reference = interior(video.motion_vectors[t], top, left), interior(plain.motion_vectors[t], top, left)
            np.testing.assert_array_equal(np.median(mine, axis=0), [dx, dy])  # per frame, like the plain file
            np.testing.assert_array_equal(np.median(mine, axis=0), np.median(reference, axis=0))
            assert agreement(mine, [dx, dy]) >= 0.75
    assert len(caught) == 1
    message = str(caught[0].message)
    assert name in message and "vidssl extract reencode" in message
    assert "9 of 12 predicted frames" in message and "8 B-frames" in message
    # Accumulated to the I-frame, anchor to anchor (CoViAR): the P-frames still trace back.
    with pytest.warns(MotionVectorWarning):
        acc = read_compressed(tmp_path / name, downsample=1, accumulated=True)
    assert list(np.flatnonzero(acc.mv_valid)) == [0, 3, 6, 9, 12]
    for t in (3, 6, 9):
        for top, left, dx, dy in object_boxes(t, BF_OBJECT):
            np.testing.assert_array_equal(acc.motion_vectors[t, top + 16, left + 16], [dx * t, dy * t])


def test_b_frame_vectors_stay_with_their_frames_under_frame_threading(tmp_path, monkeypatch):
    import vidssl.video.reader as reader_module

    path = write_mpeg4(tmp_path / "packed.avi", render(objects=BF_OBJECT, size=BF_SIZE, frames=BF_FRAMES), packed=True)
    with pytest.warns(MotionVectorWarning):
        serial = read_compressed(path, downsample=1)
    open_video = reader_module.open_video

    def frame_threaded(p, stream=None):
        opened = open_video(p, stream)
        opened[1].codec_context.thread_type = "FRAME"  # frames decode out of step, side data must follow
        return opened

    monkeypatch.setattr(reader_module, "open_video", frame_threaded)
    with pytest.warns(MotionVectorWarning):
        threaded = read_compressed(path, downsample=1, threads=2)
    assert threaded.frame_types == serial.frame_types
    np.testing.assert_array_equal(threaded.mv_valid, serial.mv_valid)
    np.testing.assert_array_equal(threaded.motion_vectors, serial.motion_vectors)


def test_stream_parameter_picks_the_video_stream(tmp_path):
    import av

    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as c:
        streams = []
        for width, height in ((32, 32), (64, 48)):
            s = c.add_stream("mpeg4", rate=25)
            s.width, s.height, s.pix_fmt = width, height, "yuv420p"
            s.codec_context.gop_size = 4
            streams.append(s)
        for t in range(8):
            for s in streams:
                frame = av.VideoFrame.from_ndarray(np.full((s.height, s.width, 3), 20 * t, np.uint8), format="rgb24")
                for packet in s.encode(frame):
                    c.mux(packet)
        for s in streams:
            for packet in s.encode(None):
                c.mux(packet)
    for stream, size in ((None, (48, 64)), (0, (32, 32)), (1, (48, 64))):
        for mv in (False, True):
            video = read_compressed(path, stream=stream, motion_vectors=mv)
            assert video.size == size and video.iframes.shape[1:3] == size and video.num_frames == 8
    with pytest.raises(VideoReadError, match="no usable video stream 2"):
        read_compressed(path, stream=2)


def test_key_frame_mode_decodes_only_the_i_frames(tmp_path, monkeypatch):
    path = write(tmp_path, "clip.avi", gop=4)
    decoded = []
    original = VideoReader.read_keyframes

    def spy(self, indices):
        out = original(self, indices)
        decoded.append(self.frames_decoded)
        return out

    monkeypatch.setattr(VideoReader, "read_keyframes", spy)
    video = read_compressed(path, motion_vectors=False)
    assert "".join(video.frame_types) == "IPPPIPPPIPPPIP" and decoded == [4]
    with VideoReader(path) as reader:
        np.testing.assert_array_equal(video.iframes, reader.read(video.iframe_indices))
