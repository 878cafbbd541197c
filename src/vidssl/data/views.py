"""Requests: what a method asks the loader for, per video, before any pixel is decoded.

A method's *sampler* is a callable ``(info, rng) -> Requests``. ``info`` (:class:`VideoInfo`)
is what is known about the video without decoding it: path, frame count, fps, delivered frame
size, the picture type of every frame (from the packet index) and, when a signal cache holds
them, whole-video motion statistics (``info.motion["t_motion"]``, MCL eq. 2's per-frame
T-motion). The sampler returns named :class:`Request` objects, each a stream and the frame indices
it wants, plus scalar labels:

=================  =====================================================  ========================
stream             ``item[name]`` for indices [T] ([V, T] adds a V dim)   options
=================  =====================================================  ========================
``rgb``            uint8 [T, H, W, 3]                                     --
``iframe``         uint8 [T, H, W, 3], keyframe-only decode               --
``flow``           [T-1, H, W, 2] between consecutive requested indices   ``method``, ``dtype``
``motion_map``     float16 [T, H, W], MCL eq. (1) on the flow t -> t+1    ``method``
``motion_vectors`` float16 [T, ceil(H/4), ceil(W/4), 2]                   ``accumulated``
=================  =====================================================  ========================

``flow`` ships as stored: uint8 codes (``dtype="uint8"``) or float16; ``method`` is "dis" or
"tvl1". Left ``None``, both are whatever the signal cache holds (DIS and uint8 without one).
Every signal is dequantised to float32 on the device by :func:`vidssl.data.signals.dequantize_batch`.
Motion fields are in pixels of the delivered frame size (H, W), x then y (DESIGN.md).

``info.motion`` is filled by the method's declared motion-map signal
(``Method.signals()`` holding ``Signal("motion_map")``): from the signal cache when it holds the
video, else computed once per video and worker process and remembered. How the three motion
papers write their requests (``tests/data/test_requests.py`` loads each as a batch):

- DSM: ``{"clips": Request("rgb", [3, T] one clip three times), "flow": Request("flow", clip)}``
  (three crops of one clip, cropped on the device; flow between the clip's own frames at its
  stride 4, [T-1, H, W, 2]).
- MCL: a clip whose mean ``info.motion["t_motion"]`` is above the video's median, and
  ``Request("motion_map", clip, method="tvl1")`` so the method picks the crop box covering 80 %
  of the clip's above-90th-percentile S-motion on the device (``motion_map.mean(T)``).
- CMD: ``"clips"`` rgb, ``Request("iframe", [k])`` for a ``k`` in ``info.keyframes`` within
  +-5 frames of the clip, ``Request("motion_vectors", last + 2 + arange(8))`` and
  ``Request("motion_vectors", [3, 8])`` hard negatives from other times of the same video.

The loader fetches exactly what is named: one decode per video per item serves every RGB
request (and the frames on-the-fly flow needs), signals come from the cache or are computed,
and a stream no request names is never touched. ``Requests.labels`` become ``item[key]``
tensors (e.g. ``{"pace": [2, 0]}``). Samplers shared by several methods live here; a method
with its own needs writes its sampler next to its forward.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np

from vidssl.data.sampling import random_clip_indices, tiled_clip_indices, uniform_clip_indices

__all__ = ["STREAMS", "VideoInfo", "Request", "Requests", "Sampler", "RandomClips", "SingleClip",
           "StaticClips", "UniformClips", "TiledClips", "as_info"]

STREAMS = ("rgb", "iframe", "flow", "motion_map", "motion_vectors")
_OPTIONS = {"rgb": (), "iframe": (), "flow": ("method", "dtype"), "motion_map": ("method",),
            "motion_vectors": ("accumulated",)}


class VideoInfo:
    """What is known about one video before decoding: ``path``, ``num_frames``, ``fps``, ``size``
    (H, W of the delivered frames), ``frame_types`` (str, one of 'I'/'P'/'B'/'?' per frame, read
    from the packet index), ``motion`` (dict of whole-video per-frame statistics from the signal
    cache, e.g. ``"t_motion"`` float32 [N]; empty without a cache).

    ``fps``, ``frame_types`` and ``motion`` are computed on first access only, so a sampler that
    does not look at them costs nothing.
    """

    def __init__(self, path: str, num_frames: int, *, fps: float | Callable[[], float] = 0.0,
                 size: tuple[int, int] | None = None, frame_types: str | Callable[[], str] | None = None,
                 motion: Mapping[str, np.ndarray] | Callable[[], Mapping[str, np.ndarray]] | None = None):
        self.path = str(path)
        self.num_frames = int(num_frames)
        self.size = tuple(size) if size is not None else None
        self._lazy = {"fps": fps, "frame_types": frame_types if frame_types is not None else "?" * self.num_frames,
                      "motion": motion if motion is not None else {}}

    def _get(self, key: str):
        value = self._lazy[key]
        if callable(value):
            value = self._lazy[key] = value()
        return value

    @property
    def fps(self) -> float:
        return float(self._get("fps"))

    @property
    def frame_types(self) -> str:
        return self._get("frame_types")

    @property
    def motion(self) -> Mapping[str, np.ndarray]:
        return self._get("motion")

    @property
    def keyframes(self) -> np.ndarray:
        """Frame numbers of the I-frames (int64)."""
        return np.array([t for t, c in enumerate(self.frame_types) if c == "I"], dtype=np.int64)

    def __repr__(self) -> str:
        return f"VideoInfo({self.path!r}, num_frames={self.num_frames}, size={self.size})"


def as_info(info: VideoInfo | int) -> VideoInfo:
    """A bare frame count is a video known by its length only (tests, old call sites)."""
    return info if isinstance(info, VideoInfo) else VideoInfo("", int(info))


@dataclass
class Request:
    """One named fetch: ``stream`` (one of ``STREAMS``), 0-based frame ``indices`` [T] or [V, T]
    (several clips of the same stream, ``item[name]`` [V, T, ...]), stream ``options``."""

    stream: str
    indices: np.ndarray
    options: dict[str, Any] = field(default_factory=dict)

    def __init__(self, stream: str, indices, **options):
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
        unknown = set(options) - set(_OPTIONS[stream])
        if unknown:
            raise ValueError(f"stream {stream!r} takes options {_OPTIONS[stream] or 'none'}, got {sorted(unknown)}")
        self.stream = stream
        self.indices = np.asarray(indices, dtype=np.int64)
        self.options = options
        if self.indices.ndim not in (1, 2) or self.indices.size == 0:
            raise ValueError(f"{stream} request: indices must be a non-empty [T] or [V, T] array, "
                             f"got shape {self.indices.shape}")
        if stream == "flow" and self.indices.shape[-1] < 2:
            raise ValueError("flow request: needs at least 2 indices (flow runs between consecutive ones)")
        if stream == "flow" and options.get("method") not in (None, "dis", "tvl1"):
            raise ValueError(f"flow request: method must be 'dis' or 'tvl1', got {options['method']!r}")
        if stream == "flow" and options.get("dtype") not in (None, "uint8", "float16"):
            raise ValueError(f"flow request: dtype must be 'uint8' or 'float16', got {options['dtype']!r}")


class Requests(dict):
    """``{name: Request}`` plus ``labels`` (``{key: scalar or array}``, each an ``item[key]`` tensor)."""

    def __init__(self, requests: Mapping[str, Request] | None = None, *, labels: Mapping[str, Any] | None = None,
                 **named: Request):
        super().__init__(dict(requests or {}), **named)
        self.labels = dict(labels or {})
        for name, req in self.items():
            if not isinstance(req, Request):
                raise TypeError(f"request {name!r} must be a Request, got {type(req).__name__}")

    def __repr__(self) -> str:
        return f"Requests({dict(self)!r}, labels={self.labels!r})"


@runtime_checkable
class Sampler(Protocol):
    def __call__(self, info: VideoInfo, rng: np.random.Generator) -> Requests: ...


@dataclass(frozen=True)
class RandomClips:
    """``num_views`` independent random clips of the same video (MoCo-style positives), as
    ``Request("rgb", [num_views, clip_len])`` named ``name`` (default ``"clips"``)."""

    num_views: int = 2
    clip_len: int = 8
    stride: int = 2
    name: str = "clips"

    def __post_init__(self) -> None:
        _check_positive(self, "num_views", "clip_len", "stride")

    def __call__(self, info: VideoInfo | int, rng: np.random.Generator) -> Requests:
        n = as_info(info).num_frames
        rows = [random_clip_indices(n, self.clip_len, self.stride, rng) for _ in range(self.num_views)]
        return Requests({self.name: Request("rgb", np.stack(rows))})


@dataclass(frozen=True)
class SingleClip(RandomClips):
    """One random clip per video (supervised training, single-view pretext tasks):
    ``RandomClips`` with ``num_views`` fixed at 1, so ``SingleClip(clip_len, stride)``."""

    num_views: int = field(default=1, init=False)


@dataclass(frozen=True)
class StaticClips:
    """Static clips (DSM, Wang et al., AAAI 2021, sec. 1 / Fig. 1): "formed by repeating a frame that
    is randomly selected from a video", so only the scene is left and no motion. ``num_views``
    clips of one frame, drawn uniformly over the whole video, repeated ``clip_len`` times:
    ``Request("rgb", [num_views, clip_len])`` whose rows each hold one index (one decode)."""

    num_views: int = 1
    clip_len: int = 8
    name: str = "clips"

    def __post_init__(self) -> None:
        _check_positive(self, "num_views", "clip_len")

    def __call__(self, info: VideoInfo | int, rng: np.random.Generator) -> Requests:
        frames = rng.integers(0, as_info(info).num_frames, size=self.num_views)
        return Requests({self.name: Request("rgb", np.repeat(frames[:, None], self.clip_len, axis=1))})


@dataclass(frozen=True)
class UniformClips:
    """``num_clips`` clips evenly spaced over the video (evaluation); ignores ``rng``.

    ``static=True`` repeats each clip's middle frame through it (the static test clips of the
    scene-bias diagnostic, :class:`StaticClips`), so the frames stay spread over the video.
    ``stream`` is what the clips are read from: RGB frames, or a signal such as
    ``"motion_vectors"`` for a network that takes motion (cmd's M-network)."""

    num_clips: int = 10
    clip_len: int = 8
    stride: int = 2
    name: str = "clips"
    static: bool = False
    stream: str = "rgb"

    def __post_init__(self) -> None:
        _check_positive(self, "num_clips", "clip_len", "stride")

    def __call__(self, info: VideoInfo | int, rng: np.random.Generator | None = None) -> Requests:
        clips = uniform_clip_indices(as_info(info).num_frames, self.clip_len, self.stride, self.num_clips)
        if self.static:
            clips = np.repeat(clips[:, self.clip_len // 2:self.clip_len // 2 + 1], self.clip_len, axis=1)
        return Requests({self.name: Request(self.stream, clips)})


@dataclass(frozen=True)
class TiledClips:
    """Every clip of the video back to back (``tiled_clip_indices``), for clip-level retrieval:
    ``Request("rgb", [V, clip_len])`` where V depends on the video's length; ignores ``rng``."""

    clip_len: int = 16
    stride: int = 1
    name: str = "clips"

    def __post_init__(self) -> None:
        _check_positive(self, "clip_len", "stride")

    def __call__(self, info: VideoInfo | int, rng: np.random.Generator | None = None) -> Requests:
        return Requests({self.name: Request("rgb", tiled_clip_indices(as_info(info).num_frames, self.clip_len,
                                                                      self.stride))})


def _check_positive(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a positive integer, got {value!r}")
