"""The foreground object (and the static distractor): random shape, colour and size.

Appearance is drawn independently of the class. Every object carries an off-centre "eye"
in the opposite luminance, so no shape is rotationally symmetric and a spin is visible
whatever the shape. Objects are much darker or much brighter than any background (whose
luminance stays within about 0.2-0.8) and have a thin outline of the opposite luminance,
so they stay visible on every scene, also in the grayscale frames optical flow works on.

Drawing uses OpenCV's anti-aliased polygon filling at 1/16 px precision, so sub-pixel motion
renders as smooth intensity changes rather than 1-px jumps.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["SHAPES", "RADIUS_RANGE", "sample_object", "draw_object"]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "pentagon", "star", "hexagon", "cross", "ellipse")
RADIUS_RANGE = (8.0, 12.0)  # 64-px reference pixels
_SHIFT = 4  # cv2 fractional bits: vertices at 1/16 px
_EYE_OFFSET, _EYE_RADIUS = 0.45, 0.3  # fractions of the object radius


def _regular(k: int, start: float = 0.0) -> np.ndarray:
    a = start + 2 * math.pi * np.arange(k) / k
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    a = math.pi / 2 + math.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _cross(arm: float = 0.38) -> np.ndarray:
    a = arm
    return np.array([[a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a],
                     [-a, -a], [-a, -1]], dtype=float)


# Unit polygons (radius ~1), scaled so every shape covers a similar area.
_POLYGONS: dict[str, np.ndarray] = {
    "circle": _regular(40),
    "square": _regular(4, math.pi / 4) * 1.1,
    "triangle": _regular(3, -math.pi / 2) * 1.25,
    "pentagon": _regular(5, -math.pi / 2),
    "star": _star() * 1.25,
    "hexagon": _regular(6),
    "cross": _cross() * 1.05,
    "ellipse": _regular(40) * np.array([1.2, 0.7]),
}
_EYE = _regular(16) * _EYE_RADIUS + np.array([_EYE_OFFSET, 0.0])


def sample_object(rng: np.random.Generator, *, unit: float, radius_range: tuple[float, float] = RADIUS_RANGE) -> dict:
    """Random shape, colour and radius (pixels) of one object (JSON-friendly)."""
    bright = bool(rng.random() < 0.5)
    # Extreme luminance with a random tint; the eye and outline take the opposite extreme.
    if bright:
        body = 1.0 - rng.uniform(0.0, 0.3, size=3) * np.array([1, 0.5, 1])
        other = rng.uniform(0.0, 0.1, size=3)
    else:
        body = rng.uniform(0.0, 0.25, size=3) * np.array([1, 0.5, 1])
        other = 1.0 - rng.uniform(0.0, 0.1, size=3)
    return {"shape": str(rng.choice(SHAPES)), "radius": float(rng.uniform(*radius_range)) * unit,
            "colour": [float(v) for v in body], "detail": [float(v) for v in other]}


def draw_object(frames: np.ndarray, obj: dict, x: np.ndarray, y: np.ndarray, scale: np.ndarray | None = None,
                angle: np.ndarray | None = None) -> None:
    """Composite ``obj`` onto float32 RGB ``frames`` [T, H, W, 3] in place, centred at (x[t], y[t]) px.

    ``scale`` (x radius) and ``angle`` (radians) are per frame too; scalars broadcast.
    """
    num_frames, height, width = frames.shape[:3]
    x, y = np.broadcast_to(x, (num_frames,)), np.broadcast_to(y, (num_frames,))
    radius = obj["radius"] * np.broadcast_to(1.0 if scale is None else scale, (num_frames,))
    angle = np.broadcast_to(0.0 if angle is None else angle, (num_frames,))
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2) * radius[:, None, None]  # [T, 2, 2]
    centre = np.stack([x, y], -1)[:, None, :]
    body = _fixed_point(np.einsum("kj,tij->tki", _POLYGONS[obj["shape"]], rotation) + centre)
    eye = _fixed_point(np.einsum("kj,tij->tki", _EYE, rotation) + centre)
    # Coverage masks of every frame first (cheap OpenCV calls), then one vectorised blend per
    # layer: per-frame compositing in Python would cost more than everything else together.
    fill, outline, pupil = (np.zeros((num_frames, height, width), np.uint8) for _ in range(3))
    for t in range(num_frames):
        cv2.fillPoly(fill[t], [body[t]], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
        cv2.polylines(outline[t], [body[t]], True, 255, thickness=1, lineType=cv2.LINE_AA, shift=_SHIFT)
        cv2.fillPoly(pupil[t], [eye[t]], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
    colour, detail = np.asarray(obj["colour"], np.float32), np.asarray(obj["detail"], np.float32)
    pixels = frames.reshape(-1, 3)  # a view: frames must be contiguous
    covered = np.flatnonzero((fill | outline | pupil).reshape(-1))  # a few percent of the pixels
    patch = pixels[covered]
    for mask, paint in ((fill, colour), (outline, detail), (pupil, detail)):
        alpha = mask.reshape(-1)[covered, None].astype(np.float32) * np.float32(1 / 255)
        patch += alpha * (paint - patch)
    pixels[covered] = patch


def _fixed_point(points: np.ndarray) -> np.ndarray:
    """Vertices in OpenCV's fixed-point format (``_SHIFT`` fractional bits), int32."""
    return np.round(points * (1 << _SHIFT)).astype(np.int32)
