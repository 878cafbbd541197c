"""Compressed-domain signals: picture types, I-frames and dense motion-vector maps.

CMD (Huang et al., CVPR 2021, sections 2.2 and 4.1) takes I-frames as a proxy of the context
and motion vectors as a proxy of the motion of a video, following CoViAR: the video is
MPEG-4 Part 2 with a GOP of 12 and no B-frames, and a frame's motion vectors form a dense
H x W x 2 map in which every pixel of a block carries the block's vector.

The vectors come from the decoder (PyAV with ``flags2=+export_mvs``): per block, FFmpeg gives
the block's centre in the current frame (``dst``), where it was predicted from in the
reference (``src = dst + motion / motion_scale``) and whether the reference lies in the past
(``source = -1``) or the future (``+1``).

Sign convention (DESIGN.md). A map value is the displacement of the block from its position
in the previous frame to its position in the current frame, in pixels, x then y:
``dst - src`` for a past reference, ``src - dst`` for a future one. An object moving right by
3 px per frame reads +3, like forward optical flow (:func:`vidssl.video.optical_flow`).

When that is a per-frame displacement. The side data says past or future, not how far, and
it is attached to the frame it describes (frames come out of the decoder in presentation
order, with their own side data, whatever the packet order, packing or threading). What is
kept, per frame:

- MPEG-4 Part 2 and the other MPEG-1/2/4-family codecs: a P-frame predicts from the nearest
  earlier anchor (I or P frame) in presentation order, ``d`` frames back (``d = 1`` without
  B-frames; ``d = 3`` in the I B B P pattern of Xvid/DivX AVIs). Its past-reference vectors
  divided by ``d`` are kept: the mean displacement per frame over the gap, exact for motion
  that is constant across it.
- B-frames are never kept (``mv_valid`` False). libavcodec's MPEG-4 Part 2 decoder (the
  H.263 family) keeps no motion field for B-frames: their exported records are placeholders
  with zero vectors whatever the motion (in the tests' files as in UCF101's Xvid files), so
  they are not measurements. (MPEG-1/2 decoders do export B-frame vectors; those files are
  not a target here, and one rule for the family is simpler.)
- A predicted frame the decoder hands out without vectors is not kept either: the last
  anchor of a stream with B-frames is flushed at the end of the stream without side data.
- H.264 may reference any of up to ``max_num_ref_frames`` frames (from the sequence parameter
  set). With one reference frame and no B-frames every P-frame references the previous frame.
  Otherwise only a frame right after an IDR frame is known to reference the previous frame.

Frames that do not qualify read zero with ``mv_valid`` False, and the file gets one
:class:`MotionVectorWarning` naming it, counting the frames affected and naming the re-encode
command; I-frames and the frames that qualify are still returned correctly. Blocks predicted
only from the future read zero; so do intra blocks inside P-frames (they carry no vector).

Maps are built from the per-block side data with vectorised numpy (one fancy-index write per
distinct block size, no Python loop over blocks) on a grid of 4 x 4 pixel cells (block sizes
and positions are multiples of 4), then repeated to full resolution or area-averaged to a
coarser grid. ``downsample=4`` (the default) returns that grid: [ceil(H/4), ceil(W/4)], values
still in pixels of the full frame.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
import numpy as np

from vidssl.video.bitstream import h264_max_ref_frames
from vidssl.video.reader import AV_ERRORS, VideoReader, VideoReadError, picture_type

__all__ = [
    "CompressedVideo",
    "MotionVectorWarning",
    "read_compressed",
    "densify_motion_vectors",
    "accumulate_motion_vectors",
    "resize_vector_map",
    "REENCODE_HINT",
]

# Codecs whose decoder exports motion vectors and whose P-frames predict from the nearest
# anchor only (MPEG-1/2/4 family, libavcodec's mpegvideo decoders).
_ANCHOR_CODECS = frozenset({
    "mpeg4", "mpeg1video", "mpeg2video", "h261", "h263", "h263p", "h263i", "flv", "flv1",
    "msmpeg4", "msmpeg4v1", "msmpeg4v2", "msmpeg4v3", "wmv1", "wmv2", "rv10", "rv20",
})

REENCODE_HINT = ("re-encode the dataset to the CoViAR convention (MPEG-4 Part 2, GOP 12, no B-frames) with "
                 "`vidssl extract reencode --root SRC_ROOT --out DST_ROOT`")


class MotionVectorWarning(UserWarning):
    """A file whose motion vectors are not all per-frame displacements (B-frames, several references)."""


@dataclass
class CompressedVideo:
    """What :func:`read_compressed` returns for one file.

    path: the file.
    frame_types: one of 'I', 'P', 'B' per frame, in presentation order.
    iframe_indices: int64 [K] frame numbers of the I-frames.
    iframes: uint8 [K, H, W, 3] the decoded I-frames (RGB), or None when not requested.
    motion_vectors: float32 [N, H', W', 2] dense maps (x then y, pixels of the full frame; see the
        module docstring for the sign), zeros where ``mv_valid`` is False, or None when not requested.
    mv_valid: bool [N] whether ``motion_vectors[t]`` holds measured values: per-frame
        displacements from frame t-1 (False on I-frames and MPEG-4 B-frames; a P-frame predicted
        across B-frames holds its vectors divided by the distance, see the module docstring), or
        with ``accumulated`` the displacement from the GOP's I-frame (True on I-frames, which are
        0 by definition).
    size: (H, W) of the frames; downsample: the map's grid step in pixels.
    codec: decoder name; per_frame: whether every predicted frame's vectors are displacements
        from the previous frame by construction of the stream (CoViAR-style files: no B-frames);
        max_ref_frames: H.264's reference count. notes: the warning's text, if any.
    """

    path: str
    frame_types: list[str]
    iframe_indices: np.ndarray
    iframes: np.ndarray | None
    motion_vectors: np.ndarray | None
    mv_valid: np.ndarray
    size: tuple[int, int]
    fps: float
    codec: str
    downsample: int
    accumulated: bool = False
    per_frame: bool = True
    max_ref_frames: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.frame_types)


def read_compressed(
    path: str | os.PathLike,
    *,
    motion_vectors: bool = True,
    iframes: bool = True,
    downsample: int = 4,
    accumulated: bool = False,
    max_frames: int | None = None,
    threads: int = 1,
    stream: int | None = None,
) -> CompressedVideo:
    """Picture types, I-frames and dense motion-vector maps of a video file.

    Args:
        path: the video file.
        motion_vectors: build the dense maps (decodes every frame with motion-vector export).
            With ``motion_vectors=False`` only key frames are decoded (``skip_frame=NONKEY``)
            and picture types are read from the packet headers, which is much faster.
        iframes: decode the I-frames to RGB.
        downsample: grid step of the maps in pixels (1 = full resolution; default 4, i.e. 1/4).
        accumulated: accumulate the vectors back to the GOP's I-frame (CoViAR's representation)
            instead of frame-to-frame displacements.
        max_frames: stop after this many frames (a clip near the start needs no full decode).
        threads: decoder threads (1 in data-loader workers; one core each).
        stream: which video stream, as ``VideoReader(stream=...)`` (default: the best one).

    Frames are numbered as :class:`vidssl.video.VideoReader` numbers them: the decoding is the
    reader's own (``VideoReader.frames``, ``frame_types``, ``read_keyframes``).

    Raises:
        VideoReadError: the file cannot be opened or no frame decodes (the message names it).
    """
    path = str(path)
    if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1:
        raise ValueError(f"{path}: downsample must be a positive integer, got {downsample!r}")
    if accumulated and not motion_vectors:
        raise ValueError(f"{path}: accumulated=True needs motion_vectors=True")
    with VideoReader(path, stream=stream, threads=threads, motion_vectors=motion_vectors) as reader:
        height, width = reader.size
        fps, codec = reader.fps, reader.codec
        if motion_vectors:
            scan = _decode_all(reader, iframes, downsample, max_frames)
        else:
            scan = _decode_key_frames(reader, iframes, max_frames)
            if scan is None:  # picture types the headers do not tell: decode every frame
                scan = _decode_all_types(reader, iframes, max_frames)
        max_refs = _h264_max_refs(reader) if codec == "h264" else None  # same container, no reopen

    types = scan.types
    n = len(types)
    iframe_indices = np.array([t for t, c in enumerate(types) if c == "I"], dtype=np.int64)
    frames = None
    if iframes:
        frames = (np.stack([scan.iframes[t] for t in iframe_indices]) if len(iframe_indices)
                  else np.zeros((0, height, width, 3), dtype=np.uint8))
    result = CompressedVideo(path=path, frame_types=types, iframe_indices=iframe_indices, iframes=frames,
                             motion_vectors=None, mv_valid=np.zeros(n, dtype=bool), size=(height, width),
                             fps=fps, codec=codec, downsample=downsample, accumulated=accumulated,
                             max_ref_frames=max_refs)
    exported = scan.exported if motion_vectors else None
    valid, span, per_frame, problems = _previous_frame_reference(codec, types, scan.key, max_refs, exported)
    result.per_frame = per_frame
    if not motion_vectors:
        return result

    maps = scan.maps
    maps[~valid] = 0.0
    spanned = valid & (span > 1)
    if spanned.any():  # P-frames predicted across B-frames: mean displacement per frame
        maps[spanned] /= span[spanned].astype(np.float32)[:, None, None, None]
    result.motion_vectors, result.mv_valid = maps, valid
    if accumulated:
        result.motion_vectors, result.mv_valid = accumulate_motion_vectors(maps, types, valid, downsample)
    candidates = [t for t, c in enumerate(types) if c != "I"]
    affected = sum(not valid[t] for t in candidates)
    if affected:
        note = (f"{path}: {affected} of {len(candidates)} predicted frames have no per-frame motion vectors "
                f"and read zero with mv_valid False ({'; '.join(problems)}). To use every frame, {REENCODE_HINT}.")
        if spanned.any():
            note += (f" The {int(spanned.sum())} P-frames predicted across B-frames hold their vectors divided "
                     f"by the distance to their reference (up to {int(span.max())} frames): the mean "
                     f"displacement per frame.")
        result.notes.append(note)
        warnings.warn(note, MotionVectorWarning, stacklevel=2)
    return result


# -- decoding ---------------------------------------------------------------------------------


@dataclass
class _Scan:
    types: list[str]
    key: list[bool]
    iframes: dict[int, np.ndarray]
    maps: np.ndarray | None
    exported: np.ndarray | None = None  # bool [N]: the decoder attached motion vectors to frame t


def _decode_all(reader: VideoReader, want_iframes, downsample, max_frames) -> _Scan:
    """Decode every frame with motion-vector export, keeping each frame's raw vector records.

    The records (40 bytes per block) are copied out of the frames as they decode and turned
    into dense maps for the whole video at once at the end (:func:`_densify_records`), so
    the numpy work is a few calls per video rather than per frame.
    """
    height, width = reader.size
    records: list[np.ndarray] = []
    owners: list[int] = []

    def keep_vectors(frame, kind: str, index: int) -> None:
        if kind != "I":
            side = frame.side_data.get("MOTION_VECTORS")
            if side is not None:
                records.append(np.frombuffer(side, dtype=np.uint8).copy())  # the frame frees its buffer
                owners.append(index)

    scan = _decode_all_types(reader, want_iframes, max_frames, on_frame=keep_vectors)
    counts = [len(r) // _RECORD_BYTES for r in records]
    raw = np.concatenate(records) if records else np.zeros(0, dtype=np.uint8)
    owner = np.repeat(np.array(owners, dtype=np.intp), counts)
    scan.maps = _densify_records(raw, owner, len(scan.types), height, width, downsample)
    scan.exported = np.zeros(len(scan.types), dtype=bool)
    scan.exported[[t for t in owners if t < len(scan.types)]] = True
    return scan


def _decode_key_frames(reader: VideoReader, want_iframes, max_frames) -> _Scan | None:
    """Picture types from the packet headers (``VideoReader.frame_types``), RGB of the I-frames
    alone (``VideoReader.read_keyframes``: key frames decoded with ``skip_frame=NONKEY``).

    Returns None when the headers leave some type unknown (codecs other than MPEG-4 Part 2
    and H.264, unreadable headers): the caller then decodes every frame.
    """
    types = reader.frame_types
    if not types or "?" in types:
        return None
    if max_frames is not None:
        types = types[:max_frames]
    keys = set(reader.keyframes.tolist())
    key = [t in keys for t in range(len(types))]
    wanted = [t for t, c in enumerate(types) if c == "I"]
    iframes: dict[int, np.ndarray] = {}
    if want_iframes and wanted:
        iframes = dict(zip(wanted, reader.read_keyframes(wanted)))
    return _Scan(list(types), key, iframes, None)


def _decode_all_types(reader: VideoReader, want_iframes, max_frames, on_frame=None) -> _Scan:
    """Picture types (and I-frames) by decoding every frame (``VideoReader.frames``).

    ``on_frame(frame, kind, index)``, if given, sees every decoded frame (motion-vector capture).
    Damage part-way through keeps the frames before it (VideoReader keeps them too).
    """
    types: list[str] = []
    key: list[bool] = []
    iframes: dict[int, np.ndarray] = {}
    for frame in reader.frames(max_frames):
        kind = picture_type(frame)
        if kind == "I" and want_iframes:
            iframes[len(types)] = frame.to_ndarray(format="rgb24")
        if on_frame is not None:
            on_frame(frame, kind, len(types))
        types.append(kind)
        key.append(bool(frame.key_frame))
    return _Scan(types, key, iframes, None)


def _h264_max_refs(reader: VideoReader) -> int | None:
    """max_num_ref_frames from the stream's extradata, else from its first packet (raw Annex B)."""
    refs = h264_max_ref_frames(reader._stream.codec_context.extradata)
    if refs is None:
        try:
            reader._seek_to_start()
            first = next((p for p in reader._demux() if p.size), None)
        except AV_ERRORS:
            return None  # damaged first packet: the count stays unknown
        refs = h264_max_ref_frames(bytes(first)) if first is not None else None
    return refs


# -- dense maps -------------------------------------------------------------------------------


_RECORD_BYTES = 40  # sizeof(AVMotionVector)


def densify_motion_vectors(vectors, height: int, width: int, downsample: int = 4) -> np.ndarray:
    """Dense map float32 [ceil(H/d), ceil(W/d), 2] from one frame's exported motion vectors.

    ``vectors``: the frame's ``av.sidedata.MotionVectors`` or its ``to_ndarray()`` structured
    array (FFmpeg's 40-byte ``AVMotionVector`` records). See :func:`_densify_records`.
    """
    raw = np.frombuffer(vectors, dtype=np.uint8)
    owner = np.zeros(len(raw) // _RECORD_BYTES, dtype=np.intp)
    return _densify_records(raw, owner, 1, height, width, downsample)[0]


def _densify_records(raw: np.ndarray, owner: np.ndarray, num_frames: int, height: int, width: int,
                     downsample: int) -> np.ndarray:
    """Dense maps float32 [N, ceil(H/d), ceil(W/d), 2] from the vector records of a whole video.

    ``raw``: concatenated ``AVMotionVector`` records (bytes); ``owner[i]``: the frame of record i.
    Records are read through plain integer views (field access on a structured array costs
    more than everything else here). Only past-reference vectors are used (a block predicted
    from the future has no displacement from the previous frame); the value is
    ``dst - src = -motion / motion_scale`` in full-frame pixels, x then y, over the block
    ``[dst - size/2, dst + size/2)``.

    The maps are filled on the coarsest grid that every block position and size is a multiple
    of (16 px for plain macroblocks, 8 px for H.264 partitions), one fancy-index write per
    distinct block shape for the whole video, then expanded to the requested grid by index
    gathers (finer) or area averaging (coarser).
    """
    out_h, out_w = -(-height // downsample), -(-width // downsample)
    if raw.size % _RECORD_BYTES:
        raise ValueError(f"motion vectors must be {_RECORD_BYTES}-byte AVMotionVector records, got {raw.size} bytes")
    raw16 = raw.view("<i2").reshape(-1, _RECORD_BYTES // 2)
    raw32 = raw16.view("<i4")  # the same records as 10 int32 words
    past = raw32[:, 0] < 0  # source: -1 past, +1 future
    if not past.all():
        raw16, raw32, owner = raw16[past], raw32[past], owner[past]
    if len(raw16) == 0:
        return np.zeros((num_frames, out_h, out_w, 2), dtype=np.float32)
    scale = raw16[:, 16].view(np.uint16)  # motion_scale
    values = raw32[:, 6:8].astype(np.float32)  # motion_x, motion_y: src - dst in 1/scale px
    if (scale == scale[0]).all():
        values *= np.float32(-1.0 / max(int(scale[0]), 1))
    else:
        values /= -np.maximum(scale, 1).astype(np.float32)[:, None]
    size = raw16[:, 2].astype(np.int32)  # w (low byte), h (high byte)
    w, h = size & 0xFF, size >> 8
    x0 = raw16[:, 5] - (w >> 1)  # dst_x, dst_y: the block centre
    y0 = raw16[:, 6] - (h >> 1)
    bits = int(np.bitwise_or.reduce(np.concatenate([w, h, x0, y0])))
    cell = min(bits & -bits, 64)  # largest power of two dividing every position and size
    pad = -(-max(0, -int(min(x0.min(), y0.min()))) // cell)  # blocks starting above/left of the frame
    grid_h = max(-(-height // cell), int((y0 + h).max()) // cell) + pad
    grid_w = max(-(-width // cell), int((x0 + w).max()) // cell) + pad
    grid = np.zeros((num_frames * grid_h * grid_w, 2), dtype=np.float32)
    rows0 = y0 // cell + pad
    cols0 = x0 // cell + pad
    base = (owner * grid_h + rows0) * grid_w + cols0  # flat index of each block's top-left cell
    bw, bh = w // cell, h // cell
    if (bw == 1).all() and (bh == 1).all():
        grid[base] = values
    else:
        shapes = bh * 4096 + bw
        for key in np.unique(shapes):  # a handful of block shapes (16x16, 16x8, 8x16, 8x8)
            pick = shapes == key
            kh, kw = int(key) // 4096, int(key) % 4096
            offsets = (np.arange(kh)[:, None] * grid_w + np.arange(kw)[None, :]).reshape(-1)
            grid[(base[pick][:, None] + offsets[None, :]).reshape(-1)] = np.repeat(values[pick], kh * kw, axis=0)
    grid = grid.reshape(num_frames, grid_h, grid_w, 2)[:, pad:, pad:]
    return _regrid(grid, cell, downsample, height, width)


def _regrid(grid: np.ndarray, cell: int, downsample: int, height: int, width: int) -> np.ndarray:
    """Maps [N, h, w, 2] on ``cell``-pixel cells -> maps on ``downsample``-pixel cells (values unchanged)."""
    out_h, out_w = -(-height // downsample), -(-width // downsample)
    if cell % downsample == 0:  # each cell becomes k x k cells: two index gathers, no arithmetic
        k = cell // downsample
        rows = np.arange(out_h) // k
        cols = np.arange(out_w) // k
        pairs = grid.view(np.int64)  # (x, y) moved as one 8-byte item: faster gathers
        return np.take(np.take(pairs, rows, axis=1), cols, axis=2).view(np.float32)
    import cv2  # coarser than the blocks: area average, as resizing a dense field would do

    full = _regrid(grid, cell, 1, height, width)
    return np.stack([cv2.resize(m, (out_w, out_h), interpolation=cv2.INTER_AREA) for m in full])


def accumulate_motion_vectors(maps: np.ndarray, frame_types, valid: np.ndarray,
                              downsample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Displacement of each pixel from the GOP's I-frame to frame t (CoViAR's accumulated vectors).

    ``acc[t](p) = d * mv[t](p) + acc[r](p - d * mv[t](p))``: the pixel's displacement since frame
    ``r``, the frame t predicts from, plus the accumulated displacement of where it came from
    (nearest cell, clipped to the frame), reset to 0 on every I-frame. ``r`` is the previous
    anchor (I or P frame) for a P-frame, ``d = t - r`` (1 without B-frames; per-frame maps of
    P-frames predicted across B-frames hold their vectors divided by d), and ``t - 1`` for a
    valid B-frame. ``maps`` are per-frame displacements in full-frame pixels on a grid of
    ``downsample`` pixels. A frame whose vectors are unknown reads 0 (valid False) and so do
    the frames that predict from it, until the next I-frame; B-frames that are not valid
    break nothing (no frame predicts from them).

    Returns (float32 [N, H', W', 2], bool [N] valid).
    """
    maps = np.asarray(maps, dtype=np.float32)
    n, gh, gw, _ = maps.shape
    acc = np.zeros_like(maps)
    acc_valid = np.zeros(n, dtype=bool)
    rows = np.arange(gh, dtype=np.float32)[:, None]
    cols = np.arange(gw, dtype=np.float32)[None, :]
    last_anchor = None
    for t in range(n):
        kind = frame_types[t]
        if kind == "I":
            acc_valid[t] = True
        elif valid[t]:
            ref = last_anchor if kind != "B" else t - 1
            if ref is not None and ref >= 0 and acc_valid[ref]:
                mv = maps[t] * np.float32(t - ref)
                src_r = np.clip(np.rint(rows - mv[..., 1] / downsample), 0, gh - 1).astype(np.intp)
                src_c = np.clip(np.rint(cols - mv[..., 0] / downsample), 0, gw - 1).astype(np.intp)
                acc[t] = mv + acc[ref][src_r, src_c]
                acc_valid[t] = True
        if kind != "B":
            last_anchor = t
    return acc, acc_valid


def resize_vector_map(maps: np.ndarray, size: tuple[int, int], from_size: tuple[int, int] | None = None,
                      to_size: tuple[int, int] | None = None) -> np.ndarray:
    """Resample vector maps [..., h, w, 2] to ``size`` (h', w') and rescale the values to match.

    The values are displacements in pixels of a frame of ``from_size`` (H, W) (default: the
    map's own grid); they come out in pixels of a frame of ``to_size`` (default: ``size``, the
    new grid itself): x times ``to_w / W``, y times ``to_h / H``. The dataset's signals pass
    the frame size the clip is delivered at (DESIGN.md: every motion field is in pixels of that
    frame size), whatever grid the map is on. Resampling is area-averaging when shrinking and
    nearest when enlarging (the maps are piecewise constant over blocks).
    """
    import cv2

    maps = np.asarray(maps, dtype=np.float32)
    lead, (h, w) = maps.shape[:-3], maps.shape[-3:-1]
    out_h, out_w = int(size[0]), int(size[1])
    frame_h, frame_w = from_size if from_size is not None else (h, w)
    to_h, to_w = to_size if to_size is not None else (out_h, out_w)
    flat = maps.reshape((-1, h, w, 2))
    if (out_h, out_w) != (h, w):
        interp = cv2.INTER_AREA if out_h <= h and out_w <= w else cv2.INTER_NEAREST
        flat = np.stack([cv2.resize(m, (out_w, out_h), interpolation=interp) for m in flat]) if len(flat) else \
            np.zeros((0, out_h, out_w, 2), np.float32)
    flat = flat * np.array([to_w / frame_w, to_h / frame_h], dtype=np.float32)
    return flat.reshape(lead + (out_h, out_w, 2)).astype(np.float32, copy=False)


# -- which frames reference the previous one ----------------------------------------------------


def _previous_frame_reference(codec: str, types: list[str], key: list[bool], max_refs: int | None,
                              exported: np.ndarray | None = None,
                              ) -> tuple[np.ndarray, np.ndarray, bool, list[str]]:
    """(valid [N], span [N], per_frame, problems): which frames' vectors are per-frame displacements.

    ``span[t]``: how many frames back frame t's past reference lies (1 = the previous frame);
    a valid frame's vectors are divided by it. ``exported[t]``: the decoder attached vectors to
    frame t (None: not known, e.g. types only). ``problems`` explains, for the warning, why
    some predicted frames are not valid (empty when all are).
    """
    n = len(types)
    predicted = np.array([c != "I" for c in types], dtype=bool)
    span = np.ones(n, dtype=np.int64)
    has_b = "B" in types
    problems: list[str] = []
    if codec in _ANCHOR_CODECS:
        # Display order: a P-frame predicts from the nearest earlier anchor (I or P frame).
        valid = np.zeros(n, dtype=bool)
        last_anchor = None
        for t, c in enumerate(types):
            if c == "P" and last_anchor is not None:
                valid[t], span[t] = True, t - last_anchor
            if c != "B":
                last_anchor = t
        if has_b:
            problems.append(f"{types.count('B')} B-frames, for which the decoder exports no vectors of their own")
        if types and types[0] != "I":
            problems.append("the stream starts on a predicted frame whose reference is missing")
        per_frame = not has_b
    elif codec == "h264":
        if max_refs == 1 and not has_b:
            valid = predicted.copy()
            valid[:1] = False
            per_frame = True
        else:
            after_idr = np.zeros(n, dtype=bool)
            after_idr[1:] = np.array(key[:-1], dtype=bool) & (np.array(types[:-1]) == "I")
            reasons = ["B-frames"] if has_b else []
            if max_refs is None:
                reasons.append("an unreadable reference-frame count")
            elif max_refs > 1:
                reasons.append(f"{max_refs} reference frames")
            problems.append(f"H.264 with {' and '.join(reasons)}: the decoder says only whether a block's "
                            f"reference is past or future, not how far, so only frames right after an IDR "
                            f"frame are known to reference the previous frame")
            valid = predicted & after_idr
            per_frame = False
    else:
        return np.zeros(n, dtype=bool), span, False, [f"the {codec} decoder exports no motion vectors"]
    if exported is not None:
        missing = valid & ~exported
        if missing.any():
            count = int(missing.sum())
            problems.append(f"{count} P-frame{'s' if count > 1 else ''} the decoder handed out without vectors "
                            f"(as the last anchor of a stream with B-frames, which the decoder flushes without them)")
            valid &= exported
    span[~valid] = 1
    return valid, span, per_frame, problems
