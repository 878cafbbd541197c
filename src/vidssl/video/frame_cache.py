"""Decoded frames on disk: decode a video once, then serve any clip of it by slicing.

Training draws new clips from every video each epoch. Decoding one 8-frame clip of a 64 px
MPEG-4 video costs about 3 ms here (seek to the keyframe, decode forward, convert), which on
a 2-core machine is CPU taken from the training step itself: loader workers and the step
share the same cores. A ``FrameCache`` keeps each video's frames, already resized to the
training frame size, as one uint8 ``.npy`` file [T, H, W, 3]; a read memory-maps it and copies
only the frames asked for (about 0.3 ms). This is what the papers' own code does with
extracted JPEG frames, without JPEG's loss and without a separate extraction step: a miss
decodes the whole video with ``VideoReader`` and stores it, so the first epoch fills the cache.

Files: ``<cache_dir>/<H>x<W>/<k[:2]>/<k>.npy`` (``native`` instead of ``<H>x<W>`` when frames
keep their size), where ``k`` hashes the video's resolved path, size and modification time (and,
for resized frames, the reader's ``RESIZE_METHOD``): a replaced or re-encoded video, or a changed
resize method, gets a new key instead of a stale file. Files are written to a
temporary name and renamed into place, so concurrent workers and killed jobs never leave a
half-written file; a damaged one is reported, deleted and decoded again. When the disk is
full (or read-only) the frames are still served, decoded, with one warning.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from vidssl.io import atomic_file
from vidssl.video.reader import RESIZE_METHOD, VideoReader, VideoReadError

__all__ = ["FrameCache", "FrameCacheWarning"]


class FrameCacheWarning(UserWarning):
    """The frame cache could not be used for a file (damaged, unwritable); frames were decoded instead."""


class FrameCache:
    """Decoded frames of videos at ``frame_size`` (H, W), or native size with ``None``, under ``cache_dir``;
    ``stream`` names the video stream as ``VideoReader`` does (None: the best one)."""

    def __init__(self, cache_dir: str | os.PathLike, frame_size: tuple[int, int] | None = None,
                 stream: int | None = None):
        if frame_size is not None:
            frame_size = (int(frame_size[0]), int(frame_size[1]))
            if min(frame_size) <= 0:
                raise ValueError(f"frame_size must be positive (H, W), got {frame_size}")
        self.frame_size = frame_size
        self.stream = None if stream is None else int(stream)
        self.dir = Path(cache_dir) / ("native" if frame_size is None else f"{frame_size[0]}x{frame_size[1]}")
        self._write_failed = False  # warn about an unwritable cache once per process
        # Per-process memos, both small (one entry per video). Resolving a path walks every
        # component and np.load parses the .npy header; with both remembered a cached clip costs
        # a stat and an mmap (0.16 ms instead of 1.1 ms, which was a tenth of a demo training step).
        self._resolved: dict[str, Path] = {}
        self._layouts: dict[Path, tuple[tuple[int, ...], int]] = {}  # file -> (shape, data offset)

    def __repr__(self) -> str:
        return f"FrameCache({str(self.dir.parent)!r}, frame_size={self.frame_size})"

    def path_for(self, video_path: str | os.PathLike) -> Path:
        """Where the frames of ``video_path`` live; raises ``VideoReadError`` for a missing video."""
        path = self._resolved.get(str(video_path))
        if path is None:
            path = self._resolved[str(video_path)] = Path(video_path).resolve()
        try:
            st = path.stat()
        except OSError as err:
            raise VideoReadError(video_path, f"cannot stat the file ({err.strerror or err})") from None
        method = "" if self.frame_size is None else f"\0{RESIZE_METHOD}"  # native keys unchanged
        stream = "" if self.stream is None else f"\0stream{self.stream}"  # the default stream's keys unchanged
        key = hashlib.sha1(f"{path}\0{st.st_size}\0{st.st_mtime_ns}{method}{stream}".encode()).hexdigest()
        return self.dir / key[:2] / f"{key}.npy"

    def frames(self, video_path: str | os.PathLike) -> np.ndarray:
        """All decodable frames of the video, uint8 [T, H, W, 3] (read-only, memory-mapped when cached).

        Raises ``VideoReadError`` (with the video's path) when the video cannot be decoded.
        """
        target = self.path_for(video_path)
        cached = self._load(target)
        if cached is not None:
            return cached
        with VideoReader(video_path, size=self.frame_size, stream=self.stream) as reader:
            frames = reader.read_all()
        if frames.shape[0] == 0:
            raise VideoReadError(video_path, "no decodable frames")
        self._store(target, frames)
        return frames

    def _load(self, target: Path) -> np.ndarray | None:
        layout = self._layouts.get(target)
        if layout is not None:
            try:
                return np.memmap(target, np.uint8, "r", offset=layout[1], shape=layout[0])
            except (OSError, ValueError):  # gone, or replaced by a shorter file: read it afresh below
                del self._layouts[target]
        try:
            frames = np.load(target, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as err:
            self._discard(target, f"unreadable ({type(err).__name__}: {err})")
            return None
        expected = (self.frame_size if self.frame_size is not None else frames.shape[1:3])
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] == 0 \
                or tuple(frames.shape[1:3]) != tuple(expected) or frames.shape[3] != 3:
            self._discard(target, f"holds {frames.dtype} {tuple(frames.shape)}, not uint8 [T, *{expected}, 3]")
            return None
        if isinstance(frames, np.memmap) and not np.isfortran(frames):
            self._layouts[target] = (frames.shape, frames.offset)
        return frames

    def _store(self, target: Path, frames: np.ndarray) -> None:
        try:
            _write_npy_atomic(target, frames)
        except OSError as err:
            if not self._write_failed:
                self._write_failed = True
                warnings.warn(f"frame cache {self.dir}: cannot write {target.name} ({err}); serving decoded "
                              f"frames without caching them", FrameCacheWarning, stacklevel=3)

    def _discard(self, target: Path, why: str) -> None:
        warnings.warn(f"frame cache file {target} {why}; deleting it and decoding the video again",
                      FrameCacheWarning, stacklevel=3)
        try:
            target.unlink()
        except OSError:
            pass


def _write_npy_atomic(target: Path, frames: np.ndarray) -> None:
    """Write through a temporary file and a rename, without ``fsync``: the first epoch writes one
    file per video, and a file lost to a crash is only a cache miss (``_load`` checks every file
    it opens and re-decodes a damaged one), so durability is not worth a disk flush per video."""
    with atomic_file(target, "wb", fsync=False) as f:
        np.save(f, frames, allow_pickle=False)
