"""On-disk cache of per-video motion signals (flow, motion vectors, motion maps).

Layout: ``<cache_dir>/<kind>/<video path relative to the dataset root>.npz``, so a cache
built on one machine works on another that mounts the dataset elsewhere. Next to the files,
``<cache_dir>/<kind>/spec.json`` records how they were computed (flow method, frame size,
storage dtype, ...): a reader asking for other settings gets an error instead of silently
different numbers. ``failures.json`` lists the videos an extraction could not process.

Every file is written to a temporary name in its folder and renamed into place, so a killed
job never leaves a half-written file that a resumed job would take for a finished one.

Storage (the issue's "compact"): optical flow as uint8 with a +-20 px bound, the TV-L1
convention of the MCL authors, on codes symmetric about zero
(``q = 127 + round(clip(v, -20, 20) * 127 / 20)``, so zero motion stays exactly zero), or
float16; motion maps and motion vectors as float16 (exact for MPEG-4's half-pel and H.264's
quarter-pel vectors below 512 px).
"""
from __future__ import annotations

from vidssl.io import write_bytes_atomic

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = [
    "FLOW_BOUND",
    "quantize_flow",
    "dequantize_flow",
    "SignalCache",
    "atomic_write_bytes",
    "atomic_write_json",
    "spec_difference",
]

FLOW_BOUND = 20.0  # px; TV-L1 flow clipped at +-20 px (MCL authors' code, CoViAR's vectors)


_FLOW_ZERO = 127  # the code of zero motion: codes 0..254, symmetric about it (255 is unused)


def quantize_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """uint8 ``127 + round(clip(v, -bound, bound) * 127 / bound)``: zero motion is code 127 exactly.

    (The 255-level ``(v + bound) * 255 / (2 * bound)`` has no code for 0: zero came back as
    +0.078 px, a drift on every static pixel.)
    """
    flow = np.clip(np.asarray(flow, dtype=np.float32), -bound, bound)
    return (np.rint(flow * np.float32(_FLOW_ZERO / bound)) + _FLOW_ZERO).astype(np.uint8)


def dequantize_flow(q: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Inverse of :func:`quantize_flow` (float32; a step is bound / 127 = 0.157 px at 20 px, 0 -> 0)."""
    return (np.asarray(q, dtype=np.float32) - np.float32(_FLOW_ZERO)) * np.float32(bound / _FLOW_ZERO)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    write_bytes_atomic(path, data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def spec_difference(cached: Mapping[str, Any], wanted: Mapping[str, Any], wanted_by: str = "asked for") -> str:
    """The settings on which a cache's ``spec.json`` and a request differ, one phrase each.

    Frame sizes are written height x width, the order of ``data.frame_size`` and of
    ``vidssl extract --frame-size``, e.g. "frame size: the cache holds 128x171, this run
    reads 171x128 (height x width)".
    """
    def size(value) -> str:
        return "the native size" if value is None else "x".join(str(int(v)) for v in value)

    parts = []
    for key in sorted(set(cached) | set(wanted)):
        have, want = cached.get(key), wanted.get(key)
        if have == want:
            continue
        if key == "size":
            parts.append(f"frame size: the cache holds {size(have)}, {wanted_by} {size(want)} (height x width)")
        else:
            parts.append(f"{key}: the cache holds {have!r}, {wanted_by} {want!r}")
    return "; ".join(parts) or "no difference"


class SignalCache:
    """The files of one signal kind: ``SignalCache(cache_dir, kind, root)``.

    ``root`` is the dataset root the video paths are relative to; a path outside it is an
    error (its cache key would not be portable).
    """

    def __init__(self, cache_dir: str | os.PathLike, kind: str, root: str | os.PathLike):
        self.kind = kind
        self.dir = Path(cache_dir) / kind
        self.root = Path(root).resolve()

    # -- keys ---------------------------------------------------------------------------------

    def relative(self, video_path: str | os.PathLike) -> str:
        path = Path(video_path)
        path = (self.root / path) if not path.is_absolute() else path
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            raise ValueError(f"{video_path}: not under the dataset root {self.root}; "
                             f"the cache is keyed by paths relative to it") from None

    def path_for(self, video_path: str | os.PathLike) -> Path:
        return self.dir / (self.relative(video_path) + ".npz")

    # -- files --------------------------------------------------------------------------------

    def has(self, video_path: str | os.PathLike) -> bool:
        return self.path_for(video_path).is_file()

    def save(self, video_path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
        """Store ``arrays`` for a video (compressed npz, written atomically)."""
        target = self.path_for(video_path)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
        atomic_write_bytes(target, buffer.getvalue())
        return target

    def load(self, video_path: str | os.PathLike) -> dict[str, np.ndarray] | None:
        """The stored arrays, or None when the video has no file. A damaged file raises
        ``ValueError`` naming it (delete it and re-run the extraction to recompute it)."""
        target = self.path_for(video_path)
        try:
            with np.load(target, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise ValueError(f"{target}: damaged cache file ({type(e).__name__}: {e}); delete it and "
                             f"re-run the extraction") from e

    # -- spec and failures ----------------------------------------------------------------------

    @property
    def spec_path(self) -> Path:
        return self.dir / "spec.json"

    def failures_path(self, rank: int | None = None) -> Path:
        return self.dir / ("failures.json" if rank is None else f"failures.rank{rank}.json")

    def read_spec(self) -> dict | None:
        try:
            return json.loads(self.spec_path.read_text())
        except FileNotFoundError:
            return None

    def write_spec(self, spec: Mapping[str, Any]) -> None:
        atomic_write_json(self.spec_path, dict(spec))

    def read_failures(self, rank: int | None = None) -> dict[str, str]:
        try:
            return dict(json.loads(self.failures_path(rank).read_text()))
        except FileNotFoundError:
            return {}

    def all_failures(self) -> dict[str, str]:
        """Failures recorded by every process (``failures.json`` and ``failures.rank<R>.json``)."""
        merged: dict[str, str] = {}
        for path in sorted(self.dir.glob("failures*.json")):
            merged.update(json.loads(path.read_text()))
        return merged

    def record_failures(self, failures: Mapping[str, str], succeeded=(), rank: int | None = None,
                        ) -> dict[str, str]:
        """Merge ``failures`` (relative path -> reason) into the failure list; drop ``succeeded``.

        A distributed extraction passes its ``rank`` so each process keeps its own file
        (``failures.rank<R>.json``) and no two processes rewrite the same one.
        """
        merged = self.read_failures(rank)
        for key in succeeded:
            merged.pop(key, None)
        merged.update(failures)
        if merged or self.failures_path(rank).exists():
            atomic_write_json(self.failures_path(rank), merged)
        return merged
