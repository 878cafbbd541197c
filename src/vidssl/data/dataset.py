"""The torch Dataset every method shares: fetch what a method's sampler requests, nothing else.

Per item, the dataset tells the sampler what it knows about the video before decoding
(:class:`vidssl.data.views.VideoInfo`: frame count, fps, frame types, cached motion
statistics), then fetches the named requests it returns: one decode (or one frame-cache read)
serves every ``rgb`` request and the frames on-the-fly flow needs, ``iframe`` requests use a
keyframe-only decode where the reader has one, signals (``flow``, ``motion_map``,
``motion_vectors``) come from the cache or are computed (:class:`vidssl.data.signals.SignalSet`)
and are shipped in their storage dtype (uint8 flow codes, float16) for
:func:`vidssl.data.signals.dequantize_batch` on the device. Workers only decode and slice
(NumPy); augmentation happens later, batched on the device (``vidssl.data.augment``). Each
item is reproducible: its random generator is seeded from ``(seed, epoch, index)``, so a run,
or one item of it, can be replayed exactly whatever the number of workers.

Bad input never kills a long job (DESIGN.md "Conventions"): a video that raises
``VideoReadError`` (or whose cached signal does not cover its frames) is named in one warning
(once per path per process), replaced by another video chosen deterministically from
``(seed, index)``, and listed in the item's ``"skipped"``. ``BadVideoTally``, in the main
process, adds those lists up and stops the run with ``TooManyBadVideos`` only when the bad
fraction passes a threshold (``data.max_bad_fraction``), counting each bad file once.
"""
from __future__ import annotations

import warnings
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vidssl.data.catalogs import Catalog
from vidssl.data.views import Requests, Sampler, VideoInfo
from vidssl.video.frame_cache import FrameCache
from vidssl.video.reader import VideoReader, VideoReadError

__all__ = ["VideoDataset", "BadVideoWarning", "TooManyBadVideos", "BadVideoTally", "collate", "RESERVED"]

Signal = Callable[[str, np.ndarray], np.ndarray]

_WARNED: set[str] = set()  # bad paths already warned about in this process
_MAX_REPLACEMENTS = 20
_REPLACEMENT_STREAM = 0x5EED  # separates replacement draws from view draws of the same index
# Item keys the dataset or the trainer sets: no request or label may take them.
RESERVED = frozenset({"label", "index", "skipped", "encodings", "generator", "step", "epoch"})


class BadVideoWarning(UserWarning):
    """A video could not be read and another one was served in its place."""


class TooManyBadVideos(RuntimeError):
    """More videos failed to read than the configured fraction allows."""


class VideoDataset(Dataset):
    """What ``sampler`` requests from the videos of ``catalog``.

    ``dataset[i]`` is a dict:
        one entry per request name: ``rgb`` / ``iframe`` uint8 [T, H, W, 3] ([V, T, ...] for
        2-D indices), ``flow`` [T-1, H, W, 2] (uint8 codes or float16), ``motion_map`` float16
        [T, H, W], ``motion_vectors`` float16 [T, h, w, 2] (see :mod:`vidssl.data.views`);
        one tensor per label of the requests (e.g. "pace" [V]);
        "encodings": ``{name: "flow-uint8" | "float16"}`` of the signals, for ``dequantize_batch``
        (absent when there are none);
        "label": int64 scalar; "index": int64 scalar, the catalog index of the video served
        (the replacement's when video ``i`` was bad, so label and index match the frames);
        one tensor [V, ...] per entry of the legacy ``signals``;
        "skipped": list of paths that failed while serving ``i``.

    Args:
        catalog: the videos.
        sampler: ``(VideoInfo, rng) -> Requests`` (:mod:`vidssl.data.views`).
        frame_size: ``(H, W)`` every frame is resized to when decoded; ``None`` keeps the
            native size (then all videos of a batch must share it).
        seed: base seed of the per-item generators.
        max_bad_fraction: the threshold a ``BadVideoTally`` for this dataset should use
            (``make_tally()``).
        signals: legacy per-clip arrays, ``name -> fn(video_path, clip_indices) -> array``
            (``data.signals``), called for each row of the ``"clips"`` request and stacked into
            ``item[name]`` [V, ...]. A signal function that raises ``VideoReadError``, or
            ``IndexError`` (its frame count disagrees with the video's, e.g. a stale cache),
            makes the video count as bad, like a decoding failure.
        frame_cache: decode each video once into this ``FrameCache`` and slice frames out of
            it afterwards (its frame size must be ``frame_size``); ``None`` decodes every item.
        signal_set: where requested signals come from (a ``vidssl.data.signals.SignalSet`` at
            ``frame_size``); default: the ``declared`` signals, from ``cache_dir`` / ``root`` when given.
        declared: the method's ``Signal`` declarations (``Method.signals()``), checked against
            the cache here, before any worker starts.
        cache_dir, root: the signal cache ``vidssl extract`` wrote and the dataset root it is keyed by.
        video_stream: which video stream of each file to read (None: the best one).
    """

    def __init__(self, catalog: Catalog, sampler: Sampler, *,
                 frame_size: tuple[int, int] | None = None, seed: int = 0, max_bad_fraction: float = 0.05,
                 signals: Mapping[str, Signal] | None = None, frame_cache: FrameCache | None = None,
                 signal_set=None, declared: Iterable = (), cache_dir=None, root=None,
                 video_stream: int | None = None):
        if len(catalog) == 0:
            raise ValueError(f"catalog {catalog.name!r} is empty")
        if not callable(sampler):
            raise TypeError(f"sampler must be callable (VideoInfo, rng) -> Requests, got {sampler!r}")
        if frame_size is not None:
            frame_size = (int(frame_size[0]), int(frame_size[1]))
            if min(frame_size) <= 0:
                raise ValueError(f"frame_size must be positive (H, W), got {frame_size}")
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if not 0 <= max_bad_fraction <= 1:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        if frame_cache is not None and frame_cache.frame_size != frame_size:
            raise ValueError(f"frame_cache holds frames of size {frame_cache.frame_size}, the dataset decodes "
                             f"{frame_size}")
        cached_stream = getattr(frame_cache, "stream", None)
        if frame_cache is not None and video_stream is not None and cached_stream != video_stream:
            raise ValueError(f"frame_cache holds frames of stream {cached_stream}, the dataset "
                             f"reads video stream {video_stream}")
        signals = dict(signals or {})
        for name, fn in signals.items():
            if name in RESERVED | {"clips"} or not callable(fn):
                raise ValueError(f"signal {name!r}: needs a callable and a name other than "
                                 f"{sorted(RESERVED | {'clips'})}")
        if signal_set is None:
            from vidssl.data.signals import SignalSet

            signal_set = SignalSet(declared, cache_dir=cache_dir, root=root, frame_size=frame_size,
                                   video_stream=video_stream)
        elif tuple(signal_set.settings["frame_size"] or ()) != tuple(frame_size or ()):
            raise ValueError(f"signal_set computes signals at {signal_set.settings['frame_size']}, the dataset "
                             f"decodes {frame_size}")
        self.catalog = catalog
        self.sampler = sampler
        self.frame_size = frame_size
        self.seed = int(seed)
        self.max_bad_fraction = float(max_bad_fraction)
        self.signals = signals
        self.signal_set = signal_set
        self.frame_cache = frame_cache
        self.video_stream = video_stream
        # Shared memory, so set_epoch reaches persistent DataLoader workers too (they hold a
        # copy of the dataset made when they started).
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._bad: set[str] = set()  # paths known bad in this process: not reopened

    def __len__(self) -> int:
        return len(self.catalog)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Change the random clips of every item (call before each epoch)."""
        self._epoch.fill_(int(epoch))

    def make_tally(self) -> "BadVideoTally":
        return BadVideoTally(self.max_bad_fraction, len(self))

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        # A sampler may send (index, epoch): the epoch then travels with the index, which is
        # how vidssl.train's resumable sampler reaches persistent worker processes.
        i, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), self.epoch)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} videos in {self.catalog.name!r}")
        rng = np.random.default_rng([self.seed, epoch, i])
        skipped: list[str] = []
        served = i
        replacements = None
        for attempt in range(_MAX_REPLACEMENTS + 1):
            record = self.catalog.records[served]
            if record.path not in self._bad:
                try:
                    item = self._load(record.path, rng)
                    break
                except VideoReadError as err:
                    self._mark_bad(record.path, err)
            skipped.append(record.path)
            if replacements is None:
                replacements = np.random.default_rng([self.seed, _REPLACEMENT_STREAM, i])
            served = int(replacements.integers(len(self)))
            # A replacement uses its own generator, so the same bad video is always replaced
            # by the same clips within an epoch.
            rng = np.random.default_rng([self.seed, epoch, served])
        else:
            names = list(dict.fromkeys(skipped))
            raise TooManyBadVideos(f"item {i}: {len(skipped)} videos in a row could not be read, so most of the "
                                   f"dataset seems unreadable ({', '.join(names[:5])}"
                                   f"{f' and {len(names) - 5} more' if len(names) > 5 else ''}); check it with "
                                   f"`vidssl check-videos DIR`")
        item["label"] = torch.tensor(self.catalog.records[served].label, dtype=torch.int64)
        item["index"] = torch.tensor(served, dtype=torch.int64)
        item["skipped"] = skipped
        return item

    def _load(self, path: str, rng: np.random.Generator) -> dict:
        holder: dict = {"reader": None}
        try:
            if self.frame_cache is not None:
                video = self.frame_cache.frames(path)
                num_frames, size = len(video), tuple(video.shape[1:3])
            else:
                video = None
                holder["reader"] = VideoReader(path, size=self.frame_size, **self._stream_arg())
                num_frames, size = holder["reader"].num_frames, holder["reader"].size
            if num_frames < 1:
                raise VideoReadError(path, "no frames")
            info = VideoInfo(path, num_frames, size=size, fps=lambda: self._probe(path, holder).fps,
                             frame_types=lambda: self._frame_types(path, holder),
                             motion=lambda: self.signal_set.motion_stats(path))
            requests = self.sampler(info, rng)
            _check_requests(requests, path, num_frames)
            return self._fetch(path, requests, num_frames, holder["reader"] if video is None else None, video)
        finally:
            if holder["reader"] is not None:
                holder["reader"].close()

    def _fetch(self, path: str, requests: Requests, num_frames: int, reader, video) -> dict:
        """One decode for every RGB request and the frames on-the-fly signals need, then slicing."""
        sources = {name: self.signal_set.for_request(req) for name, req in requests.items()
                   if req.stream not in ("rgb", "iframe")}
        low, high = 0, -1
        if any(req.stream == "iframe" for req in requests.values()):
            rgb = [req.indices for req in requests.values() if req.stream == "rgb"]
            if rgb:
                low, high = min(int(i.min()) for i in rgb), max(int(i.max()) for i in rgb)

        def keyframe_decode(req) -> bool:
            # An I-frame inside the span the RGB decode covers anyway costs nothing there; one
            # outside it is read by a keyframe-only decode where the reader has one.
            return (reader is not None and hasattr(reader, "read_keyframes")
                    and not (low <= int(req.indices.min()) and int(req.indices.max()) <= high))

        decoded = [name for name, req in requests.items()
                   if req.stream == "rgb" or (req.stream == "iframe" and not keyframe_decode(req))]
        wanted = [requests[name].indices.reshape(-1) for name in decoded]
        for name, source in sources.items():
            try:
                wanted.append(source.frames_needed(path, requests[name].indices, num_frames, requests[name].stream))
            except IndexError as err:
                raise _signal_mismatch(path, name, err) from err
        union = np.unique(np.concatenate(wanted)) if wanted else np.zeros(0, np.int64)
        frames = None
        if len(union):
            frames = np.asarray(video[union]) if video is not None else reader.read(union)

        def take(indices) -> np.ndarray:  # frames of the decode, for a signal computed on the fly
            indices = np.asarray(indices, dtype=np.int64)
            pos = np.minimum(np.searchsorted(union, indices), max(len(union) - 1, 0))
            if frames is None or not np.array_equal(union[pos], indices):
                raise RuntimeError(f"{path}: frames {indices.tolist()} were not decoded (a signal source "
                                   f"asked for frames it did not plan)")
            return frames[pos]

        item: dict = {}
        encodings: dict[str, str] = {}
        for name, req in requests.items():
            if name in decoded:
                out = frames[np.searchsorted(union, req.indices)]  # in the union by construction
            elif req.stream == "iframe":
                keys, where = np.unique(req.indices, return_inverse=True)
                out = reader.read_keyframes(keys)[where.reshape(req.indices.shape)]
            else:
                try:
                    out, encodings[name] = sources[name].fetch(
                        path, req.indices, stream=req.stream, read=take, num_frames=num_frames,
                        accumulated=bool(req.options.get("accumulated", False)))
                except IndexError as err:
                    raise _signal_mismatch(path, name, err) from err
            item[name] = torch.from_numpy(np.ascontiguousarray(out))
        for key, value in requests.labels.items():
            value = np.asarray(value)
            item[key] = torch.from_numpy(np.ascontiguousarray(value.astype(np.float32) if value.dtype == np.float64
                                                              else value))
        if encodings:
            item["encodings"] = encodings
        if self.signals:
            self._legacy_signals(path, requests, item)
        return item

    def _legacy_signals(self, path: str, requests: Requests, item: dict) -> None:
        if "clips" not in requests:
            raise ValueError(f"{path}: data.signals are computed for the frames of the 'clips' request, and "
                             f"the sampler returned {sorted(requests)}")
        rows = np.atleast_2d(requests["clips"].indices)
        for name, fn in self.signals.items():
            try:
                arrays = [np.asarray(fn(path, row)) for row in rows]
            except IndexError as err:
                raise _signal_mismatch(path, name, err) from err
            try:
                item[name] = torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))
            except ValueError as err:
                raise ValueError(f"signal {name!r} returned arrays of different shapes for {path}: "
                                 f"{[a.shape for a in arrays]}") from err

    def _stream_arg(self) -> dict:
        return {"stream": self.video_stream} if self.video_stream is not None else {}

    def _probe(self, path: str, holder: dict):
        """The open reader; with a frame cache, one opened (packet scan, no decode) on first need."""
        if holder["reader"] is None:
            holder["reader"] = VideoReader(path, size=self.frame_size, **self._stream_arg())
        return holder["reader"]

    def _frame_types(self, path: str, holder: dict) -> str:
        """Picture types from the packet index (``VideoReader.frame_types``), else from a
        keyframe-only scan of the compressed stream."""
        types = getattr(self._probe(path, holder), "frame_types", None)
        if types is None:
            from vidssl.video.compressed import read_compressed

            types = read_compressed(path, motion_vectors=False, iframes=False, **self._stream_arg()).frame_types
        return "".join(types)

    def _mark_bad(self, path: str, err: Exception) -> None:
        self._bad.add(path)
        if path not in _WARNED:
            _WARNED.add(path)
            warnings.warn(f"skipping unreadable video, serving another in its place: {err}",
                          BadVideoWarning, stacklevel=3)


class BadVideoTally:
    """Counts a job's distinct unreadable videos against the videos it reads, in the main process.

    ``update(batch["skipped"], n_served)`` after each batch; it raises ``TooManyBadVideos`` once
    more than ``max_fraction`` of the job's ``num_videos`` videos are known to be unreadable. A file
    counts once however often it is hit (every epoch, or while serving another bad video's
    replacement), so every file counted really is bad: the check never stops a job whose share of
    bad files is within the limit, and stops one above it as soon as enough of them have been met.
    The error names ``key`` (the config key that sets the limit) and a few of the files.

    ``num_videos`` may be set after construction (the trainer takes it from its data loader).
    Until it is known, the items served stand in for the videos read, and the check waits for
    ``min_served`` of them (one bad video in the first batch says little); ``check()`` applies it
    regardless, e.g. at the end of an epoch.
    """

    def __init__(self, max_fraction: float = 0.05, num_videos: int | None = None, *, min_served: int = 64,
                 key: str = "data.max_bad_fraction"):
        if not 0 <= max_fraction <= 1:
            raise ValueError(f"{key}: must be in [0, 1], got {max_fraction}")
        if num_videos is not None and int(num_videos) < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        self.max_fraction = float(max_fraction)
        self.num_videos = int(num_videos) if num_videos is not None else None
        self.min_served = int(min_served)
        self.key = key
        self.served = 0
        self.bad_paths: dict[str, int] = {}  # path -> times hit (insertion-ordered)

    def update(self, skipped: Sequence[str], n_served: int = 0) -> None:
        self.served += int(n_served)
        for path in skipped:
            self.bad_paths[path] = self.bad_paths.get(path, 0) + 1
        if self.num_videos is not None or self.served >= self.min_served:
            self.check()

    @property
    def videos(self) -> int:
        """The number of videos the fraction is taken of."""
        if self.num_videos is not None:
            return self.num_videos
        return max(self.served, len(self.bad_paths), 1)

    @property
    def bad(self) -> int:
        """Distinct unreadable videos met so far."""
        return len(self.bad_paths)

    @property
    def fraction(self) -> float:
        return self.bad / self.videos

    def check(self) -> None:
        if self.bad and self.fraction > self.max_fraction:
            raise TooManyBadVideos(self.describe())

    def describe(self, shown: int = 5) -> str:
        """One line: how many of how many are bad against the limit, a few of them, what to do."""
        paths = list(self.bad_paths)
        more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
        return (f"{self.bad} of {self.videos} videos are unreadable ({100 * self.fraction:.1f}%, more than "
                f"{self.key}={self.max_fraction:g} allows): {', '.join(paths[:shown])}{more}; repair or remove "
                f"them (`vidssl check-videos DIR` lists every bad file with its reason), or raise {self.key} "
                f"to skip them")

    def report(self) -> dict:
        """``{"videos", "served", "bad", "fraction", "bad_paths"}`` for logs and run summaries."""
        return {"videos": self.videos, "served": self.served, "bad": self.bad, "fraction": self.fraction,
                "bad_paths": list(self.bad_paths)}

    def state_dict(self) -> dict:
        """What a checkpoint keeps, so a resumed run counts toward the same limit."""
        return {"served": self.served, "bad_paths": dict(self.bad_paths)}

    def load_state_dict(self, state: Mapping) -> None:
        self.served = int(state.get("served", 0))
        self.bad_paths = {str(k): int(v) for k, v in dict(state.get("bad_paths", {})).items()}


def collate(items: Sequence[dict]) -> dict:
    """Stack the items of a batch per name: tensors along a new first dim, "skipped" lists
    concatenated, "encodings" (the same for every item) kept once."""
    if not items:
        raise ValueError("collate needs at least one item")
    keys = list(items[0])
    for n, item in enumerate(items[1:], start=1):
        if list(item) != keys:
            raise ValueError(f"batch items disagree on keys: item 0 has {keys}, item {n} has {list(item)}")
    batch: dict = {}
    for key in keys:
        values = [item[key] for item in items]
        if key == "skipped":
            batch[key] = [path for v in values for path in v]
        elif key == "encodings":
            if any(v != values[0] for v in values[1:]):
                raise ValueError(f"batch items disagree on signal encodings: {values[0]} vs "
                                 f"{next(v for v in values if v != values[0])}")
            batch[key] = dict(values[0])
        elif isinstance(values[0], torch.Tensor):
            try:
                batch[key] = torch.stack(values)
            except RuntimeError as err:
                shapes = sorted({tuple(v.shape) for v in values})
                raise ValueError(f"cannot batch {key!r}: shapes differ {shapes} "
                                 f"(set frame_size so all videos decode to one size)") from err
        else:
            batch[key] = values
    return batch


def _signal_mismatch(path: str, name: str, err: Exception) -> VideoReadError:
    # The signal (e.g. a cache extracted from another decode of the file) has fewer frames than
    # the video the clips were drawn from: a bad item, not a crash.
    return VideoReadError(path, f"signal {name!r} does not cover the requested frames "
                                f"(frame count differs from the video's): {err}")


def _check_requests(requests, path: str, num_frames: int) -> None:
    if not isinstance(requests, Requests):
        raise TypeError(f"{path}: the sampler must return Requests (vidssl.data.views), got "
                        f"{type(requests).__name__}")
    if not requests:
        raise ValueError(f"{path}: the sampler requested nothing")
    for name in list(requests) + list(requests.labels):
        if name in RESERVED:
            raise ValueError(f"{path}: request or label name {name!r} is reserved ({sorted(RESERVED)})")
    clash = set(requests) & set(requests.labels)
    if clash:
        raise ValueError(f"{path}: {sorted(clash)} named both a request and a label")
    for name, req in requests.items():
        idx = req.indices
        if idx.min() < 0 or idx.max() >= num_frames:
            raise ValueError(f"{path}: request {name!r} asks for frames outside 0..{num_frames - 1}: "
                             f"{np.unique(idx[(idx < 0) | (idx >= num_frames)]).tolist()}")
