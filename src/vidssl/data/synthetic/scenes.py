"""Procedural scene families: backgrounds recognisable from any single frame.

There are as many families as motion classes, so a scene can stand in for a class: in the
biased train list a video's scene family equals its class index with probability ``rho``
(the scene shortcut a network can learn instead of motion). Each family has random colours,
frequencies, orientations and phases, so only the *kind* of pattern identifies it.

A pattern is a function of world coordinates with values in [0, 1]; the renderer maps it
between two colours whose luminance differs by the preset's ``background_contrast`` (0.6 by
default, 0.4 in the demo preset: moderate, so the moving object, drawn much darker or brighter
than any background, stays visible). Because patterns
are functions of continuous coordinates, a camera pan is just a shift of those coordinates.

Lengths are in 64-px reference pixels times ``unit``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["SCENES", "BACKGROUND_CONTRAST", "sample_scene", "scene_pattern", "sample_palette"]

SCENES: tuple[str, ...] = ("Stripes", "Checkerboard", "Gradient", "Blobs", "Dots", "Waves", "Rings", "Sunburst")
BACKGROUND_CONTRAST = 0.6
_LUMA = np.array([0.299, 0.587, 0.114])


def sample_scene(name: str, rng: np.random.Generator, *, size: int, unit: float) -> dict:
    """Random parameters of one ``name`` pattern for a ``size`` x ``size`` frame (JSON-friendly)."""
    _check_name(name)
    theta = float(rng.uniform(0, math.pi))
    phase = float(rng.uniform(0, 2 * math.pi))
    centre = [float(v) for v in rng.uniform(0.2 * size, 0.8 * size, size=2)]
    if name == "Stripes":  # hard-edged straight bands
        return {"theta": theta, "period": float(rng.uniform(9, 16)) * unit, "phase": phase}
    if name == "Checkerboard":
        return {"theta": theta, "cell": float(rng.uniform(6, 11)) * unit,
                "offset": [float(v) for v in rng.uniform(0, 20 * unit, size=2)]}
    if name == "Gradient":  # one smooth ramp across the whole frame
        return {"theta": float(rng.uniform(0, 2 * math.pi)), "length": float(rng.uniform(0.8, 1.3)) * size,
                "centre": centre}
    if name == "Blobs":  # smooth noise: Gaussian bumps of both signs over an area larger than the frame
        count = 14
        return {"x": [float(v) for v in rng.uniform(-0.3 * size, 1.3 * size, count)],
                "y": [float(v) for v in rng.uniform(-0.3 * size, 1.3 * size, count)],
                "sigma": [float(v) for v in rng.uniform(5, 10, count) * unit],
                "sign": [float(v) for v in rng.choice([-1.0, 1.0], count)]}
    if name == "Dots":  # a rotated lattice of round dots
        return {"theta": theta, "spacing": float(rng.uniform(9, 14)) * unit,
                "radius_frac": float(rng.uniform(0.25, 0.35)),
                "offset": [float(v) for v in rng.uniform(0, 20 * unit, size=2)]}
    if name == "Waves":  # soft bands bent by a slower sinusoid
        return {"theta": theta, "period": float(rng.uniform(9, 14)) * unit, "phase": phase,
                "bend": float(rng.uniform(3, 5)) * unit, "bend_period": float(rng.uniform(24, 40)) * unit,
                "bend_phase": float(rng.uniform(0, 2 * math.pi))}
    if name == "Rings":  # concentric soft rings around a point inside the frame
        return {"centre": centre, "period": float(rng.uniform(8, 13)) * unit, "phase": phase}
    # Sunburst: hard-edged sectors around a point inside the frame
    return {"centre": centre, "spokes": int(rng.integers(5, 10)), "phase": phase}


def scene_pattern(name: str, p: dict, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Pattern values in [0, 1] at world coordinates ``xs`` and ``ys`` (broadcastable, e.g. [T,1,W], [T,H,1])."""
    _check_name(name)
    if name == "Stripes":
        u, _ = _rotate(xs, ys, p["theta"])
        return _hard(np.sin(2 * math.pi * u / p["period"] + p["phase"]))
    if name == "Checkerboard":
        u, v = _rotate(xs + p["offset"][0], ys + p["offset"][1], p["theta"])
        return _hard(np.sin(math.pi * u / p["cell"]) * np.sin(math.pi * v / p["cell"]), gain=6.0)
    if name == "Gradient":
        u, _ = _rotate(xs - p["centre"][0], ys - p["centre"][1], p["theta"])
        return np.clip(0.5 + u / p["length"], 0.0, 1.0)
    if name == "Blobs":
        total = 0.0
        for x, y, sigma, sign in zip(p["x"], p["y"], p["sigma"], p["sign"]):
            # Separable Gaussian: [T,1,W] x [T,H,1] outer products instead of T*H*W exps.
            total = total + sign * np.exp(-0.5 * ((xs - x) / sigma) ** 2) * np.exp(-0.5 * ((ys - y) / sigma) ** 2)
        return 0.5 + 0.5 * np.tanh(2.0 * total)
    if name == "Dots":
        u, v = _rotate(xs + p["offset"][0], ys + p["offset"][1], p["theta"])
        s = p["spacing"]
        du, dv = np.mod(u, s) - s / 2, np.mod(v, s) - s / 2
        distance = np.sqrt(du * du + dv * dv)
        return np.clip(0.5 + (p["radius_frac"] * s - distance) / 1.2, 0.0, 1.0)  # ~1 px soft edge
    if name == "Waves":
        u, v = _rotate(xs, ys, p["theta"])
        bent = u + p["bend"] * np.sin(2 * math.pi * v / p["bend_period"] + p["bend_phase"])
        return 0.5 + 0.5 * np.sin(2 * math.pi * bent / p["period"] + p["phase"])
    if name == "Rings":
        r = np.sqrt((xs - p["centre"][0]) ** 2 + (ys - p["centre"][1]) ** 2)
        return 0.5 + 0.5 * np.sin(2 * math.pi * r / p["period"] + p["phase"])
    angle = np.arctan2(ys - p["centre"][1], xs - p["centre"][0])
    return _hard(np.sin(p["spokes"] * angle + p["phase"]), gain=4.0)


def sample_palette(rng: np.random.Generator, contrast: float = BACKGROUND_CONTRAST) -> list[list[float]]:
    """Two random RGB colours in [0, 1] whose luminances differ by about ``contrast``, in random order."""
    middle = float(rng.uniform(0.45, 0.55))
    colours = [_tinted(rng, middle - contrast / 2, 0.12), _tinted(rng, middle + contrast / 2, 0.12)]
    if rng.random() < 0.5:
        colours.reverse()
    return colours


def _tinted(rng: np.random.Generator, luminance: float, tint: float) -> list[float]:
    """A colour of the given luminance with a random hue: a luminance-neutral tint added to grey."""
    offset = rng.uniform(-tint, tint, size=3)
    offset -= _LUMA @ offset  # keep the luminance
    return [float(v) for v in np.clip(luminance + offset, 0.0, 1.0)]


def _rotate(xs: np.ndarray, ys: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(theta), math.sin(theta)
    return xs * c + ys * s, -xs * s + ys * c


def _hard(wave: np.ndarray, gain: float = 3.0) -> np.ndarray:
    """A sinusoid squashed into nearly square bands with a soft, anti-aliased edge."""
    return np.clip(0.5 + gain * wave, 0.0, 1.0)


def _check_name(name: str) -> None:
    if name not in SCENES:
        raise ValueError(f"unknown scene family {name!r}; expected one of {SCENES}")
