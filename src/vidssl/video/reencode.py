"""Re-encoding videos to the CoViAR convention: MPEG-4 Part 2, GOP 12, no B-frames.

Motion vectors are per-frame displacements only in streams whose every P-frame predicts from
the frame before it (see :mod:`vidssl.video.compressed`). CoViAR (Wu et al. 2018) and CMD
re-encode their datasets with ``ffmpeg -vf scale=340:256 -q:v 1 -c:v mpeg4`` and the
encoder's default GOP of 12; this module does the same with PyAV, frame by frame (memory
stays one frame, whatever the video's length), writing atomically through
:func:`vidssl.video.writer.write_video`.

The output keeps the input's file name, so the dataset's split files still apply to the
re-encoded copy; only containers that cannot hold MPEG-4 Part 2 change extension (``.webm``
becomes ``.mkv``; Kinetics catalogs match files by their stem). Audio is dropped.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from vidssl.video.reader import VideoReader, VideoReadError
from vidssl.video.writer import write_video

__all__ = ["COVIAR_SIZE", "reencode_video", "reencoded_name"]

COVIAR_SIZE = (256, 340)  # (height, width) as every size in vidssl; CoViAR's `-vf scale=340:256`
_EXTENSION_FOR = {".webm": ".mkv"}  # containers that cannot carry MPEG-4 Part 2


def reencoded_name(relative_path: str | os.PathLike) -> Path:
    """Where a video lands in the re-encoded dataset (same relative path; .webm -> .mkv)."""
    path = Path(relative_path)
    return path.with_suffix(_EXTENSION_FOR.get(path.suffix.lower(), path.suffix))


def reencode_video(src: str | os.PathLike, dst: str | os.PathLike, *, size: tuple[int, int] | None = None,
                   gop: int = 12, qscale: int = 1) -> int:
    """Re-encode ``src`` to ``dst`` as MPEG-4 Part 2 with a GOP of ``gop`` and no B-frames.

    Args:
        size: (height, width) of the output, e.g. :data:`COVIAR_SIZE`; None keeps the size.
            Frames are resized as :class:`VideoReader` resizes them (swscale's area filter).
        gop: frames per group of pictures (an I-frame every ``gop`` frames).
        qscale: MPEG-4 quantiser, 1 (best, CoViAR's ``-q:v 1``) to 31.

    Returns the number of frames written. Raises ``VideoReadError`` naming ``src`` when it
    cannot be decoded; nothing is left at ``dst`` then.
    """
    src = str(src)
    if not 1 <= int(qscale) <= 31:
        raise ValueError(f"qscale must be in 1..31, got {qscale}")
    with VideoReader(src, size=size) as reader:  # the reader's decode loop: frames numbered as everywhere else
        fps = reader.fps or 25.0
        try:
            # A constant quantiser through qmin = qmax: libavcodec's mpeg4 encoder takes the
            # -q:v value from each frame's `quality` field, which PyAV does not set.
            return write_video(dst, _rgb_frames(reader), fps=fps, codec="mpeg4", gop=gop, max_b_frames=0,
                               qscale=None, options={"qmin": str(qscale), "qmax": str(qscale)})
        except ValueError as e:
            if "no frames to write" in str(e):
                raise VideoReadError(src, "no frame decodes") from e
            raise


def _rgb_frames(reader: VideoReader) -> Iterator[np.ndarray]:
    """Every decoded frame as RGB at ``reader.size``, converted as ``VideoReader.read`` converts;
    damage part-way keeps the frames before it, as the reader does."""
    for frame in reader.frames():
        rgb = np.empty((*reader.size, 3), dtype=np.uint8)
        reader._to_rgb(frame, rgb)
        yield rgb
