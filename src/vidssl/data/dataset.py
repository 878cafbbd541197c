"""The torch Dataset every method shares: decode the frames a view sampler asks for, nothing else.

Workers only open the video, decode the union of the views' frame indices once and slice it
into clips (NumPy uint8); augmentation happens later, batched on the device
(``vidssl.data.augment``). Each item is reproducible: its random generator is seeded from
``(seed, epoch, index)``, so a run, or one item of it, can be replayed exactly whatever the
number of workers.

Bad input never kills a long job (DESIGN.md "Conventions"): a video that raises
``VideoReadError`` is named in one warning (once per path per process), replaced by another
video chosen deterministically from ``(seed, index)``, and listed in the item's ``"skipped"``.
``BadVideoTally``, in the main process, adds those lists up and stops the run with
``TooManyBadVideos`` only when the bad fraction passes a threshold.
"""
from __future__ import annotations

import warnings
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vidssl.data.catalogs import Catalog
from vidssl.data.views import View, ViewSampler
from vidssl.video.frame_cache import FrameCache
from vidssl.video.reader import VideoReader, VideoReadError

__all__ = ["VideoDataset", "BadVideoWarning", "TooManyBadVideos", "BadVideoTally", "collate"]

Signal = Callable[[str, np.ndarray], np.ndarray]

_WARNED: set[str] = set()  # bad paths already warned about in this process
_MAX_REPLACEMENTS = 20
_REPLACEMENT_STREAM = 0x5EED  # separates replacement draws from view draws of the same index


class BadVideoWarning(UserWarning):
    """A video could not be read and another one was served in its place."""


class TooManyBadVideos(RuntimeError):
    """More videos failed to read than the configured fraction allows."""


class VideoDataset(Dataset):
    """Clips of the videos of ``catalog`` as ``view_sampler`` asks for them.

    ``dataset[i]`` is a dict:
        "clips": uint8 tensor [V, T, H, W, 3] (one row per view, all views the same length T);
        "label": int64 scalar; "index": int64 scalar, the catalog index of the video the clips
        come from (the replacement's when video ``i`` was bad, so label and index match the frames);
        one int64/float32 tensor [V] per meta key of the views (e.g. "pace");
        one tensor [V, ...] per entry of ``signals``;
        "skipped": list of paths that failed while serving ``i``.

    Args:
        catalog: the videos.
        view_sampler: ``(num_frames, rng) -> list[View]``.
        frame_size: ``(H, W)`` every frame is resized to when decoded; ``None`` keeps the
            native size (then all videos of a batch must share it).
        seed: base seed of the per-item generators.
        max_bad_fraction: the threshold a ``BadVideoTally`` for this dataset should use
            (``make_tally()``).
        signals: extra per-view arrays, ``name -> fn(video_path, view_indices) -> array``
            (motion vectors, motion maps, ...). Each call's result is stacked over views into
            ``item[name]`` [V, ...]. A signal function that raises ``VideoReadError``, or
            ``IndexError`` (its frame count disagrees with the video's, e.g. a stale cache),
            makes the video count as bad, like a decoding failure.
        frame_cache: decode each video once into this ``FrameCache`` and slice clips out of
            it afterwards (its frame size must be ``frame_size``); ``None`` decodes every clip.
    """

    def __init__(self, catalog: Catalog, view_sampler: ViewSampler, *,
                 frame_size: tuple[int, int] | None = None, seed: int = 0, max_bad_fraction: float = 0.05,
                 signals: Mapping[str, Signal] | None = None, frame_cache: FrameCache | None = None):
        if len(catalog) == 0:
            raise ValueError(f"catalog {catalog.name!r} is empty")
        if not callable(view_sampler):
            raise TypeError(f"view_sampler must be callable (num_frames, rng) -> list[View], got {view_sampler!r}")
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
        signals = dict(signals or {})
        reserved = {"clips", "label", "index", "skipped"}
        for name, fn in signals.items():
            if name in reserved or not callable(fn):
                raise ValueError(f"signal {name!r}: needs a callable and a name other than {sorted(reserved)}")
        self.catalog = catalog
        self.view_sampler = view_sampler
        self.frame_size = frame_size
        self.seed = int(seed)
        self.max_bad_fraction = float(max_bad_fraction)
        self.signals = signals
        self.frame_cache = frame_cache
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
        return BadVideoTally(self.max_bad_fraction)

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
            raise TooManyBadVideos(f"item {i}: {len(skipped)} videos in a row could not be read: "
                                   f"{', '.join(dict.fromkeys(skipped))}")
        item["label"] = torch.tensor(self.catalog.records[served].label, dtype=torch.int64)
        item["index"] = torch.tensor(served, dtype=torch.int64)
        item["skipped"] = skipped
        return item

    def _load(self, path: str, rng: np.random.Generator) -> dict:
        if self.frame_cache is not None:
            video = self.frame_cache.frames(path)
            views, wanted, where = self._plan_views(path, len(video), rng)
            frames = np.asarray(video[wanted])
        else:
            with VideoReader(path, size=self.frame_size) as reader:
                views, wanted, where = self._plan_views(path, reader.num_frames, rng)
                frames = reader.read(wanted)
        clips = frames[where].reshape(len(views), len(views[0].indices), *frames.shape[1:])
        item: dict = {"clips": torch.from_numpy(np.ascontiguousarray(clips))}
        for key in views[0].meta:
            item[key] = torch.tensor([v.meta[key] for v in views])
        for name, fn in self.signals.items():
            try:
                arrays = [np.asarray(fn(path, v.indices)) for v in views]
            except IndexError as err:
                # The signal (e.g. a cache extracted from another decode of the file) has fewer
                # frames than the video the clips were drawn from: a bad item, not a crash.
                raise VideoReadError(path, f"signal {name!r} does not cover the clip's frames "
                                           f"(frame count differs from the video's): {err}") from err
            try:
                item[name] = torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))
            except ValueError as err:
                raise ValueError(f"signal {name!r} returned arrays of different shapes for {path}: "
                                 f"{[a.shape for a in arrays]}") from err
        return item

    def _plan_views(self, path: str, num_frames: int, rng: np.random.Generator):
        """The views of one video, and the union of their frames (sorted) with each view frame's
        position in it: one decode (or one cache read) serves every view."""
        if num_frames < 1:
            raise VideoReadError(path, "no frames")
        views = self.view_sampler(num_frames, rng)
        _check_views(views, path)
        wanted, where = np.unique(np.concatenate([v.indices for v in views]), return_inverse=True)
        if wanted[0] < 0 or wanted[-1] >= num_frames:
            raise ValueError(f"{path}: the view sampler asked for frames outside 0..{num_frames - 1}: "
                             f"{wanted[(wanted < 0) | (wanted >= num_frames)].tolist()}")
        return views, wanted, where

    def _mark_bad(self, path: str, err: Exception) -> None:
        self._bad.add(path)
        if path not in _WARNED:
            _WARNED.add(path)
            warnings.warn(f"skipping unreadable video, serving another in its place: {err}",
                          BadVideoWarning, stacklevel=3)


class BadVideoTally:
    """Counts bad videos against videos served, in the main process.

    ``update(batch["skipped"], n_served)`` after each batch; it raises ``TooManyBadVideos``
    (listing the bad paths) once ``bad / served`` exceeds ``max_fraction``. A bad hit counts
    once per time it was hit, so the fraction estimates the share of bad videos whatever
    the number of epochs. Until ``min_served`` items have been seen the check waits (one bad
    video in the first batch says little); ``check()`` applies it regardless, e.g. at the
    end of an epoch.
    """

    def __init__(self, max_fraction: float = 0.05, *, min_served: int = 64):
        if not 0 <= max_fraction <= 1:
            raise ValueError(f"max_fraction must be in [0, 1], got {max_fraction}")
        self.max_fraction = float(max_fraction)
        self.min_served = int(min_served)
        self.served = 0
        self.bad_hits = 0
        self.bad_paths: dict[str, int] = {}  # path -> times hit (insertion-ordered)

    def update(self, skipped: Sequence[str], n_served: int) -> None:
        self.served += int(n_served)
        self.bad_hits += len(skipped)
        for path in skipped:
            self.bad_paths[path] = self.bad_paths.get(path, 0) + 1
        if self.served >= self.min_served:
            self.check()

    @property
    def fraction(self) -> float:
        return self.bad_hits / self.served if self.served else 0.0

    def check(self) -> None:
        if self.bad_hits and self.fraction > self.max_fraction:
            raise TooManyBadVideos(
                f"{self.bad_hits} bad video reads for {self.served} items served "
                f"({100 * self.fraction:.1f}% > {100 * self.max_fraction:.1f}% allowed); "
                f"unreadable: {', '.join(self.bad_paths)}")

    def report(self) -> dict:
        """``{"served", "bad_hits", "fraction", "bad_paths"}`` for logs and run summaries."""
        return {"served": self.served, "bad_hits": self.bad_hits, "fraction": self.fraction,
                "bad_paths": list(self.bad_paths)}


def collate(items: Sequence[dict]) -> dict:
    """Stack the items of a batch: tensors along a new first dim, "skipped" lists concatenated."""
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


def _check_views(views: list[View], path: str) -> None:
    if not views:
        raise ValueError(f"{path}: the view sampler returned no views")
    length, keys = len(views[0].indices), set(views[0].meta)
    for v in views[1:]:
        if len(v.indices) != length:
            raise ValueError(f"{path}: views differ in length ({length} vs {len(v.indices)}); "
                             f"all views of an item must have the same number of frames")
        if set(v.meta) != keys:
            raise ValueError(f"{path}: views differ in meta keys ({sorted(keys)} vs {sorted(v.meta)})")
