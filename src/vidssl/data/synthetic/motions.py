"""The eight motion classes of the embedded benchmark: one trajectory function per class.

Every class is a motion pattern that survives a horizontal flip (a flipped orbit is still an
orbit, a flipped spin is still a spin), so flip augmentation never changes a label. Each class
has its own natural tempo: the rates below are multiplied by a per-video ``tempo`` drawn from
[0.8, 1.2] (+-20 %), so a clip played 2x or 3x faster lies outside the natural range of its
class and is recognisably faster (pace prediction, Wang et al. ECCV 2020, depends on it).

Rates at tempo 1, in pixels of a 64 x 64 frame (they scale with the frame size):

=================  ===================================================================
HorizontalBounce   x bounces between the borders at 1.25 px/frame, y fixed
VerticalBounce     y bounces between the borders at 1.0 px/frame, x fixed
Orbit              circle of radius 7-10 px at 2 pi / 36 rad/frame, direction random
ZigZag             x bounces at 0.75 px/frame while y swings +-5 px every 10 frames
ScalePulse         in place, size x (1 +- 0.35) with a period of 16 frames
Spin               in place, rotation 2 pi / 24 rad/frame, direction random
Jitter             in place, random steps of 1.3 px (std per axis) pulled back to an anchor
StopAndGo          2.0 px/frame in a random direction for 8 frames, then 8 frames still
=================  ===================================================================

A trajectory is the object's centre, scale and rotation per frame in image pixels, before
any camera pan (the renderer adds the pan). ``box`` is the range the centre may take so
the whole object stays in the frame; bouncing classes reflect off its edges.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CLASSES", "IN_PLACE", "PULSE_AMPLITUDE", "TEMPO_RANGE", "Trajectory", "sample_motion",
           "trajectory", "natural_speed"]

CLASSES: tuple[str, ...] = ("HorizontalBounce", "VerticalBounce", "Orbit", "ZigZag", "ScalePulse", "Spin",
                            "Jitter", "StopAndGo")
IN_PLACE = frozenset({"ScalePulse", "Spin", "Jitter"})
TEMPO_RANGE = (0.8, 1.2)
PULSE_AMPLITUDE = 0.35  # ScalePulse: relative size change; the renderer leaves room for it

# Natural rates at tempo 1 (lengths in 64-px reference pixels, times in frames).
_BOUNCE_SPEED = {"HorizontalBounce": 1.25, "VerticalBounce": 1.0}
_ORBIT_RADIUS = (7.0, 10.0)
_ORBIT_PERIOD = 36.0
_ZIGZAG_SPEED, _ZIGZAG_AMPLITUDE, _ZIGZAG_PERIOD = 0.75, 5.0, 10.0
_PULSE_PERIOD = 16.0
_SPIN_PERIOD = 24.0
_JITTER_STEP, _JITTER_PULL = 1.3, 0.2
_STOP_GO_SPEED, _STOP_GO_PERIOD, _STOP_GO_MOVING = 2.0, 16.0, 0.5


@dataclass(frozen=True)
class Trajectory:
    """Per-frame object state: centre ``x``, ``y`` (pixels), ``scale`` (x radius), ``angle`` (radians)."""

    x: np.ndarray
    y: np.ndarray
    scale: np.ndarray
    angle: np.ndarray


Box = tuple[float, float, float, float]  # x_lo, x_hi, y_lo, y_hi


def natural_speed(name: str, tempo: float, unit: float = 1.0) -> float:
    """Typical speed of a class's object in px/frame while it moves (rotation and pulsing: of its rim
    at radius 10 px); recorded in the manifest."""
    speeds = {
        "HorizontalBounce": _BOUNCE_SPEED["HorizontalBounce"],
        "VerticalBounce": _BOUNCE_SPEED["VerticalBounce"],
        "Orbit": 2 * math.pi * sum(_ORBIT_RADIUS) / 2 / _ORBIT_PERIOD,
        "ZigZag": math.hypot(_ZIGZAG_SPEED, 4 * _ZIGZAG_AMPLITUDE / _ZIGZAG_PERIOD),
        "ScalePulse": 2 * math.pi * PULSE_AMPLITUDE * 10.0 / _PULSE_PERIOD,
        "Spin": 2 * math.pi * 10.0 / _SPIN_PERIOD,
        "Jitter": _JITTER_STEP * math.sqrt(math.pi / 2),  # mean length of a 2-D normal step
        "StopAndGo": _STOP_GO_SPEED,
    }
    _check_name(name)
    return speeds[name] * tempo * unit


def sample_motion(name: str, rng: np.random.Generator, *, box: Box, unit: float, tempo: float) -> dict:
    """Random parameters of one ``name`` trajectory whose centre stays inside ``box``.

    All values are plain floats/ints so they can go into a JSON manifest.
    """
    _check_name(name)
    x_lo, x_hi, y_lo, y_hi = box
    sign = float(rng.choice([-1.0, 1.0]))
    x0, y0 = float(rng.uniform(x_lo, x_hi)), float(rng.uniform(y_lo, y_hi))
    angle = float(rng.uniform(0, 2 * math.pi))
    phase = float(rng.uniform(0, 1))
    p: dict = {"box": [float(v) for v in box], "angle": angle}
    if name in _BOUNCE_SPEED:
        p.update(x0=x0, y0=y0, velocity=sign * _BOUNCE_SPEED[name] * unit * tempo)
    elif name == "Orbit":
        fit = min(x_hi - x_lo, y_hi - y_lo) / 2
        radius = min(float(rng.uniform(*_ORBIT_RADIUS)) * unit, max(fit, 0.0))
        p.update(cx=_inside(rng, x_lo, x_hi, radius), cy=_inside(rng, y_lo, y_hi, radius), radius=radius,
                 omega=sign * 2 * math.pi / _ORBIT_PERIOD * tempo, phase=2 * math.pi * phase)
    elif name == "ZigZag":
        amplitude = min(_ZIGZAG_AMPLITUDE * unit, max((y_hi - y_lo) / 2, 0.0))
        p.update(x0=x0, yc=_inside(rng, y_lo, y_hi, amplitude), velocity=sign * _ZIGZAG_SPEED * unit * tempo, amplitude=amplitude,
                 period=_ZIGZAG_PERIOD / tempo, phase=phase)
    elif name == "ScalePulse":
        p.update(x0=x0, y0=y0, period=_PULSE_PERIOD / tempo, phase=phase)
    elif name == "Spin":
        p.update(x0=x0, y0=y0, omega=sign * 2 * math.pi / _SPIN_PERIOD * tempo)
    elif name == "Jitter":
        p.update(x0=x0, y0=y0, step=_JITTER_STEP * unit * tempo, seed=int(rng.integers(2**31)))
    else:  # StopAndGo
        p.update(x0=x0, y0=y0, speed=_STOP_GO_SPEED * unit * tempo, heading=float(rng.uniform(0, 2 * math.pi)),
                 period=_STOP_GO_PERIOD / tempo, phase=phase)
    return p


def trajectory(name: str, p: dict, num_frames: int) -> Trajectory:
    """The object's state in each of ``num_frames`` frames for class ``name`` with parameters ``p``."""
    _check_name(name)
    t = np.arange(num_frames, dtype=np.float64)
    x_lo, x_hi, y_lo, y_hi = p["box"]
    ones = np.ones_like(t)
    scale, angle = ones.copy(), ones * p["angle"]
    if name == "HorizontalBounce":
        x, y = _reflect(p["x0"] + p["velocity"] * t, x_lo, x_hi), ones * p["y0"]
    elif name == "VerticalBounce":
        x, y = ones * p["x0"], _reflect(p["y0"] + p["velocity"] * t, y_lo, y_hi)
    elif name == "Orbit":
        theta = p["phase"] + p["omega"] * t
        x, y = p["cx"] + p["radius"] * np.cos(theta), p["cy"] + p["radius"] * np.sin(theta)
    elif name == "ZigZag":
        x = _reflect(p["x0"] + p["velocity"] * t, x_lo, x_hi)
        y = p["yc"] + p["amplitude"] * _triangle(t / p["period"] + p["phase"])
    elif name == "ScalePulse":
        x, y = ones * p["x0"], ones * p["y0"]
        scale = 1.0 + PULSE_AMPLITUDE * np.sin(2 * math.pi * (t / p["period"] + p["phase"]))
    elif name == "Spin":
        x, y = ones * p["x0"], ones * p["y0"]
        angle = p["angle"] + p["omega"] * t
    elif name == "Jitter":
        x, y = _jitter(p, num_frames)
    else:  # StopAndGo: distance grows only in the moving part of each cycle
        cycle = t / p["period"] + p["phase"]
        moving = np.minimum(np.mod(cycle, 1.0), _STOP_GO_MOVING) + np.floor(cycle) * _STOP_GO_MOVING
        distance = (moving - moving[0]) * p["period"] * p["speed"]
        x = _reflect(p["x0"] + math.cos(p["heading"]) * distance, x_lo, x_hi)
        y = _reflect(p["y0"] + math.sin(p["heading"]) * distance, y_lo, y_hi)
    return Trajectory(x=np.asarray(x, float), y=np.asarray(y, float), scale=scale, angle=angle)


def _inside(rng: np.random.Generator, lo: float, hi: float, margin: float) -> float:
    """A uniform point of [lo + margin, hi - margin], or the middle when that range is empty."""
    return float(rng.uniform(lo + margin, hi - margin)) if hi - lo > 2 * margin else (lo + hi) / 2


def _jitter(p: dict, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    # A random walk pulled back towards its anchor (discrete Ornstein-Uhlenbeck): unlike
    # independent offsets, displacement grows with the time step, so faster playback shows.
    x_lo, x_hi, y_lo, y_hi = p["box"]
    steps = np.random.default_rng(p["seed"]).normal(0.0, p["step"], size=(num_frames, 2))
    pos = np.empty((num_frames, 2))
    anchor = np.array([p["x0"], p["y0"]])
    pos[0] = anchor
    for i in range(1, num_frames):
        pos[i] = pos[i - 1] + steps[i] - _JITTER_PULL * (pos[i - 1] - anchor)
        pos[i] = np.clip(pos[i], [x_lo, y_lo], [x_hi, y_hi])
    return pos[:, 0], pos[:, 1]


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold positions into [lo, hi] as a ball bouncing between two walls."""
    span = hi - lo
    if span <= 1e-6:
        return np.full_like(x, (lo + hi) / 2)
    y = np.mod(x - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


def _triangle(phase: np.ndarray) -> np.ndarray:
    """Triangle wave of period 1 in [-1, 1]."""
    return 4 * np.abs(np.mod(phase, 1.0) - 0.5) - 1


def _check_name(name: str) -> None:
    if name not in CLASSES:
        raise ValueError(f"unknown motion class {name!r}; expected one of {CLASSES}")
