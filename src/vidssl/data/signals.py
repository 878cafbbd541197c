"""Motion signals for the frames a dataset item asks for: from the cache when present, else computed.

``build_signals(names, cache_dir=..., root=..., frame_size=...)`` returns ``{name: SignalSource}``
for ``VideoDataset(signals=...)``. A source is called as ``source(path, indices)`` with the
frame indices of a view (any integer array shape, e.g. [T] or [V, T]) and returns float32
arrays of shape ``indices.shape + per-frame shape``:

=============================  ===============================  =======================================
name                           per frame                        what
=============================  ===============================  =======================================
``flow``                       [H, W, 2]                        optical flow t -> t+1 (MCL 3.1), pixels
``motion-map``                 [H, W]                           MCL eq. (1) on that flow
``motion-vectors``             [ceil(H/4), ceil(W/4), 2]        decoder motion vectors (CMD / CoViAR)
``accumulated-motion-vectors`` [ceil(H/4), ceil(W/4), 2]        vectors accumulated to the GOP's I-frame
``mv-motion-map``              [ceil(H/4), ceil(W/4)]           eq. (1) on the motion vectors (cheap)
=============================  ===============================  =======================================

(H, W) is the dataset's ``frame_size`` (the video's own size when None). Units (DESIGN.md):
every motion field is in pixels of the frame size the clip is delivered at, x then y, on
whatever grid it is delivered: an object moving 2 px per delivered frame reads 2 in ``flow``
and in ``motion-vectors`` alike, although the vectors sit on a 1/4 grid. Flow is computed on
frames read at ``frame_size``; motion vectors are decoded at the video's native size (and
stored so), then resampled to the 1/4 grid of ``frame_size`` with their values rescaled to
pixels of ``frame_size`` (:func:`vidssl.video.resize_vector_map` with ``to_size``, the one
place the unit changes). ``mv-motion-map`` is eq. (1) on exactly those delivered vectors.
``ClipAugment.apply_geometry(..., vector_field=True)`` scales by output size over box size,
the same factor in frame pixels as in grid pixels, so it keeps the unit.

Cache and on-the-fly give the same numbers. The cache holds one file per video in a compact
form (:mod:`vidssl.video.cache`); on the fly, the requested frames go through the same
storage round trip (flow quantised to uint8 with the +-20 px bound, zero motion exactly
zero, or float16; motion maps and vectors float16), and flow pairs are computed
independently of each other (:func:`vidssl.video.flow.flow_pairs`), so frame t's value does
not depend on where it came from. A cache built with other settings (flow method, frame
size, dtype, stored-format version) is an error when the sources are built, not a silent
mismatch.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from vidssl.video.cache import FLOW_BOUND, SignalCache, dequantize_flow, quantize_flow

__all__ = [
    "CACHE_KINDS",
    "SIGNAL_NAMES",
    "SignalSpec",
    "SignalSource",
    "build_signals",
    "compute_video_signal",
    "decode_stored",
]

CACHE_KINDS = ("flow", "motion-vectors", "motion-map")
# Stored-format versions (spec.json): a cache written by an older version is refused, not misread.
# flow 2: uint8 codes symmetric about zero; motion-vectors 2: B-frames invalid, P-frames
# predicted across B-frames divided by their reference distance.
_VERSIONS = {"flow": 2, "motion-vectors": 2, "motion-map": 1}
# name served to the dataset -> cache kind it is derived from
SIGNAL_NAMES = {
    "flow": "flow",
    "motion-map": "motion-map",
    "motion-vectors": "motion-vectors",
    "accumulated-motion-vectors": "motion-vectors",
    "mv-motion-map": "motion-vectors",
}
_ALIASES = {"motion_vectors": "motion-vectors", "mv": "motion-vectors", "motion_map": "motion-map",
            "accumulated_motion_vectors": "accumulated-motion-vectors", "mv_motion_map": "mv-motion-map",
            "motion-vector": "motion-vectors"}


@dataclass(frozen=True)
class SignalSpec:
    """How one cache kind is computed and stored; two caches agree iff their specs are equal.

    kind: "flow", "motion-vectors" or "motion-map".
    flow_method: "dis" or "tvl1" (flow and motion-map).
    size: (H, W) the frames are resized to before flow, None = native (flow and motion-map).
    flow_dtype: "uint8" (+-20 px bound) or "float16" (flow).
    mv_downsample: grid step of stored motion vectors in pixels (motion-vectors).
    """

    kind: str
    flow_method: str = "dis"
    size: tuple[int, int] | None = None
    flow_dtype: str = "uint8"
    mv_downsample: int = 4

    def __post_init__(self):
        if self.kind not in CACHE_KINDS:
            raise ValueError(f"unknown signal kind {self.kind!r}; expected one of {CACHE_KINDS}")
        if self.flow_method not in ("dis", "tvl1"):
            raise ValueError(f"unknown flow method {self.flow_method!r}; expected 'dis' or 'tvl1'")
        if self.flow_dtype not in ("uint8", "float16"):
            raise ValueError(f"flow_dtype must be 'uint8' or 'float16', got {self.flow_dtype!r}")
        if self.size is not None:
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    def to_json(self) -> dict[str, Any]:
        """The settings that matter for this kind (what spec.json records)."""
        fields = {"flow": ("flow_method", "size", "flow_dtype"), "motion-map": ("flow_method", "size"),
                  "motion-vectors": ("mv_downsample",)}[self.kind]
        full = asdict(self)
        out = {"kind": self.kind, "version": _VERSIONS[self.kind], **{k: full[k] for k in fields}}
        if out.get("size") is not None:
            out["size"] = list(out["size"])
        if self.kind == "flow" and self.flow_dtype == "uint8":
            out["flow_bound"] = FLOW_BOUND
        return out


# -- whole videos (the cache's content) ---------------------------------------------------------


def compute_video_signal(path: str | os.PathLike, spec: SignalSpec) -> dict[str, np.ndarray]:
    """The stored form of a whole video's signal (what the cache file holds)."""
    if spec.kind == "motion-vectors":
        from vidssl.video.compressed import read_compressed

        video = read_compressed(path, iframes=False, downsample=spec.mv_downsample)
        return {"motion_vectors": video.motion_vectors.astype(np.float16),
                "mv_valid": video.mv_valid,
                "frame_types": np.frombuffer("".join(video.frame_types).encode(), dtype=np.uint8).copy(),
                "size": np.array(video.size, dtype=np.int32)}
    from vidssl.video.reader import VideoReader

    with VideoReader(path, size=spec.size) as reader:
        frames = reader.read_all()
    everything = np.arange(len(frames))
    return _encode_flow_kind(_flow_for(frames, everything, len(frames), spec), spec)


def decode_stored(stored: Mapping[str, np.ndarray], spec: SignalSpec) -> dict[str, Any]:
    """Stored arrays -> float32 values (plus, for motion vectors, validity and frame types)."""
    if spec.kind == "flow":
        data = stored["flow"]
        return {"flow": dequantize_flow(data) if data.dtype == np.uint8 else data.astype(np.float32)}
    if spec.kind == "motion-map":
        return {"motion_map": stored["motion_map"].astype(np.float32)}
    return {"motion_vectors": stored["motion_vectors"].astype(np.float32),
            "mv_valid": stored["mv_valid"].astype(bool),
            "frame_types": list(bytes(stored["frame_types"]).decode()),
            "size": tuple(int(v) for v in stored["size"])}


def _pairs_for(indices: np.ndarray, num_frames: int) -> np.ndarray:
    """First frame of the flow pair that frame t uses: t, or N-2 for the last frame (MCL 3.1)."""
    return np.minimum(indices, num_frames - 2)


def _flow_for(frame_of: Mapping[int, np.ndarray] | np.ndarray, indices: np.ndarray, num_frames: int,
              spec: SignalSpec) -> np.ndarray:
    """Float32 flow [len(indices), H, W, 2] of the given frames; ``frame_of[k]`` is frame k."""
    from vidssl.video.flow import flow_pairs

    if num_frames < 2:
        first = frame_of[0]
        return np.zeros((len(indices),) + first.shape[:2] + (2,), dtype=np.float32)
    starts = _pairs_for(indices, num_frames)
    unique, inverse = np.unique(starts, return_inverse=True)
    first = np.stack([frame_of[int(k)] for k in unique])
    second = np.stack([frame_of[int(k) + 1] for k in unique])
    return flow_pairs(first, second, spec.flow_method)[inverse.reshape(-1)]


def _encode_flow_kind(flow: np.ndarray, spec: SignalSpec) -> dict[str, np.ndarray]:
    if spec.kind == "flow":
        return {"flow": quantize_flow(flow) if spec.flow_dtype == "uint8" else flow.astype(np.float16)}
    from vidssl.video.flow import motion_map

    return {"motion_map": motion_map(flow).astype(np.float16)}


# -- per item -----------------------------------------------------------------------------------


class SignalSource:
    """One signal for the dataset: ``source(path, indices) -> float32 [*indices.shape, ...]``.

    Picklable (it holds settings and paths only), so it travels to DataLoader workers.
    """

    def __init__(self, name: str, *, cache_dir: str | os.PathLike | None = None,
                 root: str | os.PathLike | None = None, frame_size: tuple[int, int] | None = None,
                 flow_method: str = "dis", flow_dtype: str = "uint8", mv_downsample: int = 4):
        self.name = _canonical(name)
        kind = SIGNAL_NAMES[self.name]
        self.frame_size = tuple(int(v) for v in frame_size) if frame_size is not None else None
        self.spec = SignalSpec(kind, flow_method=flow_method, flow_dtype=flow_dtype,
                               size=self.frame_size if kind != "motion-vectors" else None,
                               mv_downsample=mv_downsample)
        self.cache: SignalCache | None = None
        if cache_dir is not None:
            if root is None:
                raise ValueError("a signal cache needs the dataset root (cache keys are paths relative to it)")
            cache = SignalCache(cache_dir, kind, root)
            found = cache.read_spec()
            if found is not None:
                if found != self.spec.to_json():
                    from vidssl.video.cache import spec_difference

                    raise ValueError(
                        f"{cache.spec_path}: the cached {kind} does not match this run "
                        f"({spec_difference(found, self.spec.to_json(), 'this run reads')}); re-run "
                        f"`vidssl extract {kind}` with matching settings (--frame-size HxW as data.frame_size) "
                        f"into another --out folder, or drop the cache")
                self.cache = cache
        self._damaged: set[str] = set()
        self._memo: tuple[str, Any] | None = None  # (path, whole-video data): views of one item share it

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_memo"] = None  # workers start empty
        return state

    def __repr__(self) -> str:
        return f"SignalSource({self.name!r}, spec={self.spec}, cached={self.cache is not None})"

    def __call__(self, path: str | os.PathLike, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            raise ValueError(f"{path}: {self.name} asked for no frames")
        flat = indices.reshape(-1)
        if self.spec.kind == "motion-vectors":
            out = self._vector_signal(str(path), flat)
        else:
            out = self._flow_signal(str(path), flat)
        return out.reshape(indices.shape + out.shape[1:])

    # -- flow and motion maps ---------------------------------------------------------------

    def _flow_signal(self, path: str, flat: np.ndarray) -> np.ndarray:
        values = self._remembered(path, lambda: self._cached_values(path))
        if values is not None:
            return _take(values, flat, path)
        from vidssl.video.reader import VideoReader

        with VideoReader(path, size=self.spec.size) as reader:
            n = reader.num_frames
            _check_range(flat, n, path)
            starts = _pairs_for(flat, n) if n >= 2 else np.zeros(0, np.int64)
            needed = sorted(set(starts.tolist()) | set((starts + 1).tolist())) if n >= 2 else [0]
            frame_of = dict(zip(needed, reader.read(needed)))
        flow = _flow_for(frame_of, flat, n, self.spec)
        stored = _encode_flow_kind(flow, self.spec)  # the same storage round trip as the cache
        return decode_stored(stored, self.spec)["flow" if self.spec.kind == "flow" else "motion_map"]

    # -- motion vectors ---------------------------------------------------------------------

    def _vector_signal(self, path: str, flat: np.ndarray) -> np.ndarray:
        from vidssl.video.compressed import accumulate_motion_vectors, resize_vector_map
        from vidssl.video.flow import motion_map

        video = self._remembered(path, lambda: decode_stored(self._load(path) or compute_video_signal(path, self.spec),
                                                           self.spec))
        maps = video["motion_vectors"]
        _check_range(flat, len(maps), path)
        if self.name == "accumulated-motion-vectors":
            maps, _ = accumulate_motion_vectors(maps, video["frame_types"], video["mv_valid"],
                                                self.spec.mv_downsample)
        maps = maps[flat]
        height, width = self.frame_size or video["size"]
        grid = (-(-height // self.spec.mv_downsample), -(-width // self.spec.mv_downsample))
        # The one place the unit changes: native-frame pixels -> pixels of the delivered frame size.
        maps = resize_vector_map(maps, grid, from_size=video["size"], to_size=(height, width))
        return motion_map(maps) if self.name == "mv-motion-map" else maps

    # -- cache ------------------------------------------------------------------------------

    def _remembered(self, path: str, compute):
        """Whole-video data for ``path``, computed once for the consecutive calls of one item's views."""
        if self._memo is None or self._memo[0] != path:
            self._memo = (path, compute())
        return self._memo[1]

    def _cached_values(self, path: str) -> np.ndarray | None:
        stored = self._load(path)
        if stored is None:
            return None
        return decode_stored(stored, self.spec)["flow" if self.spec.kind == "flow" else "motion_map"]

    def _load(self, path: str) -> dict[str, np.ndarray] | None:
        if self.cache is None or path in self._damaged:
            return None
        try:
            return self.cache.load(path)
        except ValueError as e:  # damaged file: compute instead, say so once
            self._damaged.add(path)
            warnings.warn(f"{e}; computing {self.name} on the fly instead", stacklevel=3)
            return None


def build_signals(names: Iterable[str], *, cache_dir: str | os.PathLike | None = None,
                  root: str | os.PathLike | None = None, frame_size: tuple[int, int] | None = None,
                  flow_method: str = "dis", flow_dtype: str = "uint8", mv_downsample: int = 4,
                  ) -> dict[str, SignalSource]:
    """``{name: SignalSource}`` for ``VideoDataset(signals=...)``; the item key is the canonical name.

    ``cache_dir`` (optional) is where ``vidssl extract`` wrote its files; ``root`` the dataset
    root they are keyed under. Each name uses the cache when the cache has its kind.
    """
    sources = {}
    for name in names:
        source = SignalSource(name, cache_dir=cache_dir, root=root, frame_size=frame_size,
                              flow_method=flow_method, flow_dtype=flow_dtype, mv_downsample=mv_downsample)
        sources[source.name] = source
    return sources


def _canonical(name: str) -> str:
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in SIGNAL_NAMES:
        raise ValueError(f"unknown signal {name!r}; expected one of {sorted(SIGNAL_NAMES)}")
    return key


def _check_range(flat: np.ndarray, num_frames: int, path: str) -> None:
    if len(flat) and (flat.min() < 0 or flat.max() >= num_frames):
        raise IndexError(f"{path}: frame indices {flat.min()}..{flat.max()} out of range for {num_frames} frames")


def _take(values: np.ndarray, flat: np.ndarray, path: str) -> np.ndarray:
    _check_range(flat, len(values), path)
    return values[flat]
