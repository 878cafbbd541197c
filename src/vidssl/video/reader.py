"""Reading frames from video files with PyAV.

Frame index ``k`` means the k-th frame the decoder produces, counting from the start of the
stream in presentation order. That is the only numbering that survives real files: headers
lie (an AVI header saying 176 frames for 175 that decode), MPEG-4 "not coded" VOPs occupy a
packet but yield no frame, truncated files lose their tail, and variable-frame-rate files
have no fixed time step. So the reader never trusts ``stream.frames``.

How a clip is read without decoding the file:

1. On open, the video packets are demuxed once without decoding (cheap: no pixel work).
   Each packet that will yield a frame contributes its pts; sorting them gives presentation
   order, so frame ``k`` is the packet with the k-th smallest pts, and the keyframe packets
   give the frame numbers one can seek to. Plain AVIs (UCF101, HMDB51) skip even that: their
   own chunk index is used when it provably agrees with the header and the file size.
2. ``read(indices)`` seeks to the last keyframe at or before the smallest wanted index,
   decodes forward, and re-seeks only where a keyframe lies between the current position
   and the next wanted index. One container stays open for the reader's lifetime. Packets of
   pictures nothing predicts from (MPEG-4 B-VOPs, H.264 ``nal_ref_idc == 0``; read from their
   headers, :mod:`vidssl.video.bitstream`) are not sent to the decoder unless wanted: in an
   I B B P stream that spares two of every three frames between the keyframe and the clip, and
   changes no pixel of any other frame. One decoder thread, one swscale thread: a loader runs
   one reader per worker process.
   Demuxers disagree on what a seek timestamp means: MP4 and Matroska look it up by
   presentation time, AVI and raw streams by decoding time. With B-frames a keyframe's pts
   exceeds its dts, so a keyframe's pts may lie at or past the *next* keyframe's dts (short
   GOPs, e.g. scene cuts) and a dts-seek to it lands one keyframe too late. Each keyframe
   therefore gets a seek timestamp that lands on it under both meanings where one exists,
   and otherwise one that cannot overshoot (see ``_seek_timestamps``).
3. Every decoded frame is checked against the index by counting: after a seek the frames
   must come out with consecutive numbers. A mismatch (a packet that yielded no frame, a
   timestamp the index did not predict) means the packet index is wrong for this file; the
   reader then rebuilds it from one full decode, which is exact by definition. Files whose
   decoded timestamps are themselves unusable are read by decoding from the start.

Picture types (``frame_types``) come from the packet headers on demand (one demux pass, no
decoding), key frames alone decode with ``skip_frame=NONKEY`` (``read_keyframes``), and
``frames()`` is the plain decode from the start that :mod:`vidssl.video.compressed` and
:mod:`vidssl.video.reencode` build on: one decode loop for the whole video layer.

Files the packet scan cannot index safely (damaged packets, MPEG-4 "packed B-frames") are
indexed by a full decode at open; they are rare, and correctness beats speed for them.
"""
from __future__ import annotations

import logging
import os
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import av
import av.error
from av.video.reformatter import Interpolation, VideoReformatter
import numpy as np

from vidssl.video import bitstream
from vidssl.video.bitstream import MAX_NVOP_SIZE, START_CODE, VOP_START_CODE, PictureHeaders

__all__ = ["VideoReadError", "VideoReader", "probe_video", "open_video", "picture_type", "AV_ERRORS",
           "describe_error"]

logger = logging.getLogger(__name__)

# Raw elementary-stream demuxers to try when content probing fails, e.g. an MPEG-4 Part 2
# stream saved as ".mp4" without a container: the extension steers the probe to the MP4
# demuxer, which then finds no "moov" atom.
_RAW_FORMATS = ("m4v", "h264", "hevc", "mpegvideo")

# What PyAV raises for unreadable input: FFmpeg errors (errno-style ones such as EPERM and EIO
# on damaged files included), and OSError from the file system.
AV_ERRORS = (av.error.FFmpegError, OSError)

# AVPictureType -> 'I' / 'P' / 'B' (S -> P, SI -> I, SP -> P, BI -> B).
_PICT_TYPE = {1: "I", 2: "P", 3: "B", 4: "P", 5: "I", 6: "P", 7: "B"}

# How ``VideoReader(size=...)`` resizes: swscale's area filter, applied in the same pass that
# converts YUV to RGB (chroma interpolated to full horizontal resolution first); decord too scales
# inside swscale.
# Against cv2.INTER_AREA of the full-size RGB frame: mean abs difference about 1.2 (of 255) on
# 320x240 -> 112x112, 99% of values within 4. RESIZE_METHOD names it where resized frames or
# what is computed from them are stored (FrameCache keys, signal cache specs): a change of method
# must not mix old and new pixels.
RESIZE_FLAGS = Interpolation.AREA | Interpolation.FULL_CHR_H_INT
RESIZE_METHOD = "swscale-area"

# The largest frame a reader decodes: 8192 x 8192 (67 Mpixel), past 8K UHD (7680 x 4320). One such
# frame is 200 MB as RGB and a clip at native size many GB, so a larger declared size (most often a
# damaged or forged header: 16000 x 16000 in a file of kilobytes) is refused before any decoding.
MAX_FRAME_PIXELS = 8192 * 8192


class VideoReadError(Exception):
    """A video file that cannot be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        # Both go into args so the exception pickles across DataLoader / process-pool workers.
        super().__init__(str(path), reason)
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class _IndexMismatch(Exception):
    """Decoded frames disagree with the frame index (internal; triggers a rebuild)."""


@dataclass
class _FrameIndex:
    """Frame numbers <-> timestamps for one video stream.

    ``pts[k]`` is the presentation timestamp of frame k (strictly increasing), or ``None``
    when timestamps are unusable and frames can only be counted from the stream start.
    ``keyframes`` are frame numbers decoding can start from after a seek (ascending).
    ``source`` says where it came from: "avi index" or "packets" (predicted, verified while
    decoding) or "decoding" (exact by definition). ``seek_ts`` holds, aligned with
    ``keyframes``, the timestamp to hand the demuxer's seek for each keyframe (its pts when
    not given).
    """

    num_frames: int
    pts: np.ndarray | None
    keyframes: np.ndarray
    source: str
    seek_ts: np.ndarray | None = None
    number_of: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pts is not None:
            self.number_of = {int(p): k for k, p in enumerate(self.pts)}
            if self.seek_ts is None:
                self.seek_ts = self.pts[self.keyframes]

    def seek_timestamp(self, key: int) -> int:
        """Timestamp to seek to for keyframe number ``key`` (one of ``keyframes``)."""
        i = bisect_right(self.keyframes, key) - 1  # type: ignore[arg-type]
        return int(self.seek_ts[i])  # type: ignore[index]

    @property
    def exact(self) -> bool:
        return self.source == "decoding"

    @property
    def seekable(self) -> bool:
        return self.pts is not None and len(self.keyframes) > 0

    def keyframe_at_or_before(self, k: int) -> int | None:
        i = bisect_right(self.keyframes, k) - 1  # type: ignore[arg-type]
        return int(self.keyframes[i]) if i >= 0 else None


class VideoReader:
    """Random access to the frames of one video file.

    ``size=(H, W)`` resizes every output frame with swscale's area filter while converting it to
    RGB (``RESIZE_FLAGS``; within about 1.2 mean abs of ``cv2.INTER_AREA``, 3x cheaper). Attributes:
    ``path``, ``num_frames`` (frames that really decode), ``fps``, ``size`` (H, W of output
    frames), ``codec``, ``frames_decoded`` (decoder output so far, for measuring cost),
    ``expected_frames`` (frames the demuxed packets promise; more than ``num_frames`` after
    ``count_decodable()`` means damaged packets), ``header_frames`` (the container header's
    frame count, 0 when it has none), ``packets_in_file`` (video packets present, placeholders
    included), ``cut_off`` (the file holds fewer packets than its header and its own index
    promise: a truncated AVI or MP4; a header that merely overcounts a complete index is not
    cut off), ``corrupt_frames`` (frames that decode with errors, counted by
    ``count_decodable()``), ``stream`` (which of the file's video streams is read, counted
    among its video streams). Use as a context manager or call
    ``close()``; the container is closed even when opening fails half-way. Not thread-safe:
    one reader per thread or worker.

    ``stream=None`` reads the file's best video stream as the ``ffmpeg`` tool picks it (the one
    flagged default, then the largest; cover art never counts), logging the choice once per file
    when there are several; ``stream=N`` reads its N-th video stream (0-based, ffmpeg's
    ``-map 0:v:N``).

    ``frame_types`` gives every frame's picture type without decoding; ``read_keyframes``
    decodes key frames alone. ``frames()`` iterates every decoded frame from the start, as
    ``read`` numbers them (the loop :func:`vidssl.video.read_compressed` builds on).
    ``threads``: decoder threads (default 1: one per data-loader worker); ``motion_vectors``:
    make the decoder export motion vectors as frame side data (``frames()`` then carries them).
    """

    def __init__(self, path: str | os.PathLike, *, size: tuple[int, int] | None = None,
                 stream: int | None = None, threads: int = 1, motion_vectors: bool = False):
        self.path = str(path)
        if size is not None:
            size = (int(size[0]), int(size[1]))
            if size[0] <= 0 or size[1] <= 0:
                raise ValueError(f"{self.path}: size must be positive (H, W), got {size}")
        self._container, self._stream, self._format = open_video(self.path, stream)
        try:
            self.stream: int = list(self._container.streams.video).index(self._stream)
            self.header_frames: int = max(int(self._stream.frames or 0), 0)
            self.corrupt_frames = 0
            ctx = self._stream.codec_context
            self._threads = max(1, int(threads))
            self._decoder_options = {"flags2": "+export_mvs"} if motion_vectors else {}
            self._configure_decoder()
            self.codec: str = ctx.name
            self._headers = PictureHeaders(self.codec, ctx.extradata)
            self._native_size = (int(ctx.height), int(ctx.width))
            _check_frame_size(self.path, self._native_size)
            self.size: tuple[int, int] = size or self._native_size
            self._resize = size is not None and size != self._native_size
            self._bsf = None
            self._reformatter: VideoReformatter | None = None
            self._types: str | None = None  # picture types, from the headers or a full decode
            self.frames_decoded = 0  # decoder output so far; shows what a read really costs
            indexed = len(self._stream.index_entries)  # the container's own index, before demuxing adds to it
            self._index = self._index_from_avi_entries() or self._index_from_packets()
            # Cut off: the header promises more frames than there are packets, and the container's
            # index (complete in a whole AVI; the moov's in an MP4) does not account for just those.
            self.cut_off: bool = self.header_frames > self.packets_in_file and indexed != self.packets_in_file
            self.fps: float = self._frame_rate()
        except BaseException:
            self.close()
            raise

    # -- public -----------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return self._index.num_frames

    @property
    def keyframes(self) -> np.ndarray:
        """Frame numbers decoding can start from (ascending): where a seek lands."""
        return self._index.keyframes.copy()

    @property
    def frame_types(self) -> str:
        """Picture type of every frame in display order, one character each: 'I', 'P', 'B', or
        '?' where the headers do not say. Read from the packet headers (no pixel is decoded;
        one demux pass, cached); exact from the decode when the file was indexed by decoding."""
        if self._types is None or len(self._types) != self.num_frames:
            self._types = self._types_from_headers()
        return self._types

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 [len(indices), H, W, 3]."""
        idx = self._checked(indices)
        out = np.empty((idx.size, *self.size, 3), dtype=np.uint8)
        if idx.size:
            self._decode_wanted(sorted(set(idx.tolist())), _Placement(idx, out, self))
        return out

    def read_keyframes(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Key frames (I-frames) at ``indices`` as uint8 [K, H, W, 3], decoding nothing else.

        Each index must be a key frame (``keyframes``) or an I-frame (``frame_types``); any other
        raises ValueError naming it. Key frames are decoded with ``skip_frame=NONKEY`` after a
        seek to each (the decoder skips every other packet unread); an I-frame that is not a key
        frame (H.264 non-IDR) is read as ``read`` reads it. The pixels equal ``read``'s.
        """
        idx = self._checked(indices)
        out = np.empty((idx.size, *self.size, 3), dtype=np.uint8)
        if not idx.size:
            return out
        keys = set(self._index.keyframes.tolist())
        others = sorted({k for k in idx.tolist() if k not in keys})
        if others:
            types = self.frame_types
            wrong = [k for k in others if types[k] != "I"]
            if wrong:
                raise ValueError(f"{self.path}: frame {wrong[0]} is not a key frame or I-frame (type "
                                 f"{types[wrong[0]]!r}); read_keyframes reads I-frames only, read() any frame")
        place = _Placement(idx, out, self)
        wanted = sorted({k for k in idx.tolist() if k in keys})
        if wanted and self._index.seekable and self._bsf is None:
            try:
                wanted = self._decode_keyframes(wanted, place)
            except AV_ERRORS as e:
                raise VideoReadError(self.path, f"decoding failed ({describe_error(e)})") from e
        if wanted or others:
            self._decode_wanted(sorted(set(wanted) | set(others)), place)
        return out

    def frames(self, max_frames: int | None = None) -> Iterator[av.VideoFrame]:
        """Every decoded frame from the first (at most ``max_frames``), in display order: the n-th
        frame yielded is frame n of ``read``. Packets that do not decode lose their frame (the
        count is what decodes); damage part-way ends the iteration with VideoReadError only when
        no frame decoded."""
        if self._container is None:
            raise ValueError(f"{self.path}: reader is closed")
        count = 0
        try:
            self._seek_to_start()
            for frame in self._decoded_frames():
                yield frame
                count += 1
                if max_frames is not None and count >= max_frames:
                    return
        except AV_ERRORS as e:
            if not count:
                raise VideoReadError(self.path, f"no frame decodes ({describe_error(e)})") from e
        if not count:
            raise VideoReadError(self.path, "no frame decodes (stream holds no decodable video)")

    def read_all(self) -> np.ndarray:
        """Every frame, uint8 [num_frames, H, W, 3] (memory grows with the video length)."""
        return self.read(np.arange(self.num_frames))

    def count_decodable(self) -> int:
        """Decode the whole stream once and return the exact frame count (also fixes the index)."""
        if not self._index.exact:
            self._index = self._index_from_decoding()
        return self._index.num_frames

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            self._container = None
            container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # last resort; always close explicitly
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"VideoReader({self.path!r}, num_frames={self.num_frames}, fps={self.fps:.3f}, "
                f"size={self.size}, codec={self.codec!r})")

    # -- indexing ---------------------------------------------------------------------------

    def _index_from_avi_entries(self) -> _FrameIndex | None:
        """The AVI's own chunk index (idx1 / OpenDML), when it provably maps 1:1 to frames.

        Reading it costs no packet I/O, which matters when a loader opens one file per clip.
        Only used when the header's frame count, the index and the file size agree, no
        B-frames reorder presentation, and (MPEG-4) no chunk is small enough to be a "not
        coded" VOP or a packed-B-frame placeholder; everything else takes the packet scan.
        """
        stream = self._stream
        if self._container.format.name != "avi" or stream.codec_context.has_b_frames:
            return None
        entries = stream.index_entries
        n = len(entries)
        if n == 0 or n != stream.frames:
            return None
        file_size = os.path.getsize(self.path)
        mpeg4 = self.codec == "mpeg4"
        pts = np.empty(n, dtype=np.int64)
        keyframes = []
        for i, entry in enumerate(entries):
            if entry.pos + 8 + entry.size > file_size:  # 8: chunk header; beyond = truncated
                return None
            if entry.size == 0 or (mpeg4 and entry.size <= MAX_NVOP_SIZE):
                return None
            pts[i] = entry.timestamp
            if entry.flags & 1:  # AVINDEX_KEYFRAME
                keyframes.append(i)
        if not keyframes or np.any(np.diff(pts) <= 0):
            return None
        if mpeg4:
            first = next(self._demux(stream), None)  # stream headers: packed B-frames?
            if first is None or bitstream.divx_packed((stream.codec_context.extradata or b"") + bytes(first)):
                return None
        self.expected_frames = self.packets_in_file = n
        return _FrameIndex(n, pts, np.array(keyframes, dtype=np.int64), "avi index")

    def _index_from_packets(self) -> _FrameIndex:
        """Predict frame numbers from a demux-only pass; falls back to decoding when unsafe."""
        pts: list[int] = []
        key_dts: dict[int, int | None] = {}  # keyframe pts -> its packet's dts
        safe = True
        mpeg4 = self.codec == "mpeg4"
        extradata = self._stream.codec_context.extradata or b""
        vop_resolution = None
        first_packet = True
        previous = None
        frame_packets = 0
        self.packets_in_file = 0
        try:
            for packet in self._demux():
                if packet.size == 0:
                    continue  # end-of-stream marker
                self.packets_in_file += 1
                if packet.is_discard:
                    continue  # dropped by the decoder by design (edit lists)
                if packet.is_corrupt:
                    safe = False  # may or may not decode: only decoding can tell
                if mpeg4 and packet.size <= MAX_NVOP_SIZE and START_CODE not in bytes(packet):
                    # No start code at all, so no picture: Xvid's 1-byte placeholder for a
                    # dropped frame (the decoder skips it, "frame skip" / no output).
                    continue
                if mpeg4 and first_packet:
                    # Stream headers sit in extradata and/or before the first VOP.
                    data = bytes(packet)
                    headers = extradata + data[: max(data.find(VOP_START_CODE), 0)]
                    vop_resolution = bitstream.mpeg4_time_resolution(headers)
                    if bitstream.divx_packed(headers):
                        self._use_unpack_filter()
                        safe = False
                first_packet = False
                if mpeg4 and frame_packets < 32 and self._bsf is None and bytes(packet).count(VOP_START_CODE) > 1:
                    # Two VOPs in one packet early on: packed B-frames, whatever the user data says.
                    self._use_unpack_filter()
                    safe = False
                if mpeg4 and packet.size <= MAX_NVOP_SIZE and self._bsf is None:
                    coded = bitstream.mpeg4_vop_coded(bytes(packet), vop_resolution)
                    if coded is None:
                        safe = False
                    elif not coded:
                        if previous is not None and bytes(previous).count(VOP_START_CODE) > 1:
                            # An N-VOP placeholder after a two-VOP packet: packed B-frames
                            # without the DivX flag; FFmpeg's decoder would drop the B-frames.
                            self._use_unpack_filter()
                            safe = False
                        else:
                            continue  # "not coded" VOP: the decoder outputs no frame for it
                previous = packet
                frame_packets += 1
                if packet.pts is None:
                    safe = False
                    continue
                pts.append(int(packet.pts))
                if packet.is_keyframe:
                    key_dts.setdefault(int(packet.pts), packet.dts)
        except AV_ERRORS:
            # Damaged data part-way: what demuxed so far is real, but decoding decides.
            safe = False
        self.expected_frames = frame_packets
        if not pts and safe:
            raise VideoReadError(self.path, "video stream contains no frames (no packets)")
        order = np.array(sorted(pts), dtype=np.int64)
        if not safe or np.any(np.diff(order) == 0):
            return self._index_from_decoding()
        key_pts = sorted(key_dts)
        keyframes = np.searchsorted(order, np.array(key_pts, dtype=np.int64))
        seek_ts = _seek_timestamps(key_pts, [key_dts[p] for p in key_pts])
        return _FrameIndex(len(order), order, keyframes, "packets", seek_ts)

    def _use_unpack_filter(self) -> None:
        """Route packets through mpeg4_unpack_bframes: DivX "packed B-frames" store a P- and a
        B-frame in one packet and a placeholder in the next; unpacked, every packet is one
        frame. Their packet timestamps do not follow presentation order, so such files are
        indexed by decoding."""
        if self._bsf is None:
            self._bsf = _unpack_bframes_filter(self._stream)

    def _index_from_decoding(self) -> _FrameIndex:
        """Exact index: decode the stream from its start and record every frame (and its type)."""
        pts: list[int | None] = []
        key: list[int] = []
        types: list[str] = []
        packet_dts: dict[int, int | None] = {}  # pts -> dts of the packets decoded
        corrupt = 0
        try:
            self._seek_to_start()
            for frame in self._decoded_frames(packet_dts=packet_dts):
                if frame.key_frame:
                    key.append(len(pts))
                pts.append(frame.pts)
                types.append(picture_type(frame))
                corrupt += bool(frame.is_corrupt)  # concealed errors, e.g. a cut-off last frame
        except AV_ERRORS as e:
            if not pts:
                raise VideoReadError(self.path, f"no frame decodes ({describe_error(e)})") from e
            # Frames before the damage are kept; the video ends where decoding stopped.
        finally:
            self.corrupt_frames = corrupt
        if not pts:
            raise VideoReadError(self.path, "no frame decodes (stream holds no decodable video)")
        self._types = "".join(types)
        usable = all(p is not None for p in pts) and all(a < b for a, b in zip(pts, pts[1:]))
        order = np.array(pts, dtype=np.int64) if usable else None
        keyframes = np.array(key, dtype=np.int64)
        seek_ts = None
        if order is not None:
            key_pts = [int(order[k]) for k in key]
            seek_ts = _seek_timestamps(key_pts, [packet_dts.get(p) for p in key_pts])
        return _FrameIndex(len(pts), order, keyframes, "decoding", seek_ts)

    def _types_from_headers(self) -> str:
        """Picture types from one demux pass over the packet headers (no decoding)."""
        index = self._index
        if index.pts is None or not self._headers.known or self._bsf is not None:
            return "?" * index.num_frames  # (packed B-frames are indexed by decoding, types included)
        types = ["?"] * index.num_frames
        try:
            self._seek_to_start()
            for packet in self._demux():
                number = index.number_of.get(packet.pts) if packet.pts is not None and packet.size else None
                if number is not None:
                    kind = self._headers.picture(bytes(packet))[0]
                    if kind is not None:
                        types[number] = kind
        except AV_ERRORS:
            pass  # what was read so far holds; the rest stays unknown
        return "".join(types)

    # -- decoding ---------------------------------------------------------------------------

    def _checked(self, indices) -> np.ndarray:
        if self._container is None:
            raise ValueError(f"{self.path}: reader is closed")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = idx[(idx < 0) | (idx >= self.num_frames)]
        if bad.size:
            raise IndexError(
                f"{self.path}: frame index {int(bad[0])} out of range, video has "
                f"{self.num_frames} frames (valid indices 0..{self.num_frames - 1})"
            )
        return idx

    def _decode_wanted(self, wanted: list[int], place: "_Placement") -> None:
        """Decode the frames numbered in ``wanted`` (ascending, unique) into their places."""
        if self._container is None:
            raise ValueError(f"{self.path}: reader is closed")
        try:
            while self._index.seekable:
                try:
                    return self._decode_seeking(wanted, place)
                except _IndexMismatch:
                    if self._index.exact:
                        break  # seeking itself misbehaves in this file: count from the start
                    # The packets mispredicted this file: index it by decoding, exact by
                    # definition, then seek again with the corrected index.
                    self._index = self._index_from_decoding()
                    self._check_still_in_range(wanted)
            return self._decode_from_start(wanted, place)
        except AV_ERRORS as e:
            raise VideoReadError(self.path, f"decoding failed ({describe_error(e)})") from e

    def _decode_seeking(self, wanted: list[int], place: "_Placement") -> None:
        index = self._index
        want = set(wanted)
        dropped: set[int] = set()  # frames whose packets were left out (see _droppable)
        drop = self._droppable(want, dropped)
        frames: Iterator | None = None
        pos: int | None = None  # number of the last frame decoded since the latest seek
        for target in wanted:
            key = index.keyframe_at_or_before(target)
            if frames is None or pos is None or (key is not None and key > pos + 1):
                # Seeking skips frames only when a keyframe lies past the current position.
                if key is None:
                    self._seek_to_start()
                else:
                    self._seek_to_keyframe(key)
                frames, pos = self._decoded_frames(drop), None
                dropped.clear()
            while pos is None or pos < target:
                frame = next(frames, None)
                if frame is None:
                    raise _IndexMismatch(f"stream ended before frame {target}")
                number = index.number_of.get(frame.pts) if frame.pts is not None else None
                if number is None:
                    raise _IndexMismatch(f"unexpected timestamp {frame.pts}")
                if pos is None and number > target:
                    raise _IndexMismatch(f"seek for frame {target} landed at {number}")
                if pos is not None:
                    while pos + 1 in dropped and pos + 1 < number:
                        pos += 1  # left out on purpose: nothing predicts from it, nobody asked
                    if number != pos + 1:
                        raise _IndexMismatch(f"frame {pos + 1} missing after seek")
                pos = number
                if number in want:
                    place.put(number, frame)

    def _droppable(self, want: set[int], dropped: set[int]) -> Callable | None:
        """A test for packets the decoder can be spared: pictures no other picture predicts from
        (MPEG-4 B-VOPs, H.264 ``nal_ref_idc == 0``) that are not wanted. Leaving them out changes
        no other frame; it saves decoding, e.g. two of every three frames between a keyframe and
        a clip in an I B B P stream. Their numbers go to ``dropped``, for the frame count check."""
        if (not self._headers.known or self._bsf is not None or self._index.pts is None
                or not self._stream.codec_context.has_b_frames):
            return None  # (no reordering: every picture is a reference, nothing to leave out)
        number_of, picture = self._index.number_of, self._headers.picture

        def drop(packet) -> bool:
            if packet.pts is None:
                return False
            number = number_of.get(packet.pts)
            if number is None or number in want or not picture(bytes(packet))[1]:
                return False
            dropped.add(number)
            return True

        return drop

    def _decode_keyframes(self, wanted: list[int], place: "_Placement") -> list[int]:
        """Decode key frames only (``skip_frame=NONKEY``), seeking to each; returns those not found."""
        index = self._index
        ctx = self._stream.codec_context
        missing = []
        ctx.skip_frame = "NONKEY"
        try:
            for key in wanted:
                self._seek_to_keyframe(key)
                found = False
                for packet in self._demux():
                    at_end = packet.size == 0
                    number = index.number_of.get(packet.pts) if packet.pts is not None else None
                    frames = [] if at_end else _decode_packet(ctx, packet)
                    if at_end or number == key:
                        frames += ctx.decode(None)  # the decoder holds a frame back: drain it
                    self.frames_decoded += len(frames)
                    for frame in frames:
                        if frame.pts is not None and index.number_of.get(frame.pts) == key:
                            place.put(key, frame)
                            found = True
                    if at_end or number == key or (number is not None and number > key and packet.is_keyframe):
                        break
                if not found:
                    missing.append(key)
        except _IndexMismatch:
            missing = wanted
        finally:
            ctx.skip_frame = "DEFAULT"
            ctx.flush_buffers()
        return missing

    def _decode_from_start(self, wanted: list[int], place: "_Placement") -> None:
        want = set(wanted)
        self._seek_to_start()
        for number, frame in enumerate(self._decoded_frames()):
            if number in want:
                place.put(number, frame)
            if number >= wanted[-1]:
                return
        raise VideoReadError(
            self.path, f"frame {wanted[-1]} requested but decoding ends before it "
            f"(file damaged or changed since it was opened)")

    def _decoded_frames(self, drop: Callable | None = None,
                        packet_dts: dict | None = None) -> Iterator[av.VideoFrame]:
        """Frames from the current demux position to the end; undecodable packets are skipped.

        The one decode loop of the video layer. ``drop(packet)`` True leaves a packet out;
        ``packet_dts``, when given, collects pts -> dts of every packet sent to the decoder.
        """
        ctx = self._stream.codec_context
        for packet in self._demux():
            at_end = packet.size == 0
            if self._bsf is not None:
                packets = self._bsf.filter(None if at_end else packet)
            else:
                packets = [] if at_end or (drop is not None and drop(packet)) else [packet]
            for p in packets:
                if packet_dts is not None and p.pts is not None:
                    packet_dts.setdefault(int(p.pts), p.dts)
                frames = _decode_packet(ctx, p)
                self.frames_decoded += len(frames)
                yield from frames
            if at_end:
                frames = ctx.decode(None)  # drain frames the decoder still holds
                self.frames_decoded += len(frames)
                yield from frames

    def _demux(self, stream=None) -> Iterator[av.Packet]:
        """The packets of ``stream`` (default: the one read) from the current position; every loop
        over packets goes through here, so the demuxer is closed however the loop ends. PyAV frees
        a demux generator's packet only when the generator is closed: one dropped part-way (a read
        stops at its last wanted frame) leaked about 300 bytes, 5 MB of RSS over 10,000 clip reads
        (benchmarks/bench_memory.py)."""
        packets = self._container.demux(stream if stream is not None else self._stream)
        try:
            yield from packets
        finally:
            packets.close()

    def _configure_decoder(self) -> None:
        ctx = self._stream.codec_context
        ctx.thread_count = self._threads
        if self._decoder_options:
            ctx.options = dict(self._decoder_options)

    def _seek_to_start(self) -> None:
        try:
            self._container.seek(0, backward=True)
        except av.error.FFmpegError:
            # Raw elementary streams without timestamps (e.g. .h264) cannot seek at all:
            # reopening is the only way back to the first frame.
            index = self._stream.index
            self._container.close()
            self._container = av.open(self.path, format=self._format, metadata_errors="ignore")
            self._stream = next(s for s in self._container.streams if s.index == index)
            self._configure_decoder()
            if self._bsf is not None:
                self._bsf = _unpack_bframes_filter(self._stream)
        if self._bsf is not None:
            self._bsf.flush()

    def _seek_to_keyframe(self, key: int) -> None:
        try:
            self._container.seek(self._index.seek_timestamp(key), stream=self._stream,
                                 backward=True)
        except av.error.FFmpegError as e:
            raise _IndexMismatch(f"cannot seek ({describe_error(e)})") from e
        if self._bsf is not None:
            self._bsf.flush()

    def _check_still_in_range(self, wanted: list[int]) -> None:
        if wanted[-1] >= self._index.num_frames:
            raise VideoReadError(
                self.path, f"frame {wanted[-1]} requested but only {self._index.num_frames} frames "
                f"decode (the packet index over-counted; num_frames is now corrected)")

    def _to_rgb(self, frame: av.VideoFrame, out: np.ndarray) -> None:
        """Convert ``frame`` to RGB at the output size, into ``out`` [H, W, 3]."""
        # One reformatter per reader, one swscale thread: frame.to_ndarray(format=...) builds a
        # new swscale context for every frame (6x the conversion itself on 64x64 clips), and
        # swscale's own threads only contend with the decoder and the other loader workers.
        # Resizing happens inside that same swscale pass (RESIZE_FLAGS): converting at full size
        # and then resizing with cv2.INTER_AREA cost 3-4x as much at 320x240 -> 112x112.
        if self._reformatter is None:
            self._reformatter = VideoReformatter()
        if self._resize or (frame.height, frame.width) != self.size:
            rgb = self._reformatter.reformat(frame, width=self.size[1], height=self.size[0], format="rgb24",
                                             interpolation=RESIZE_FLAGS, threads=1)
        else:
            rgb = self._reformatter.reformat(frame, format="rgb24", threads=1)
        out[...] = rgb.to_ndarray()

    def _frame_rate(self) -> float:
        for rate in (self._stream.average_rate, self._stream.guessed_rate):
            if rate:
                return float(rate)
        pts, tb = self._index.pts, self._stream.time_base
        if pts is not None and len(pts) > 1 and tb:
            return float((len(pts) - 1) / ((pts[-1] - pts[0]) * tb))
        return 0.0


class _Placement:
    """Where each decoded frame goes in a read's output array (a frame may be asked for twice)."""

    def __init__(self, idx: np.ndarray, out: np.ndarray, reader: VideoReader):
        self.rows: dict[int, list[int]] = {}
        for row, k in enumerate(idx.tolist()):
            self.rows.setdefault(k, []).append(row)
        self.out, self.reader = out, reader

    def put(self, number: int, frame: av.VideoFrame) -> None:
        first, *others = self.rows[number]
        self.reader._to_rgb(frame, self.out[first])
        for row in others:
            self.out[row] = self.out[first]


def _decode_packet(ctx, packet) -> list:
    try:
        return ctx.decode(packet)
    except av.error.InvalidDataError:
        return []  # that frame is lost; numbering counts what decodes


def picture_type(frame: av.VideoFrame) -> str:
    """'I', 'P' or 'B' of a decoded frame (S-frames count as P); the key flag decides when unset."""
    kind = _PICT_TYPE.get(int(frame.pict_type))
    if kind is None:  # AV_PICTURE_TYPE_NONE
        kind = "I" if frame.key_frame else "P"
    return kind


def probe_video(path: str | os.PathLike, *, full: bool = False, stream: int | None = None) -> dict:
    """``{"num_frames", "fps", "size": (H, W), "codec"}`` of a video, checked by decoding.

    The quick probe decodes the first and the last frame, which proves the file opens, the
    codec works and the frame count holds at the tail (where truncation and lying headers
    show). ``full=True`` decodes every frame and reports the exact count. Raises
    ``VideoReadError`` naming the path for anything unreadable. ``stream``: as ``VideoReader``.
    """
    with VideoReader(path, stream=stream) as reader:
        if full:
            reader.count_decodable()
        else:
            reader.read([0])
            while True:
                last = reader.num_frames - 1
                try:
                    reader.read([last])
                    break
                except VideoReadError:
                    if reader.num_frames > last:
                        raise  # a real failure, not a frame count corrected by decoding
        return {"num_frames": reader.num_frames, "fps": reader.fps, "size": reader.size,
                "codec": reader.codec}


# -- opening --------------------------------------------------------------------------------


def open_video(path: str | os.PathLike, stream: int | None = None):
    """Open ``path`` with PyAV and pick its video stream: ``(container, stream, format name)``.

    ``stream=None`` takes the best video stream (flagged default, else the largest; cover art
    never counts), ``stream=N`` the N-th video stream (0-based). Files whose extension misleads
    FFmpeg's probe are retried as raw MPEG-4 / H.264 / HEVC / MPEG video streams. The format
    name (``container.format.name``) reopens the file the same way:
    ``av.open(path, format=name)``. Raises ``VideoReadError`` naming the path and the reason
    (missing, empty, not a video, no usable stream N); the container is closed then. The caller
    closes it otherwise.
    """
    path = str(path)
    p = Path(path)
    if not p.exists():
        raise VideoReadError(path, "file does not exist")
    if not p.is_file():
        raise VideoReadError(path, "not a regular file")
    if p.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    try:
        container = av.open(path, metadata_errors="ignore")
    except AV_ERRORS as e:
        first_error = describe_error(e)
    else:
        return container, _video_stream_or_close(path, container, stream), container.format.name
    # Content probing failed: maybe a raw elementary stream behind a misleading extension.
    for fmt in _RAW_FORMATS:
        try:
            container = av.open(path, format=fmt, metadata_errors="ignore")
        except AV_ERRORS:
            continue
        try:
            return container, _video_stream_or_close(path, container, stream), fmt
        except VideoReadError:
            continue
    raise VideoReadError(path, f"not a readable video file ({first_error}; "
                               f"also not a raw {'/'.join(_RAW_FORMATS)} stream)")


_LOGGED_CHOICES: set[str] = set()  # files whose stream choice was logged (once per process)


def _video_stream_or_close(path: str, container, wanted: int | None = None):
    """The video stream to read: the ``wanted``-th video stream, or the best real one (not cover
    art, known dimensions) as the ``ffmpeg`` tool ranks them: flagged default first, then the
    most pixels, then the first; closes on failure."""
    videos = list(container.streams.video)

    def usable(stream) -> bool:
        ctx = stream.codec_context
        return (not stream.disposition & av.stream.Disposition.attached_pic and ctx is not None
                and ctx.width > 0 and ctx.height > 0)

    def describe(stream) -> str:
        ctx = stream.codec_context
        return f"video stream {videos.index(stream)} (#{stream.index}: {ctx.name} {ctx.width}x{ctx.height})"

    if wanted is not None:
        if not 0 <= int(wanted) < len(videos) or not usable(videos[int(wanted)]):
            found = ", ".join(describe(s) for s in videos if usable(s)) or "none"
            container.close()
            raise VideoReadError(path, f"no usable video stream {wanted} (video streams are counted from 0; "
                                       f"usable here: {found})")
        return videos[int(wanted)]
    candidates = [s for s in videos if usable(s)]
    if not candidates:
        kinds = ", ".join(f"{s.type} ({s.codec_context.name if s.codec_context else '?'})"
                          for s in container.streams) or "none"
        container.close()
        raise VideoReadError(path, f"no video stream (streams found: {kinds})")
    default = av.stream.Disposition.default
    chosen = max(candidates, key=lambda s: (bool(s.disposition & default),
                                            s.codec_context.width * s.codec_context.height, -s.index))
    if len(candidates) > 1 and path not in _LOGGED_CHOICES:
        _LOGGED_CHOICES.add(path)
        others = ", ".join(describe(s) for s in candidates if s is not chosen)
        logger.info("%s: %d video streams; reading the best one, %s (others: %s); choose with stream=N "
                    "(`vidssl check-videos --stream N`)", path, len(candidates), describe(chosen), others)
    return chosen


def _check_frame_size(path: str, size: tuple[int, int]) -> None:
    height, width = size
    if height * width > MAX_FRAME_PIXELS:
        raise VideoReadError(path, f"frame size {width}x{height} ({height * width / 1e6:.0f} Mpixel) is larger than "
                                   f"the {MAX_FRAME_PIXELS / 1e6:.0f} Mpixel a reader decodes; a header this large is "
                                   f"most likely damaged, else downscale the video first (e.g. ffmpeg -vf scale=-2:1080)")


def describe_error(error: BaseException) -> str:
    """"TypeName: message" of an exception, FFmpeg's errno text where it has one."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"




def _seek_timestamps(key_pts: Sequence[int], key_dts: Sequence[int | None]) -> np.ndarray:
    """The timestamp to seek to for each keyframe, given their pts (ascending) and dts.

    A backward seek to ``t`` lands on the last keyframe whose pts (MP4, Matroska) or dts
    (AVI, raw streams; FFmpeg's generic index) is ``<= t``. A keyframe's own pts satisfies
    both while it lies before the next keyframe's dts. With B-frames and short GOPs it may
    not (pts = dts + reorder delay): a dts-seeking demuxer would then land on the next
    keyframe, past the frames wanted. There ``next dts - 1`` is used: exact under dts
    seeking, and under pts seeking it lands on an earlier keyframe (a little more decoding,
    never a miss).
    """
    targets = np.array(key_pts, dtype=np.int64)
    for i in range(len(targets) - 1):
        dts, next_dts = key_dts[i], key_dts[i + 1]
        if dts is None or next_dts is None or not dts < next_dts:
            continue  # unknown, or keyframes out of decoding order: keep the pts
        if targets[i] >= next_dts:
            targets[i] = next_dts - 1
    return targets


# -- MPEG-4 Part 2 bitstream details --------------------------------------------------------


def _unpack_bframes_filter(stream):
    from av.bitstream import BitStreamFilterContext

    return BitStreamFilterContext("mpeg4_unpack_bframes", stream)
