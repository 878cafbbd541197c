"""Writing video files with PyAV.

One function serves the embedded benchmark, the re-encoder and the tests, so every file
vidssl writes goes through the same, known encoder settings. The default is the CoViAR
convention the compressed-domain methods rely on: MPEG-4 Part 2, GOP 12, no B-frames.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np

from vidssl.io import atomic_path

__all__ = ["write_video"]


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray] | np.ndarray,
    *,
    fps: float = 25.0,
    codec: str = "mpeg4",
    gop: int = 12,
    max_b_frames: int = 0,
    bit_rate: int | None = None,
    qscale: int | None = 3,
    container_format: str | None = None,
    options: dict[str, str] | None = None,
) -> int:
    """Encode uint8 RGB frames [T, H, W, 3] to ``path``; returns the number of frames written.

    The file is written to a temporary name in the same folder and renamed at the end, so a
    crash never leaves a half-written video that a later run would mistake for a complete one.
    ``qscale`` (MPEG-4 Part 2 only) fixes the quantiser, which keeps tiny synthetic videos
    sharp; ``options`` go to the codec as-is (e.g. ``{"refs": "1"}`` for libx264).
    H.264 needs even width and height; other codecs accept any size.
    """
    path = Path(path)
    fmt = container_format or _format_for(path)
    count = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format=fmt) as container:
            stream = None
            for frame in frames:
                frame = np.ascontiguousarray(frame, dtype=np.uint8)
                if frame.ndim != 3 or frame.shape[2] != 3:
                    raise ValueError(f"{path}: frames must be [H, W, 3] uint8, got {frame.shape}")
                if stream is None:
                    stream = _add_stream(container, codec, fps, frame.shape[1], frame.shape[0],
                                         gop, max_b_frames, bit_rate, qscale, options)
                video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                for packet in stream.encode(video_frame):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError(f"{path}: no frames to write")
            for packet in stream.encode():
                container.mux(packet)
    return count


def _format_for(path: Path) -> str | None:
    # PyAV guesses from the extension; raw MPEG-4 elementary streams need naming.
    return {".m4v": "m4v", ".h264": "h264", ".264": "h264"}.get(path.suffix.lower())


def _add_stream(container, codec, fps, width, height, gop, max_b_frames, bit_rate, qscale, options):
    rate = Fraction(fps).limit_denominator(1001)
    stream = container.add_stream(codec, rate=rate)
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    stream.gop_size = gop
    stream.codec_context.max_b_frames = max_b_frames
    opts = dict(options or {})
    if bit_rate is not None:
        stream.bit_rate = bit_rate
    elif qscale is not None and codec == "mpeg4":
        # A constant quantiser keeps tiny synthetic videos sharp at any size. FFmpeg's mpeg4
        # encoder reads it per frame (which PyAV never sets), so pin the allowed range instead.
        opts.setdefault("qmin", str(qscale))
        opts.setdefault("qmax", str(qscale))
    if codec in ("libx264", "h264"):
        opts.setdefault("bf", str(max_b_frames))
        opts.setdefault("g", str(gop))
    stream.codec_context.options = opts
    return stream
