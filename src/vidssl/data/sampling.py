"""Which frames make a clip: pure NumPy index functions, all 0-based.

Every function returns int64 frame indices that are valid for a video of ``num_frames``
frames. A clip that runs past the last frame wraps around to the first one (it "loops"),
which is what the pace prediction paper does (Wang et al., ECCV 2020, Sec. 3.1: "Start frame
of each video clip is randomly generated and will loop over the video sample if the desired
training clip is longer than the original video sample").

Terms: a clip of ``clip_len`` frames taken every ``stride`` frames covers a *span* of
``(clip_len - 1) * stride + 1`` frames of the video.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np

__all__ = [
    "clip_span",
    "loop_indices",
    "clip_indices",
    "random_clip_indices",
    "uniform_clip_indices",
    "tiled_clip_indices",
    "pace_indices",
]


def clip_span(clip_len: int, stride: int) -> int:
    """Number of video frames a clip of ``clip_len`` frames every ``stride`` frames covers."""
    _check_positive_int("clip_len", clip_len)
    _check_positive_int("stride", stride)
    return (clip_len - 1) * stride + 1


def loop_indices(indices: Sequence[int] | np.ndarray, num_frames: int) -> np.ndarray:
    """Wrap ``indices`` into ``[0, num_frames)``: index ``num_frames`` becomes 0, and so on."""
    _check_positive_int("num_frames", num_frames)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and indices.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(indices.min())}")
    return indices % num_frames


def clip_indices(num_frames: int, start: int, clip_len: int, stride: int = 1) -> np.ndarray:
    """``clip_len`` frames from ``start`` every ``stride`` frames, looping past the end."""
    _check_positive_int("num_frames", num_frames)
    _check_start(start)
    clip_span(clip_len, stride)  # validates clip_len and stride
    return loop_indices(start + np.arange(clip_len, dtype=np.int64) * stride, num_frames)


def random_clip_indices(num_frames: int, clip_len: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """A clip at a uniformly random start such that it fits inside the video.

    When the video is shorter than the clip's span no start fits; the clip then starts at
    frame 0 and loops, so every frame of the video is used before any repeats.
    """
    _check_positive_int("num_frames", num_frames)
    span = clip_span(clip_len, stride)
    last_start = num_frames - span
    start = int(rng.integers(0, last_start + 1)) if last_start >= 0 else 0
    return clip_indices(num_frames, start, clip_len, stride)


def uniform_clip_indices(num_frames: int, clip_len: int, stride: int, num_clips: int) -> np.ndarray:
    """``num_clips`` clips with starts spaced evenly over ``[0, num_frames - span]``: [num_clips, clip_len].

    The standard multi-clip evaluation protocol (deterministic). One clip is taken from the
    middle of the video rather than its first frames. A video shorter than the span gives
    clips that all start at 0 and loop.
    """
    _check_positive_int("num_frames", num_frames)
    _check_positive_int("num_clips", num_clips)
    span = clip_span(clip_len, stride)
    last_start = max(num_frames - span, 0)
    if num_clips == 1:
        starts = np.array([last_start // 2], dtype=np.int64)
    else:
        starts = np.round(np.linspace(0, last_start, num_clips)).astype(np.int64)
    offsets = np.arange(clip_len, dtype=np.int64) * stride
    return loop_indices(starts[:, None] + offsets[None, :], num_frames)


def tiled_clip_indices(num_frames: int, clip_len: int, stride: int) -> np.ndarray:
    """Every clip of the video, back to back: [num_tiles, clip_len] with starts 0, L, 2L, ... where
    ``L = clip_len * stride`` frames, as many as fit whole (at least one).

    The clip-level retrieval protocol of Clip Order (Xu et al., CVPR 2019) and DSM (Wang et al.,
    AAAI 2021, "Video Retrieval"): "the videos ... are divided into clips in units of 16 frames",
    so a 50-frame video gives frames 0-15, 16-31 and 32-47 at ``clip_len=16, stride=1``; the two
    frames left over start no clip. A clip at ``stride`` s covers ``clip_len * s`` frames, its own
    span plus the ``s - 1`` frames up to the next clip. A video shorter than one span gives one
    clip from frame 0 that loops (as ``random_clip_indices``).
    """
    _check_positive_int("num_frames", num_frames)
    span = clip_span(clip_len, stride)
    step = clip_len * stride
    count = max(1, (num_frames - span) // step + 1) if num_frames >= span else 1
    starts = np.arange(count, dtype=np.int64) * step
    offsets = np.arange(clip_len, dtype=np.int64) * stride
    return loop_indices(starts[:, None] + offsets[None, :], num_frames)


def pace_indices(num_frames: int, start: int, clip_len: int, pace: float | Fraction) -> np.ndarray:
    """Frames of a clip played at ``pace`` (Wang et al., "Pace Prediction", ECCV 2020, Sec. 3.1, Fig. 2).

    - ``pace`` = 1 (normal): consecutive frames from ``start``.
    - ``pace`` > 1 (fast): every ``pace``-th frame, e.g. ``pace_indices(25, 10, 5, 3)`` is
      ``[10, 13, 16, 19, 22]`` (the paper's "frames 11, 14, 17, 20 and 23", 1-based).
    - ``pace`` < 1 (slow motion, 1/2 or 1/3): consecutive frames placed every ``1/pace`` slots,
      the blank slots filled by repeating the preceding frame, e.g. pace 1/2 gives
      ``[0, 0, 1, 1, 2]`` and pace 1/3 gives ``[0, 0, 0, 1, 1]``.

    In all cases slot ``j`` holds frame ``start + floor(j * pace)``, computed exactly with
    fractions (``1/3`` given as a float 0.333... is read as the fraction 1/3). Indices past
    the end wrap to the start.
    """
    _check_positive_int("num_frames", num_frames)
    _check_positive_int("clip_len", clip_len)
    _check_start(start)
    if isinstance(pace, bool) or not isinstance(pace, (int, float, Fraction, np.integer, np.floating)):
        raise TypeError(f"pace must be a number, got {type(pace).__name__}")
    if not np.isfinite(float(pace)) or pace <= 0:
        raise ValueError(f"pace must be > 0, got {pace}")
    frac = Fraction(pace).limit_denominator(1000)
    slots = np.arange(clip_len, dtype=np.int64)
    offsets = (slots * frac.numerator) // frac.denominator
    return loop_indices(start + offsets, num_frames)


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _check_start(start) -> None:
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise TypeError(f"start must be an integer, got {type(start).__name__}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
