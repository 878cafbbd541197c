"""Pictures of clips and of what lies on them: saliency and motion maps, flow and motion-vector fields.

Everything here is numpy in, numpy or encoded bytes out (PNG strips with the frames side by
side, animated GIFs), drawn with Pillow and matplotlib's colour maps and no display:

- :func:`overlay` blends a map in [0, 1] (a saliency map, a normalised motion map) over the
  frames with a colour map ("jet" as in the Grad-CAM paper's figures);
- :func:`flow_to_rgb` draws a displacement field (optical flow or the dense motion vectors of
  :func:`vidssl.video.read_compressed`, x then y, pixels) on the standard colour wheel, as
  OpenCV's flow tutorial does: hue = direction (right red, down yellow-green, left cyan, up
  violet, image y pointing down), value = magnitude, full saturation; :func:`color_wheel` is
  its legend;
- :func:`motion_overlay` is MCL's motion map (:func:`vidssl.video.flow.motion_map`) over the
  frames, so a picture of where the network looks sits next to one of where things move.
"""
from __future__ import annotations

import io

import cv2
import numpy as np

__all__ = ["colorize", "overlay", "flow_to_rgb", "color_wheel", "motion_overlay", "strip", "png_bytes",
           "gif_bytes", "enlarge"]


def colorize(maps: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Maps in [0, 1] (any shape) -> uint8 RGB (shape + (3,)) through a matplotlib colour map."""
    from matplotlib import colormaps

    maps = np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32)), 0.0, 1.0)
    return (colormaps[cmap](maps)[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(frames: np.ndarray, maps: np.ndarray, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend ``maps`` [T, H, W] in [0, 1] over uint8 RGB ``frames`` [T, H, W, 3]: uint8 [T, H, W, 3].

    ``alpha`` is the colour map's weight (0: the frames, 1: the map alone). A map of another
    size than the frames is resized to them (bilinear), e.g. a 64 px motion map on 56 px crops.
    """
    frames = _check_frames(frames)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 2:
        maps = np.broadcast_to(maps, (len(frames),) + maps.shape)
    if maps.ndim != 3 or len(maps) != len(frames):
        raise ValueError(f"maps must be [T, H, W] with T = {len(frames)} frames, got shape {maps.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    size = frames.shape[1:3]
    if maps.shape[1:] != size:
        maps = np.stack([cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for m in maps])
    blended = (1.0 - alpha) * frames.astype(np.float32) + alpha * colorize(maps, cmap).astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Displacement field [..., H, W, 2] (x, y) -> uint8 RGB [..., H, W, 3] on the colour wheel.

    Hue is the direction (OpenCV's ``cartToPolar`` angle in image coordinates, halved into
    OpenCV's 0-180 hue range), value the magnitude divided by ``max_magnitude`` (default: the
    largest magnitude in ``flow``, so a whole clip shares one scale), saturation full. Zero
    motion is black.
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim < 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be [..., H, W, 2] (x then y), got shape {flow.shape}")
    lead, (h, w) = flow.shape[:-3], flow.shape[-3:-1]
    fields = flow.reshape(-1, h, w, 2)
    magnitude, angle = cv2.cartToPolar(np.ascontiguousarray(fields[..., 0]).reshape(-1, w),
                                       np.ascontiguousarray(fields[..., 1]).reshape(-1, w), angleInDegrees=True)
    scale = float(magnitude.max()) if max_magnitude is None else float(max_magnitude)
    if scale < 0 or not np.isfinite(scale):
        raise ValueError(f"max_magnitude must be a non-negative number, got {max_magnitude!r}")
    hsv = np.empty(magnitude.shape + (3,), dtype=np.uint8)
    hsv[..., 0] = np.round(angle / 2.0).astype(np.int32) % 180
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(magnitude / scale * 255.0 + 0.5, 0, 255) if scale > 0 else 0
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return rgb.reshape(lead + (h, w, 3))


def color_wheel(size: int = 64) -> np.ndarray:
    """The legend of :func:`flow_to_rgb`: uint8 RGB [size, size, 3], each pixel coloured as a
    displacement from the centre to it (outside the unit circle: black)."""
    if size < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    r = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    field = np.stack([(xs - r) / r, (ys - r) / r], axis=-1)
    field[np.hypot(field[..., 0], field[..., 1]) > 1.0] = 0.0
    return flow_to_rgb(field, max_magnitude=1.0)


def motion_overlay(frames: np.ndarray, motion: np.ndarray, *, alpha: float = 0.6,
                   cmap: str = "inferno") -> np.ndarray:
    """Motion maps [T, H, W] (MCL eq. 1, any non-negative scale) over ``frames``, scaled by the
    clip's largest value (one scale for all frames, so a still frame stays dark)."""
    motion = np.asarray(motion, dtype=np.float32)
    top = float(motion.max()) if motion.size else 0.0
    return overlay(frames, motion / top if top > 0 else np.zeros_like(motion), alpha=alpha, cmap=cmap)


def enlarge(frames: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel repeated ``factor`` times in height and width (nearest neighbour: no blur)."""
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    return frames if factor == 1 else frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def strip(frames: np.ndarray, *, gap: int = 2, scale: int = 1, background: int = 255) -> np.ndarray:
    """Frames [T, H, W, 3] side by side, ``gap`` pixels apart: uint8 [H*scale, T*W*scale + gaps, 3]."""
    frames = enlarge(_check_frames(frames), scale)
    t, h, w, _ = frames.shape
    out = np.full((h, t * w + (t - 1) * gap, 3), background, dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[:, i * (w + gap):i * (w + gap) + w] = frame
    return out


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 RGB [H, W, 3] -> PNG file bytes."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def gif_bytes(frames: np.ndarray, *, fps: float = 8.0, scale: int = 1) -> bytes:
    """Frames [T, H, W, 3] -> an animated GIF that loops forever, ``fps`` frames a second."""
    from PIL import Image

    frames = enlarge(_check_frames(frames), scale)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    # disposal=1 keeps each full frame as drawn; GIF durations are whole milliseconds.
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(10, int(round(1000.0 / fps))), disposal=1)
    return buffer.getvalue()


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 RGB [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}")
    return frames
