"""Views: what a method asks the loader for, per video.

A method declares the clips it needs from each video through a *view sampler*: a callable
that, given the video's frame count and a random generator, returns a list of ``View``s
(frame indices plus scalar metadata such as a pace label). The dataset decodes exactly the
union of those frames, nothing more. Methods with their own needs (pace prediction's paced
clips, for instance) write their own sampler next to the method; the ones here are shared.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from vidssl.data.sampling import random_clip_indices, uniform_clip_indices

__all__ = ["View", "ViewSampler", "RandomClips", "SingleClip", "UniformClips"]


@dataclass
class View:
    """One clip of a video: 0-based frame ``indices`` [T] and scalar ``meta`` (e.g. ``{"pace": 2}``).

    Every view a sampler returns for one video must carry the same meta keys; the dataset
    stacks each key into a tensor [V].
    """

    indices: np.ndarray
    meta: dict[str, int | float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        if self.indices.ndim != 1 or self.indices.size == 0:
            raise ValueError(f"View indices must be a non-empty 1-D array, got shape {self.indices.shape}")


@runtime_checkable
class ViewSampler(Protocol):
    def __call__(self, num_frames: int, rng: np.random.Generator) -> list[View]: ...


@dataclass(frozen=True)
class RandomClips:
    """``num_views`` independent random clips of the same video (MoCo-style positives)."""

    num_views: int = 2
    clip_len: int = 8
    stride: int = 2

    def __post_init__(self) -> None:
        _check_positive(self, "num_views", "clip_len", "stride")

    def __call__(self, num_frames: int, rng: np.random.Generator) -> list[View]:
        return [View(random_clip_indices(num_frames, self.clip_len, self.stride, rng))
                for _ in range(self.num_views)]


@dataclass(frozen=True)
class SingleClip(RandomClips):
    """One random clip per video (supervised training, single-view pretext tasks):
    ``RandomClips`` with ``num_views`` fixed at 1, so ``SingleClip(clip_len, stride)``."""

    num_views: int = field(default=1, init=False)


@dataclass(frozen=True)
class UniformClips:
    """``num_clips`` clips evenly spaced over the video (evaluation); ignores ``rng``."""

    num_clips: int = 10
    clip_len: int = 8
    stride: int = 2

    def __post_init__(self) -> None:
        _check_positive(self, "num_clips", "clip_len", "stride")

    def __call__(self, num_frames: int, rng: np.random.Generator | None = None) -> list[View]:
        clips = uniform_clip_indices(num_frames, self.clip_len, self.stride, self.num_clips)
        return [View(row) for row in clips]


def _check_positive(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a positive integer, got {value!r}")
