"""Calibration rows of the embedded benchmark: hand-made features that need no training.

They prove that the benchmark measures what it claims and bound what a learned representation
can be expected to reach:

- ``scene-only``: texture statistics of single frames (Fourier power by frequency band and by
  orientation, gradient and intensity statistics of the contrast-normalised grey image). They
  see the scene and know nothing of motion, so retrieval with them must sit near chance on
  split 1 (scene independent of class) and well above it on split 2 (the train bias kept).
- ``motion-only``: statistics of DIS optical flow over the whole video after removing the
  camera pan (the per-frame median flow): speed and its rhythm over time, direction of motion
  folded so a horizontal flip leaves it unchanged, rotation and expansion of the moving region
  (affine fit), temporal autocorrelation of the object's velocity, extent of its path. They
  know nothing of the scene's appearance, so they must be well above chance on both splits.

Both are rotation- and flip-invariant where the benchmark's classes are (a scene's orientation
and an orbit's direction are random). Retrieval follows the papers' protocol
(:func:`vidssl.eval.retrieval.retrieval_recall`: test videos query the train videos, cosine
similarity); each feature dimension is first standardised with the gallery's mean and standard
deviation, so no statistic dominates the cosine by its units.

Measured on the demo preset (rho 0.9, the full gallery of 2000 train videos, 200 queries per
split, chance 12.5 %), R@1 split 1 (decorrelated) / split 2 (biased): seed 0: scene-only
11.5 / 75.0, motion-only 94.0 / 98.5; seed 1: scene-only 11.0 / 75.0, motion-only 96.5 / 98.5.
Features of 2400 videos take about 45 s of CPU for the scene and 100 s for the flow.
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Mapping, Callable, Sequence

import cv2
import numpy as np

__all__ = ["CALIBRATION_ROWS", "scene_descriptor", "motion_descriptor", "scene_only_features",
           "motion_only_features", "standardise", "calibration_rows"]

CALIBRATION_ROWS = ("scene-only", "motion-only")
_REFERENCE_SIZE = 64.0  # lengths below are in pixels of a 64 x 64 frame and scale with the frame


# --------------------------------------------------------------------------------------------
# Scene: single-frame texture statistics

_RADIAL_BANDS = 10
_ORIENTATION_BINS = 12


def scene_descriptor(frame: np.ndarray) -> np.ndarray:
    """Texture statistics of one uint8 RGB frame [H, W, 3]: float32 [D] (D = 41).

    The grey image is normalised to zero mean and unit variance (colours are random per video),
    then described by: Fourier power in log-spaced frequency bands (10); Fourier power by
    orientation, circularly shifted to the dominant orientation and mirrored, so a rotated or
    flipped scene gives the same numbers (7); histograms of gradient magnitude (8, sharp versus
    soft edges), of local orientation coherence (6, straight bands versus corners and blobs) and
    of intensity (10, two-level versus smooth patterns).
    """
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    grey = (grey - grey.mean()) / (grey.std() + 1e-3)
    height, width = grey.shape

    # Fourier power in polar bins (frequencies in cycles per pixel, so any frame size works).
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    power = np.abs(np.fft.fft2(grey * window)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    radius = np.hypot(fx, fy)
    keep = radius >= 1.5 / min(height, width)  # below that the window dominates
    edges = np.geomspace(1.5 / min(height, width), 0.5 * math.sqrt(2) + 1e-6, _RADIAL_BANDS + 1)
    radial = np.histogram(radius[keep], bins=edges, weights=power[keep])[0]
    radial = np.log(radial / radial.sum() + 1e-4)
    theta = np.mod(np.arctan2(fy, fx), np.pi)[keep]
    # Orientations relative to the dominant one (found on a fine, smoothed histogram so that it
    # moves continuously with the scene), then mirrored about it: rotation- and flip-invariant.
    fine = np.histogram(theta, bins=6 * _ORIENTATION_BINS, range=(0, np.pi), weights=power[keep])[0]
    fine = sum(np.roll(fine, k) * w for k, w in zip(range(-2, 3), (1, 2, 3, 2, 1)))
    peak = (np.argmax(fine) + 0.5) * np.pi / len(fine)
    half_bin = np.pi / _ORIENTATION_BINS / 2
    relative = np.mod(theta - peak + half_bin, np.pi)
    orient = np.histogram(relative, bins=_ORIENTATION_BINS, range=(0, np.pi), weights=power[keep])[0]
    orient = (orient + np.roll(orient[::-1], 1)) / 2
    orient = np.log(orient[: _ORIENTATION_BINS // 2 + 1] / orient.sum() + 1e-4)

    # Edges and local structure.
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3) / 8
    magnitude = np.hypot(gx, gy)
    scale = min(height, width) / _REFERENCE_SIZE
    grad_hist = _fractions(magnitude * scale, np.array([0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, np.inf]))
    blur = max(1.0, 2.0 * scale)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), blur)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), blur)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), blur)
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + 1e-4)
    coh_hist = _fractions(coherence, np.array([0, 0.2, 0.4, 0.6, 0.75, 0.9, np.inf]))
    level_hist = _fractions(grey, np.array([-np.inf, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, np.inf]))
    return np.concatenate([radial, orient, grad_hist, coh_hist, level_hist]).astype(np.float32)


def _fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.histogram(values, bins=edges)[0]
    return np.sqrt(counts / max(values.size, 1))  # square root: a few pixels in a bin still count


# --------------------------------------------------------------------------------------------
# Motion: statistics of optical flow

_MOVING_PX = 0.3  # flow magnitude (64-px reference pixels per frame) that counts as motion
_LAGS = (1, 2, 3, 4, 6, 8)
_BORDER = 3  # px ignored at each border: flow there is unreliable where content enters the frame


def motion_descriptor(flow: np.ndarray) -> np.ndarray:
    """Statistics of a forward optical flow field [T, H, W, 2] of one video: float32 [D] (D = 46).

    The camera pan is removed first (the per-frame median flow; the moving object covers far
    less than half the frame). Per frame, the motion-weighted mean velocity ``v_t`` of the moving
    pixels, their mean speed, moving area, centroid and an affine fit (divergence: expansion,
    curl: rotation) summarise the object's motion. Over time: the speed level and its
    variability (stop-and-go), the share of still frames, direction histograms folded to
    [0, pi/2] (unchanged by a horizontal flip or a reversed direction), coherence (translation
    versus rotation or scaling), autocorrelation of ``v_t`` and of the divergence at several lags
    (bounces keep their velocity, orbits turn it steadily, jitter forgets it at once, pulses
    oscillate), turning angle, and how far the centroid travels along x and along y.
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 4 or flow.shape[-1] != 2 or flow.shape[0] < 3:
        raise ValueError(f"motion_descriptor expects flow [T>=3, H, W, 2], got {flow.shape}")
    flow = flow[:-1]  # the last field repeats the previous one (MCL 3.1 convention)
    height, width = flow.shape[1:3]
    unit = min(height, width) / _REFERENCE_SIZE
    b = _BORDER if min(height, width) > 8 * _BORDER else 0
    flow = flow[:, b:height - b, b:width - b] / unit  # reference pixels per frame
    flow = flow - np.median(flow.reshape(len(flow), -1, 2), axis=1)[:, None, None, :]
    h, w = flow.shape[1:3]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) / unit

    speed = np.hypot(flow[..., 0], flow[..., 1])
    weight = np.maximum(speed - _MOVING_PX, 0.0)  # soft threshold: noise contributes nothing
    mass = weight.sum(axis=(1, 2))  # [T] motion energy
    moving = mass > 1e-3
    safe = np.where(moving, mass, 1.0)
    v = np.einsum("thw,thwc->tc", weight, flow) / safe[:, None]  # mean velocity of the moving region
    s = np.einsum("thw,thw->t", weight, speed) / safe  # mean speed of the moving region
    cx = np.einsum("thw,hw->t", weight, xs) / safe
    cy = np.einsum("thw,hw->t", weight, ys) / safe
    area = (speed > _MOVING_PX).mean(axis=(1, 2))
    div, curl = _affine_rates(flow, weight, xs, ys, cx, cy, safe)

    energy = mass / (h * w)
    peak = max(float(energy.max()), 1e-6)
    still = float(np.mean(energy < 0.15 * peak))
    level = float(np.mean(s[moving])) if moving.any() else 0.0
    speed_cv = float(np.std(energy) / (np.mean(energy) + 1e-6))
    vnorm = np.hypot(v[:, 0], v[:, 1])
    coherence = float(np.sum(vnorm * mass) / (np.sum(s * mass) + 1e-6))

    # Directions folded by |x|, |y|: flips and reversals map a class onto itself.
    pixel_dir = np.arctan2(np.abs(flow[..., 1]), np.abs(flow[..., 0]))
    pixel_hist = np.histogram(pixel_dir, bins=6, range=(0, np.pi / 2), weights=weight)[0]
    pixel_hist = pixel_hist / (pixel_hist.sum() + 1e-6)
    track_dir = np.arctan2(np.abs(v[:, 1]), np.abs(v[:, 0]))
    track_hist = np.histogram(track_dir, bins=4, range=(0, np.pi / 2), weights=vnorm * mass)[0]
    track_hist = track_hist / (track_hist.sum() + 1e-6)

    v_auto = _autocorrelation(v, _LAGS)
    vy_auto = _autocorrelation(v[:, 1:], _LAGS[:4])  # zigzag: the vertical swing flips every few frames
    div_auto = _autocorrelation((div - div.mean())[:, None], _LAGS)
    turning = _mean_turn(v, vnorm)

    rates = np.abs(np.stack([div, curl]))
    mean_rates = (rates * mass).sum(axis=1) / (mass.sum() + 1e-6)
    spin_sign = abs(float(np.sum(curl * mass))) / (float(np.sum(np.abs(curl) * mass)) + 1e-6)
    magnitude_hist = np.histogram(speed, bins=[0.3, 0.6, 1.0, 1.5, 2.2, 3.2, np.inf], weights=weight)[0]
    magnitude_hist = magnitude_hist / (magnitude_hist.sum() + 1e-6)
    span = [_travel(cx, moving), _travel(cy, moving)]
    area_mean = float(area.mean())
    area_cv = float(area[moving].std() / (area[moving].mean() + 1e-6)) if moving.any() else 0.0

    return np.concatenate([
        [np.log1p(level), np.log1p(float(energy.mean()) * 100), speed_cv, still, coherence, turning,
         np.log1p(mean_rates[0] * 10), np.log1p(mean_rates[1] * 10), spin_sign, float(div.std() * 10),
         np.log1p(span[0]), np.log1p(span[1]), np.log1p(area_mean * 100), area_cv],
        pixel_hist, track_hist, magnitude_hist, v_auto, vy_auto, div_auto,
    ]).astype(np.float32)


def _affine_rates(flow, weight, xs, ys, cx, cy, safe):
    """Divergence and curl [T] of a weighted least-squares affine fit of the flow about the centroid."""
    dx = xs[None] - cx[:, None, None]
    dy = ys[None] - cy[:, None, None]
    sxx = np.einsum("thw,thw,thw->t", weight, dx, dx) / safe
    syy = np.einsum("thw,thw,thw->t", weight, dy, dy) / safe
    sxy = np.einsum("thw,thw,thw->t", weight, dx, dy) / safe
    u, v = flow[..., 0], flow[..., 1]
    ux = np.einsum("thw,thw,thw->t", weight, u, dx) / safe
    uy = np.einsum("thw,thw,thw->t", weight, u, dy) / safe
    vx = np.einsum("thw,thw,thw->t", weight, v, dx) / safe
    vy = np.einsum("thw,thw,thw->t", weight, v, dy) / safe
    det = sxx * syy - sxy * sxy
    ok = det > 1e-3
    det = np.where(ok, det, 1.0)
    # Solve [[sxx, sxy], [sxy, syy]] @ [a_x, a_y] = [cov(f, dx), cov(f, dy)] for u and v.
    a11 = (ux * syy - uy * sxy) / det  # du/dx
    a12 = (uy * sxx - ux * sxy) / det  # du/dy
    a21 = (vx * syy - vy * sxy) / det  # dv/dx
    a22 = (vy * sxx - vx * sxy) / det  # dv/dy
    return np.where(ok, a11 + a22, 0.0), np.where(ok, a21 - a12, 0.0)


def _autocorrelation(series: np.ndarray, lags: Sequence[int]) -> np.ndarray:
    """Normalised autocorrelation of a vector series [T, C] at ``lags`` (dot products over C)."""
    energy = float(np.mean(np.sum(series * series, axis=1))) + 1e-6
    out = []
    for lag in lags:
        if lag < len(series):
            out.append(float(np.mean(np.sum(series[:-lag] * series[lag:], axis=1))) / energy)
        else:
            out.append(0.0)
    return np.array(out)


def _mean_turn(v: np.ndarray, vnorm: np.ndarray) -> float:
    """Mean absolute change of direction of the velocity between frames (0..pi), where it moves."""
    ok = (vnorm[:-1] > 0.2) & (vnorm[1:] > 0.2)
    if not ok.any():
        return 0.0
    cos = np.sum(v[:-1] * v[1:], axis=1) / (vnorm[:-1] * vnorm[1:] + 1e-6)
    return float(np.mean(np.arccos(np.clip(cos[ok], -1, 1))))


def _travel(centre: np.ndarray, moving: np.ndarray) -> float:
    """Standard deviation of the centroid coordinate over the frames with motion."""
    return float(centre[moving].std()) if moving.sum() > 1 else 0.0


# --------------------------------------------------------------------------------------------
# Features of many videos

def scene_only_features(paths: Sequence[str], *, num_frames: int = 3, workers: int = 0,
                        progress: bool = True) -> np.ndarray:
    """Scene-only features of each video: float32 [N, 41], the mean of :func:`scene_descriptor`
    over ``num_frames`` frames spread evenly over the video (the middle one when 1)."""
    return _map_videos(_scene_job, [(str(p), num_frames) for p in paths], workers, progress, "scene-only")


def motion_only_features(paths: Sequence[str], *, max_frames: int | None = None, method: str = "dis",
                         workers: int = 0, progress: bool = True) -> np.ndarray:
    """Motion-only features of each video: float32 [N, 46], :func:`motion_descriptor` of the optical
    flow (``vidssl.video.flow.optical_flow``) over the first ``max_frames`` frames (all by default)."""
    return _map_videos(_motion_job, [(str(p), max_frames, method) for p in paths], workers, progress,
                       "motion-only")


def _scene_job(job: tuple[str, int]) -> np.ndarray:
    from ..video.reader import VideoReader

    path, num_frames = job
    with VideoReader(path) as reader:
        n = reader.num_frames
        indices = [n // 2] if num_frames <= 1 else np.linspace(0, n - 1, num_frames + 2)[1:-1].round().astype(int)
        frames = reader.read(indices)
    return np.mean([scene_descriptor(f) for f in frames], axis=0)


def _motion_job(job: tuple[str, int | None, str]) -> np.ndarray:
    from ..video.flow import optical_flow
    from ..video.reader import VideoReader

    path, max_frames, method = job
    with VideoReader(path) as reader:
        n = reader.num_frames if max_frames is None else min(max_frames, reader.num_frames)
        frames = reader.read(np.arange(n))
    return motion_descriptor(optical_flow(frames, method=method))


def _map_videos(fn: Callable, jobs: list, workers: int, progress: bool, desc: str) -> np.ndarray:
    """``fn(job)`` for every job, in job order, stacked; in processes of
    :func:`vidssl.parallel.map_videos` when ``workers > 1`` (any failure raises, naming the video)."""
    from ..parallel import map_videos

    if not jobs:
        raise ValueError(f"{desc}: no videos given")
    position = {id(job): i for i, job in enumerate(jobs)}
    out: list = [None] * len(jobs)
    serial = workers <= 1 or len(jobs) < 2 * workers
    for job, error, row in map_videos(fn, jobs, 0 if serial else workers, desc=desc, progress=progress):
        if error is not None:
            raise RuntimeError(f"{desc}: {job[0]}: {error}")
        out[position[id(job)]] = row  # the very job objects come back, in completion order
    return np.stack(out).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Calibration rows

def standardise(gallery: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Z-score every feature with the gallery's mean and standard deviation; returns [gallery, *others]."""
    mean = gallery.mean(axis=0)
    std = gallery.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    return [((x - mean) / std).astype(np.float32) for x in (gallery, *others)]


def calibration_feature_sets(row: str, gallery, queries: Mapping[str, object], *, workers: int = 2,
                             progress: bool = True, **extractor_kwargs):
    """Features of a training-free row for a gallery catalog and named query catalogs.

    Each video is described once even when it is in several catalogs; every set is z-scored with
    the gallery's statistics (the descriptors mix units: fractions, pixels, frequencies).
    ``extractor_kwargs`` go to the row's extractor (e.g. ``max_frames`` for motion-only).
    Returns ``(gallery FeatureSet, {name: FeatureSet})`` ready for the retrieval / linear protocol.
    """
    from .features import FeatureSet

    extractors = {"scene-only": scene_only_features, "motion-only": motion_only_features}
    if row not in extractors:
        raise ValueError(f"unknown calibration row {row!r}; expected one of {CALIBRATION_ROWS}")
    catalogs = {"gallery": gallery, **queries}
    paths = sorted({r.path for c in catalogs.values() for r in c.records})
    position = {p: i for i, p in enumerate(paths)}
    features = extractors[row](paths, workers=workers, progress=progress, **extractor_kwargs)
    raw = {name: features[[position[r.path] for r in c.records]] for name, c in catalogs.items()}
    scaled = dict(zip(raw, standardise(raw["gallery"], *[raw[n] for n in queries])))
    sets = {name: FeatureSet(scaled[name], c.labels(), [r.path for r in c.records], meta={"row": row})
            for name, c in catalogs.items()}
    return sets.pop("gallery"), sets


def calibration_rows(root: str | os.PathLike, *, rows: Sequence[str] = CALIBRATION_ROWS,
                     splits: Sequence[int] = (1, 2), gallery_per_class: int | None = None,
                     ks: Sequence[int] = (1, 5, 10), workers: int = 2, progress: bool = True) -> dict:
    """Retrieval recall (%) of the training-free rows on a generated benchmark in UCF101 layout.

    For each split, the test list queries the train list (the gallery). ``gallery_per_class``
    keeps only the first that many train videos of each class (to save time; reported in the
    result). Returns ``{"scene-only": {"split1": {"R@1": ...}, ...}, ..., "gallery_size": {...},
    "query_size": {...}, "chance_R@1": ...}``. With ``workers > 1`` features are computed in
    spawned processes, so a script calling this needs an ``if __name__ == "__main__":`` guard.
    """
    from ..data.catalogs import Catalog, ucf101
    from .retrieval import retrieval_recall

    unknown = [r for r in rows if r not in CALIBRATION_ROWS]
    if unknown:
        raise ValueError(f"unknown calibration row(s) {unknown}; expected some of {CALIBRATION_ROWS}")
    catalogs = {}
    for split in splits:
        gallery = ucf101(root, split=split, subset="train")
        if gallery_per_class is not None:
            kept, seen = [], defaultdict(int)
            for record in gallery.records:
                if seen[record.label] < gallery_per_class:
                    kept.append(record)
                    seen[record.label] += 1
            gallery = Catalog(kept, gallery.classes, f"{gallery.name}-first{gallery_per_class}")
        catalogs[split] = (gallery, ucf101(root, split=split, subset="test"))
    result: dict = {"gallery_size": {}, "query_size": {}}
    # Splits 1 and 2 share their train list: describe each distinct gallery once.
    by_gallery: dict[tuple, list[int]] = defaultdict(list)
    for split, (gallery, _) in catalogs.items():
        by_gallery[tuple(r.path for r in gallery.records)].append(split)
    for row in rows:
        result[row] = {}
        for splits_here in by_gallery.values():
            gallery = catalogs[splits_here[0]][0]
            queries = {f"split{s}": catalogs[s][1] for s in splits_here}
            g, qs = calibration_feature_sets(row, gallery, queries, workers=workers, progress=progress)
            for name, q in qs.items():
                result[row][name] = retrieval_recall(q.features, q.labels, g.features, g.labels, ks)
                result["gallery_size"][name] = len(gallery)
                result["query_size"][name] = len(queries[name])
    result["chance_R@1"] = 100.0 / len(next(iter(catalogs.values()))[0].classes)
    return result
