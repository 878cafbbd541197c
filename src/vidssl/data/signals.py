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
mismatch; it names the ``vidssl extract`` command that writes a matching one.

Requests (:mod:`vidssl.data.views`) reach the same sources through :class:`SignalSet`: a
method declares its :class:`Signal` declarations (stream, flow method, dtype; ``None`` = whatever the
cache holds), the set builds one source per distinct setting, and :meth:`SignalSource.fetch`
returns the stored form (uint8 flow codes or float16) with its encoding, which the dataset
ships as is; :func:`dequantize_batch` turns it into float32 on the device. A ``flow`` request
is flow between consecutive requested indices (any stride): pairs (t, t+1) come from the
cache, others are computed from frames the dataset's one decode supplies.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from vidssl.video.cache import _FLOW_ZERO, FLOW_BOUND, SignalCache, dequantize_flow, quantize_flow

__all__ = [
    "CACHE_KINDS",
    "SIGNAL_NAMES",
    "STREAM_SIGNALS",
    "Signal",
    "SignalSpec",
    "SignalSource",
    "SignalSet",
    "build_signals",
    "compute_video_signal",
    "decode_stored",
    "dequantize_array",
    "dequantize_batch",
    "extract_command",
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
    size: (H, W) the frames are resized to before flow, None = native (flow and motion-map);
        spec.json then also records the reader's ``RESIZE_METHOD``.
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
        if out.get("size") is not None:  # flow of resized frames depends on how they were resized
            from vidssl.video.reader import RESIZE_METHOD

            out["resize"] = RESIZE_METHOD
        return out


# -- whole videos (the cache's content) ---------------------------------------------------------


def compute_video_signal(path: str | os.PathLike, spec: SignalSpec, stream: int | None = None,
                         max_frames: int | None = None) -> dict[str, np.ndarray]:
    """The stored form of a whole video's signal (what the cache file holds); ``stream``: which
    of the file's video streams (None: the best one, as ``VideoReader``); ``max_frames``: motion
    vectors of the first frames only (an on-the-fly request needs no more than its last frame).

    A motion-map file also holds ``t_motion`` (float32 [N], MCL eq. 2's per-frame T-motion of
    the stored maps), the whole-video statistic samplers see as ``VideoInfo.motion``.
    """
    if spec.kind == "motion-vectors":
        from vidssl.video.compressed import read_compressed

        extra = {"stream": stream} if stream is not None else {}
        video = read_compressed(path, iframes=False, downsample=spec.mv_downsample, max_frames=max_frames, **extra)
        return {"motion_vectors": video.motion_vectors.astype(np.float16),
                "mv_valid": video.mv_valid,
                "frame_types": np.frombuffer("".join(video.frame_types).encode(), dtype=np.uint8).copy(),
                "size": np.array(video.size, dtype=np.int32)}
    from vidssl.video.reader import VideoReader

    with VideoReader(path, size=spec.size, stream=stream) as reader:
        frames = reader.read_all()
    everything = np.arange(len(frames))
    stored = _encode_flow_kind(_flow_for(frames, everything, len(frames), spec), spec)
    if spec.kind == "motion-map":
        stored["t_motion"] = stored["motion_map"].astype(np.float32).mean(axis=(1, 2))
    return stored


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

# request stream -> SignalSource name
STREAM_SIGNALS = {"flow": "flow", "motion_map": "motion-map", "motion_vectors": "motion-vectors"}
# encoding of a shipped signal -> how the device turns it into float32
ENCODINGS = ("flow-uint8", "float16")


@dataclass(frozen=True)
class Signal:
    """A signal a method declares it reads (``Method.signals()``): ``stream`` ("flow",
    "motion_map" or "motion_vectors"), flow ``method`` ("dis" | "tvl1") and flow storage
    ``dtype`` ("uint8" | "float16"). ``None`` accepts whatever the signal cache holds (DIS and
    uint8 when there is no cache). Declared signals are matched against the cache when the
    data is built, so a mismatch fails before training, naming the ``vidssl extract`` command."""

    stream: str
    method: str | None = None
    dtype: str | None = None

    def __post_init__(self):
        if self.stream not in STREAM_SIGNALS:
            raise ValueError(f"unknown signal stream {self.stream!r}; expected one of {sorted(STREAM_SIGNALS)}")
        if self.method not in (None, "dis", "tvl1"):
            raise ValueError(f"signal {self.stream}: method must be 'dis' or 'tvl1', got {self.method!r}")
        if self.dtype not in (None, "uint8", "float16"):
            raise ValueError(f"signal {self.stream}: dtype must be 'uint8' or 'float16', got {self.dtype!r}")


class SignalSource:
    """One signal for the dataset.

    ``source(path, indices) -> float32 [*indices.shape, ...]`` gives values (per frame t: flow
    t -> t+1, its motion map, the vectors of frame t); :meth:`fetch` gives what a request of
    :mod:`vidssl.data.views` receives, in its storage dtype. ``flow_method`` / ``flow_dtype``
    ``None`` take the cache's settings (the defaults "dis" / "uint8" without a cache).
    Picklable (it holds settings and paths only), so it travels to DataLoader workers.
    """

    def __init__(self, name: str, *, cache_dir: str | os.PathLike | None = None,
                 root: str | os.PathLike | None = None, frame_size: tuple[int, int] | None = None,
                 flow_method: str | None = "dis", flow_dtype: str | None = "uint8", mv_downsample: int = 4,
                 video_stream: int | None = None):
        self.name = _canonical(name)
        kind = SIGNAL_NAMES[self.name]
        self.frame_size = tuple(int(v) for v in frame_size) if frame_size is not None else None
        self.video_stream = video_stream
        self.cache: SignalCache | None = None
        found = None
        if cache_dir is not None:
            if root is None:
                raise ValueError("a signal cache needs the dataset root (cache keys are paths relative to it)")
            cache = SignalCache(cache_dir, kind, root)
            found = cache.read_spec()
        # Settings left open follow the cache (a TV-L1 or float16 cache is used as it is).
        if flow_method is None:
            flow_method = found.get("flow_method", "dis") if found else "dis"
        if flow_dtype is None:
            flow_dtype = found.get("flow_dtype", "uint8") if found and kind == "flow" else "uint8"
        self.spec = SignalSpec(kind, flow_method=flow_method, flow_dtype=flow_dtype,
                               size=self.frame_size if kind != "motion-vectors" else None,
                               mv_downsample=mv_downsample)
        if found is not None:
            if found != self.spec.to_json():
                from vidssl.video.cache import spec_difference

                raise ValueError(
                    f"{cache.spec_path}: the cached {kind} does not match this run "
                    f"({spec_difference(found, self.spec.to_json(), 'this run reads')}); re-run "
                    f"`vidssl extract {kind}` with this run's settings into another --out folder: "
                    f"`{extract_command(self.spec, root)}` (add --dataset / --split / --csv as in data.*), "
                    f"then set data.cache_dir to it, or drop data.cache_dir")
            self.cache = cache
        self._damaged: set[str] = set()
        self._memo: tuple[str, Any] | None = None  # (path, whole-video stored arrays): one item's calls share it
        self._stats: dict[str, dict[str, np.ndarray]] = {}  # path -> whole-video statistics (small)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_memo"], state["_stats"] = None, {}  # workers start empty
        return state

    def __repr__(self) -> str:
        return f"SignalSource({self.name!r}, spec={self.spec}, cached={self.cache is not None})"

    def matches(self, method: str | None, dtype: str | None) -> bool:
        """Whether a request with these options (None: any) is served by this source."""
        if method is not None and method != self.spec.flow_method:
            return False
        return dtype is None or self.spec.kind != "flow" or dtype == self.spec.flow_dtype

    # -- float32 values per frame (the original interface) ------------------------------------

    def __call__(self, path: str | os.PathLike, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            raise ValueError(f"{path}: {self.name} asked for no frames")
        flat = indices.reshape(-1)
        path = str(path)
        if self.spec.kind == "motion-vectors":
            out = self._vectors(path, flat, accumulated=self.name == "accumulated-motion-vectors")
            out = out.astype(np.float32)
            if self.name == "mv-motion-map":
                from vidssl.video.flow import motion_map

                out = motion_map(out)
        elif self._stored(path) is not None:
            out = dequantize_array(self._per_frame_stored(path, flat, None), self._encoding())
        else:  # on the fly: one reader gives the frame count and the frames
            from vidssl.video.reader import VideoReader

            with VideoReader(path, size=self.spec.size, stream=self.video_stream) as reader:
                stored = self._per_frame_stored(path, flat, reader.read, reader.num_frames)
            out = dequantize_array(stored, self._encoding())
        return out.reshape(indices.shape + out.shape[1:])

    # -- what a request receives ---------------------------------------------------------------

    def frames_needed(self, path: str, indices: np.ndarray, num_frames: int, stream: str) -> np.ndarray:
        """Frame numbers (at the dataset's frame size) to decode for :meth:`fetch`: none when cached."""
        if self.spec.kind == "motion-vectors":
            return np.zeros(0, np.int64)
        stored = self._stored(path)
        if stream == "flow":
            first, second = _between_pairs(indices)
            if stored is not None:  # the cache holds pairs (t, t+1); any other pair is computed
                live = second != first + 1
                first, second = first[live], second[live]
            return np.concatenate([first, second])
        if stored is not None:
            return np.zeros(0, np.int64)
        if num_frames < 2:
            return np.zeros(1, np.int64)
        starts = _pairs_for(indices.reshape(-1), num_frames)
        return np.concatenate([starts, starts + 1])

    def fetch(self, path: str, indices: np.ndarray, *, stream: str, read=None, num_frames: int | None = None,
              accumulated: bool = False) -> tuple[np.ndarray, str]:
        """``(array in storage dtype, encoding)`` for one request; ``read(frame numbers) -> uint8
        [k, H, W, 3]`` supplies decoded frames for on-the-fly flow (default: a reader of its own).

        ``stream="flow"``: flow between consecutive requested indices, [..., T-1, H, W, 2];
        ``"motion_map"``: [..., T, H, W]; ``"motion_vectors"``: [..., T, h, w, 2] (``accumulated``:
        CoViAR's, from the GOP's I-frame).
        """
        indices = np.asarray(indices, dtype=np.int64)
        read = read or self._reader_read(path)
        if self.spec.kind == "motion-vectors":
            out = self._vectors(path, indices.reshape(-1), accumulated=accumulated)
            return out.astype(np.float16).reshape(indices.shape + out.shape[1:]), "float16"
        if stream == "flow":
            first, second = _between_pairs(indices)
            out = self._pair_stored(path, first, second, read, num_frames)
            return out.reshape(indices.shape[:-1] + (indices.shape[-1] - 1,) + out.shape[1:]), self._encoding()
        out = self._per_frame_stored(path, indices.reshape(-1), read, num_frames)
        return out.reshape(indices.shape + out.shape[1:]), self._encoding()

    def stats(self, path: str) -> dict[str, np.ndarray]:
        """Whole-video statistics of a motion-map source: ``"t_motion"`` float32 [N], MCL eq. (2)'s
        per-frame T-motion of the stored maps; of a motion-vector source: ``"mv_t_motion"``, the
        same of eq. (1) on the delivered vectors (MCL's temporal sampling on the cheap motion
        source); ``{}`` for flow.

        From the cache when it holds the video; otherwise computed from the whole video once
        per process (a decode and N flow pairs) and remembered, since it does not change
        between epochs (a few bytes per video).
        """
        known = self._stats.get(path)
        if known is not None:
            return known
        if self.spec.kind == "motion-vectors":  # "mv_t_motion": the same T-motion of eq. (1) on the vectors
            from vidssl.video.flow import motion_map

            stored = self._stored(path)
            if stored is None:  # decoded once; the item's own motion-vector request reuses it
                stored = compute_video_signal(path, self.spec, stream=self.video_stream)
                self._memo_set(path, {**stored, "_decoded_frames": len(stored["motion_vectors"])})
            vectors = self._vectors(path, np.arange(len(stored["motion_vectors"])), accumulated=False)
            self._stats[path] = {"mv_t_motion": motion_map(vectors).mean(axis=(1, 2)).astype(np.float32)}
            return self._stats[path]
        if self.spec.kind != "motion-map":
            return {}
        stored = self._stored(path)
        if stored is None:  # computed once; the item's own motion-map request reuses it
            stored = self._memo_set(path, compute_video_signal(path, self.spec, stream=self.video_stream))
        maps = stored["motion_map"]
        t_motion = stored["t_motion"] if "t_motion" in stored else maps.astype(np.float32).mean(axis=(1, 2))
        self._stats[path] = {"t_motion": np.asarray(t_motion, dtype=np.float32)}
        return self._stats[path]

    # -- flow and motion maps ---------------------------------------------------------------

    def _encoding(self) -> str:
        return "flow-uint8" if self.spec.kind == "flow" and self.spec.flow_dtype == "uint8" else "float16"

    def _array_key(self) -> str:
        return "flow" if self.spec.kind == "flow" else "motion_map"

    def _per_frame_stored(self, path: str, flat: np.ndarray, read, num_frames: int | None = None) -> np.ndarray:
        """Stored values of frames ``flat`` (flow t -> t+1, the last frame N-2 -> N-1; or their maps)."""
        stored = self._stored(path)
        if stored is not None:
            return _take(stored[self._array_key()], flat, path)
        n = num_frames or self._num_frames(path)
        _check_range(flat, n, path)
        if n < 2:
            shape = tuple(read([0]).shape[1:3])
            zeros = np.zeros((len(flat),) + shape + ((2,) if self.spec.kind == "flow" else ()), np.float32)
            return _encode_flow_kind(zeros, self.spec)[self._array_key()]
        starts = _pairs_for(flat, n)
        return self._compute(starts, starts + 1, read)

    def _pair_stored(self, path: str, first: np.ndarray, second: np.ndarray, read, num_frames) -> np.ndarray:
        """Stored flow between frames first[k] -> second[k]: the cache's where second = first + 1."""
        stored = self._stored(path)
        n = len(stored["flow"]) if stored is not None else (num_frames or self._num_frames(path))
        _check_range(np.concatenate([first, second]), n, path)
        if stored is None:
            return self._compute(first, second, read)
        out = stored["flow"][np.minimum(first, n - 1)]  # fancy indexing: a copy
        live = second != first + 1
        if live.any():  # pairs the cache does not hold (a stride, a loop): computed like the cache's
            out[live] = self._compute(first[live], second[live], read)
        return out

    def _compute(self, first: np.ndarray, second: np.ndarray, read) -> np.ndarray:
        """Stored form of the flow (or motion map) of frame pairs, computed pair by pair."""
        from vidssl.video.flow import flow_pairs

        pairs = np.stack([first, second], axis=1)
        unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
        frames = np.unique(unique)
        decoded = read(frames)
        pos = {int(k): i for i, k in enumerate(frames)}
        a = decoded[[pos[int(k)] for k in unique[:, 0]]]
        b = decoded[[pos[int(k)] for k in unique[:, 1]]]
        flow = flow_pairs(a, b, self.spec.flow_method)
        stored = _encode_flow_kind(flow, self.spec)[self._array_key()]  # the cache's storage round trip
        return stored[inverse.reshape(-1)]

    def _reader_read(self, path: str):
        def read(frames):
            from vidssl.video.reader import VideoReader

            with VideoReader(path, size=self.spec.size, stream=self.video_stream) as reader:
                return reader.read(frames)
        return read

    def _num_frames(self, path: str) -> int:
        from vidssl.video.reader import VideoReader

        with VideoReader(path, size=self.spec.size, stream=self.video_stream) as reader:
            return reader.num_frames

    # -- motion vectors ---------------------------------------------------------------------

    def _vectors(self, path: str, flat: np.ndarray, accumulated: bool) -> np.ndarray:
        """float32 vectors of frames ``flat`` on the 1/downsample grid of the delivered frame size."""
        from vidssl.video.compressed import accumulate_motion_vectors, resize_vector_map

        stored = self._stored(path)
        need = int(flat.max()) + 1
        if stored is None or stored.get("_decoded_frames", need) < need:
            # On the fly: decode up to the last frame asked for; the item's later requests reuse it.
            stored = compute_video_signal(path, self.spec, stream=self.video_stream, max_frames=need)
            self._memo_set(path, {**stored, "_decoded_frames": need})
        video = decode_stored(stored, self.spec)
        maps = video["motion_vectors"]
        _check_range(flat, len(maps), path)
        if accumulated:
            maps, _ = accumulate_motion_vectors(maps, video["frame_types"], video["mv_valid"],
                                                self.spec.mv_downsample)
        maps = maps[flat]
        height, width = self.frame_size or video["size"]
        grid = (-(-height // self.spec.mv_downsample), -(-width // self.spec.mv_downsample))
        # The one place the unit changes: native-frame pixels -> pixels of the delivered frame size.
        return resize_vector_map(maps, grid, from_size=video["size"], to_size=(height, width))

    # -- cache ------------------------------------------------------------------------------

    def _stored(self, path: str) -> dict[str, np.ndarray] | None:
        """The video's cached arrays (remembered for the consecutive calls of one item), or None."""
        if self._memo is not None and self._memo[0] == path:
            return self._memo[1]
        return self._memo_set(path, self._load(path))

    def _memo_set(self, path: str, stored):
        self._memo = (path, stored)
        return stored

    def _load(self, path: str) -> dict[str, np.ndarray] | None:
        if self.cache is None or path in self._damaged:
            return None
        try:
            return self.cache.load(path)
        except ValueError as e:  # damaged file: compute instead, say so once
            self._damaged.add(path)
            warnings.warn(f"{e}; computing {self.name} on the fly instead", stacklevel=3)
            return None


class SignalSet:
    """The signal sources of one dataset: the ones declared up front (``signals``, checked
    against the cache now) and any a request names later (created on first use)."""

    def __init__(self, signals: Iterable[Signal] = (), *, cache_dir: str | os.PathLike | None = None,
                 root: str | os.PathLike | None = None, frame_size: tuple[int, int] | None = None,
                 video_stream: int | None = None, mv_downsample: int = 4):
        self.settings = dict(cache_dir=cache_dir, root=root, frame_size=frame_size, video_stream=video_stream,
                             mv_downsample=mv_downsample)
        self.sources: list[SignalSource] = []
        for signal in signals:
            self.resolve(signal.stream, signal.method, signal.dtype)

    def __repr__(self) -> str:
        return f"SignalSet({self.sources})"

    def resolve(self, stream: str, method: str | None = None, dtype: str | None = None) -> SignalSource:
        name = STREAM_SIGNALS[stream]
        kind = SIGNAL_NAMES[name]
        for source in self.sources:
            if source.spec.kind == kind and source.matches(method, dtype):
                return source
        source = SignalSource(name, flow_method=method, flow_dtype=dtype, **self.settings)
        self.sources.append(source)
        return source

    def for_request(self, request) -> SignalSource:
        opts = request.options
        return self.resolve(request.stream, opts.get("method"), opts.get("dtype"))

    def motion_stats(self, path: str) -> dict[str, np.ndarray]:
        """Whole-video statistics of ``path`` from the motion-map sources (see :meth:`SignalSource.stats`)."""
        out: dict[str, np.ndarray] = {}
        for source in self.sources:
            out.update(source.stats(path))
        return out


def build_signals(names: Iterable[str], *, cache_dir: str | os.PathLike | None = None,
                  root: str | os.PathLike | None = None, frame_size: tuple[int, int] | None = None,
                  flow_method: str | None = "dis", flow_dtype: str | None = "uint8", mv_downsample: int = 4,
                  video_stream: int | None = None) -> dict[str, SignalSource]:
    """``{name: SignalSource}`` for ``VideoDataset(signals=...)`` (per-clip float32 values, the
    ``data.signals`` interface); the item key is the canonical name.

    ``cache_dir`` (optional) is where ``vidssl extract`` wrote its files; ``root`` the dataset
    root they are keyed under. Each name uses the cache when the cache has its kind.
    """
    sources = {}
    for name in names:
        source = SignalSource(name, cache_dir=cache_dir, root=root, frame_size=frame_size,
                              flow_method=flow_method, flow_dtype=flow_dtype, mv_downsample=mv_downsample,
                              video_stream=video_stream)
        sources[source.name] = source
    return sources


def extract_command(spec: SignalSpec, root=None) -> str:
    """The ``vidssl extract`` command line that writes a cache matching ``spec``."""
    parts = ["vidssl", "extract", spec.kind, "--root", str(root) if root is not None else "ROOT", "--out", "NEW_DIR"]
    if spec.kind != "motion-vectors":
        if spec.size is not None:
            parts += ["--frame-size", f"{spec.size[0]}x{spec.size[1]}"]
        parts += ["--method", spec.flow_method]
    if spec.kind == "flow":
        parts += ["--flow-dtype", spec.flow_dtype]
    return " ".join(parts)


# -- on the device --------------------------------------------------------------------------------


def dequantize_array(array: np.ndarray, encoding: str) -> np.ndarray:
    """NumPy twin of :func:`dequantize_batch` for one array: float32 values."""
    if encoding == "flow-uint8":
        return dequantize_flow(array)
    return np.asarray(array, dtype=np.float32)


def dequantize_batch(batch: dict) -> dict:
    """Signals as shipped (uint8 flow codes, float16) -> float32, in place, where the batch lies
    (the device, after transfer). ``batch["encodings"]`` ({name: encoding}, set by the dataset)
    says which entries; it is removed, so a second call changes nothing."""
    import torch

    encodings = batch.pop("encodings", None) or {}
    zero = float(_FLOW_ZERO)
    for name, encoding in encodings.items():
        value = batch[name]
        if encoding == "flow-uint8":
            batch[name] = (value.to(torch.float32) - zero) * (FLOW_BOUND / _FLOW_ZERO)
        elif encoding == "float16":
            batch[name] = value.to(torch.float32)
        else:
            raise ValueError(f"batch[{name!r}]: unknown signal encoding {encoding!r}; expected one of {ENCODINGS}")
    return batch


def _canonical(name: str) -> str:
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in SIGNAL_NAMES:
        raise ValueError(f"unknown signal {name!r}; expected one of {sorted(SIGNAL_NAMES)}")
    return key


def _between_pairs(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) frame of each flow pair between consecutive indices along the last axis."""
    indices = np.asarray(indices, dtype=np.int64)
    return indices[..., :-1].reshape(-1), indices[..., 1:].reshape(-1)


def _check_range(flat: np.ndarray, num_frames: int, path: str) -> None:
    if len(flat) and (flat.min() < 0 or flat.max() >= num_frames):
        raise IndexError(f"{path}: frame indices {flat.min()}..{flat.max()} out of range for {num_frames} frames")


def _take(values: np.ndarray, flat: np.ndarray, path: str) -> np.ndarray:
    _check_range(flat, len(values), path)
    return values[flat]
