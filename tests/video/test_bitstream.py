"""Header parsing shared by the reader and the compressed-domain reader (vidssl.video.bitstream)."""
from __future__ import annotations

import av
import numpy as np
import pytest

from vidssl.video import bitstream
from vidssl.video.writer import write_video


def packets(path):
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        extradata = stream.codec_context.extradata
        data = [bytes(p) for p in c.demux(stream) if p.size]
    with av.open(str(path)) as c:
        types = "".join({1: "I", 2: "P", 3: "B"}[int(f.pict_type)] for f in c.decode(video=0))
    return extradata, data, types


def frames(n=24, size=32):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8)
    return np.stack([base[t % size:t % size + size, :size] for t in range(n)])


@pytest.mark.parametrize("name,codec,options", [
    ("b.avi", "mpeg4", None),
    ("b.mp4", "libx264", {"x264-params": "b-adapt=0:b-pyramid=none"}),
    ("pyramid.mkv", "libx264", {"x264-params": "b-adapt=0:b-pyramid=normal:bframes=3"}),
    ("b.h264", "libx264", {"x264-params": "b-adapt=0:b-pyramid=none"}),
])
def test_picture_types_and_disposable_pictures_from_packet_headers(tmp_path, name, codec, options):
    path = tmp_path / name
    write_video(path, frames(), codec=codec, gop=12, max_b_frames=3 if "pyramid" in name else 2, options=options)
    extradata, data, decoded = packets(path)
    headers = bitstream.PictureHeaders("h264" if codec == "libx264" else codec, extradata)
    parsed = [headers.picture(d) for d in data]
    assert sorted(k for k, _ in parsed) == sorted(decoded)  # decoding order vs display order
    for kind, disposable in parsed:
        assert not disposable or kind == "B"  # only B-pictures may be left out
    count = sum(d for _, d in parsed)
    if "pyramid" in name:  # the middle B of each group is a reference: never disposable
        assert 0 < count < decoded.count("B")
    else:
        assert count == decoded.count("B")


def test_h264_reference_count_and_unreadable_bytes():
    assert bitstream.h264_max_ref_frames(None) is None
    assert bitstream.h264_picture(b"\x00\x00\x01", None) == (None, None)
    assert bitstream.mpeg4_vop_type(b"junk") is None
    assert bitstream.PictureHeaders("vp9", None).picture(b"\x00\x00\x01\xb6\x80") == (None, False)


def test_bit_reader_reads_exp_golomb_codes():
    bits = bitstream.BitReader(bytes([0b10100110, 0b01000000]))  # ue: 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3
    assert [bits.ue(), bits.ue(), bits.ue(), bits.ue()] == [0, 1, 2, 3]
    with pytest.raises(EOFError):
        bits.u(16)
