"""Rendering one benchmark video from its specification: scene, pan, distractor, moving object.

The scene is a pattern of world coordinates; a camera pan shifts the world by ``pan * t``
pixels in frame ``t``, moving the background, the distractor and the object's trajectory
together, so subtracting the dominant (median) flow leaves exactly the class motion.
"""
from __future__ import annotations

import cv2
import numpy as np

from .motions import trajectory
from .objects import draw_object
from .plan import VideoSpec
from .scenes import scene_pattern

__all__ = ["render_video", "camera_shift"]


def camera_shift(spec: VideoSpec) -> np.ndarray:
    """World-to-image shift per frame, float [T, 2] (x, y) pixels; zeros without a pan."""
    t = np.arange(spec.num_frames, dtype=np.float64)[:, None]
    pan = np.zeros(2) if spec.pan is None else np.asarray(spec.pan, dtype=np.float64)
    return t * pan


def render_video(spec: VideoSpec) -> np.ndarray:
    """The frames of ``spec``: uint8 RGB [T, H, W, 3]."""
    size, num_frames = spec.size, spec.num_frames
    shift = camera_shift(spec)
    pixels = np.arange(size, dtype=np.float32)  # pixel centres at integer coordinates, as cv2 draws
    shift32 = shift.astype(np.float32)
    xs = pixels[None, None, :] - shift32[:, 0, None, None]  # [T, 1, W] world x seen by each column
    ys = pixels[None, :, None] - shift32[:, 1, None, None]  # [T, H, 1]
    pattern = scene_pattern(spec.scene, spec.scene_params, xs, ys).astype(np.float32)  # [T, H, W]
    dark, light = spec.palette
    frames = np.empty(pattern.shape + (3,), np.float32)
    for c in range(3):  # per channel: broadcasting over a trailing axis of 3 is several times slower
        np.multiply(pattern, np.float32(light[c] - dark[c]), out=frames[..., c])
        frames[..., c] += np.float32(dark[c])

    path = trajectory(spec.motion, spec.motion_params, num_frames)
    if spec.distractor is not None:  # static in the world: moves with the camera only
        d = spec.distractor
        draw_object(frames, d, d["x"] + shift[:, 0], d["y"] + shift[:, 1], None, d["angle"])
    draw_object(frames, spec.obj, path.x + shift[:, 0], path.y + shift[:, 1], path.scale, path.angle)
    # Scale, round and saturate to uint8 in one OpenCV pass (values are never negative).
    return cv2.convertScaleAbs(frames.reshape(num_frames * size, -1), alpha=255.0).reshape(frames.shape)
