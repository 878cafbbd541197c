"""Optical flow, motion boundaries and motion maps (MCL, Li et al. ICCV 2021, section 3.1).

Flow is computed between consecutive frames with OpenCV contrib on grayscale images:

- ``"dis"`` (default): Dense Inverse Search (Kroeger et al. 2016), tuned for small frames:
  the ULTRAFAST preset (no variational refinement) with 6x6 patches every 4 px, refined down
  to half resolution (full resolution below 96 px). OpenCV's presets stop at 1/4 resolution,
  where a patch covers a whole object of a 112x112 clip and blurs its motion (about 1 px of
  error on a 16 px object); these settings keep it near 0.2 px and match TV-L1's end-point
  error on the generated benchmark (``benchmarks/bench_motion.py``) at two orders of
  magnitude less time, which makes flow over a whole dataset affordable.
- ``"tvl1"``: Dual TV-L1, the papers' choice (MCL eq. 1 is defined on TV-L1 flow).

The motion map of MCL eq. (1) is the magnitude of the motion boundaries (the x and y derivatives
of both flow components, Dalal et al. 2006), which ignores uniform camera motion. ST-, S- and
T-motion of eq. (2) are the stacked map and its temporal / spatial average pools.

Every function that takes ``flow`` works on any dense displacement field [T, H, W, 2] (x then
y), in particular on the dense motion-vector maps of :func:`vidssl.video.read_compressed`: that
is the cheap path to motion maps for datasets where optical flow is too expensive.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "FLOW_METHODS",
    "optical_flow",
    "flow_pairs",
    "motion_boundaries",
    "motion_map",
    "st_motion",
    "s_motion",
    "t_motion",
]

FLOW_METHODS = ("dis", "tvl1")


def _flow_estimator(method: str, shape: tuple[int, int] = (112, 112)):
    """One OpenCV estimator per call (creating it per pair would dominate DIS's cost).

    DIS works from coarse to fine down to its finest pyramid level: half resolution for
    frames of 96 px and more (8 gradient-descent iterations per level suffice there), full
    resolution below, where half resolution leaves too few pixels per patch (and 12
    iterations, the preset's count, are needed to converge on 2-3 px motions at 64 px).
    """
    if method == "dis":
        half = min(shape) >= 96
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        dis.setFinestScale(1 if half else 0)
        dis.setPatchSize(6)
        dis.setPatchStride(4)
        dis.setGradientDescentIterations(8 if half else 12)
        return dis
    if method == "tvl1":
        return cv2.optflow.DualTVL1OpticalFlow_create()
    raise ValueError(f"unknown optical flow method {method!r}; expected one of {FLOW_METHODS}")


def optical_flow(frames: np.ndarray, method: str = "dis") -> np.ndarray:
    """Forward optical flow of a clip: float32 [T, H, W, 2] (x then y, pixels).

    ``flow[t]`` maps frame ``t`` to frame ``t + 1`` (``frames[t](p) ~ frames[t+1](p + flow[t](p))``),
    so an object moving right by 3 px per frame reads +3. Following MCL section 3.1 the last frame
    has no successor and repeats the previous flow; a single frame has no motion (zeros).

    Args:
        frames: uint8 RGB frames [T, H, W, 3] (or grayscale [T, H, W]).
        method: ``"dis"`` (default, fast) or ``"tvl1"`` (the papers' TV-L1).
    """
    frames = _check_frames(frames)
    num_frames = len(frames)
    if num_frames < 2:
        _flow_estimator(method)  # still reject an unknown method
        return np.zeros(frames.shape[:3] + (2,), dtype=np.float32)
    flow = np.empty(frames.shape[:3] + (2,), dtype=np.float32)
    flow[:-1] = flow_pairs(frames[:-1], frames[1:], method)
    flow[-1] = flow[-2]  # MCL 3.1: (u_N, v_N) = (u_{N-1}, v_{N-1})
    return flow


def flow_pairs(first: np.ndarray, second: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow from ``first[i]`` to ``second[i]`` for each pair: float32 [P, H, W, 2].

    Each pair is computed on its own (no flow carried between pairs), so the flow of frame t
    does not depend on which other frames are computed with it: a clip's flow equals the same
    frames' slice of the whole video's flow, which is what lets the cache and on-the-fly
    computation agree.
    """
    first, second = _check_frames(first), _check_frames(second)
    if first.shape != second.shape:
        raise ValueError(f"flow_pairs needs frames of equal shape, got {first.shape} and {second.shape}")
    estimator = _flow_estimator(method, first.shape[1:3])
    out = np.empty(first.shape[:3] + (2,), dtype=np.float32)
    for i, (a, b) in enumerate(zip(first, second)):
        out[i] = estimator.calc(_gray(a), _gray(b), None)
    return out


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] != 3):
        raise ValueError(f"optical flow expects uint8 frames [T, H, W, 3] or [T, H, W], "
                         f"got {frames.dtype} {frames.shape}")
    return frames


def _gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _check_field(flow: np.ndarray) -> np.ndarray:
    flow = np.asarray(flow)
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(f"expected a displacement field [T, H, W, 2], got shape {flow.shape}")
    return flow.astype(np.float32, copy=False)


def _derivatives(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y derivatives of both flow components, each float32 [T, H, W, 2].

    ``numpy.gradient``'s definition (central differences inside, one-sided on the border)
    written with slices, which is several times faster; an axis of length 1 has derivative 0.
    """
    gx = np.zeros_like(flow)
    gy = np.zeros_like(flow)
    for axis, out in ((2, gx), (1, gy)):
        if flow.shape[axis] < 2:
            continue
        f, d = np.moveaxis(flow, axis, 0), np.moveaxis(out, axis, 0)  # views: differentiate along axis 0
        np.subtract(f[2:], f[:-2], out=d[1:-1])
        d[1:-1] *= np.float32(0.5)
        np.subtract(f[1], f[0], out=d[0])
        np.subtract(f[-1], f[-2], out=d[-1])
    return gx, gy


def motion_boundaries(flow: np.ndarray) -> np.ndarray:
    """Motion boundaries (du/dx, du/dy, dv/dx, dv/dy): float32 [T, H, W, 4] (MCL section 3.1).

    Derivatives are central differences ``(f(x+1) - f(x-1)) / 2`` inside the image and one-sided
    differences on its border (``numpy.gradient``'s definition), so a uniform field (pure camera
    translation) has no boundary anywhere.
    """
    gx, gy = _derivatives(_check_field(flow))
    return np.stack([gx[..., 0], gy[..., 0], gx[..., 1], gy[..., 1]], axis=-1)


def motion_map(flow: np.ndarray) -> np.ndarray:
    """Motion map of MCL eq. (1): float32 [T, H, W], the L2 norm of the four motion boundaries.

    ``m = sqrt((du/dx)^2 + (du/dy)^2 + (dv/dx)^2 + (dv/dy)^2)``; high on the edges of objects
    that move relative to their surroundings, zero under uniform (camera) motion. Works on
    optical flow and on dense motion-vector maps alike. Computed a few frames at a time so
    the intermediate arrays stay in cache.
    """
    flow = _check_field(flow)
    out = np.empty(flow.shape[:3], dtype=np.float32)
    for start in range(0, len(flow), 8):
        gx, gy = _derivatives(flow[start:start + 8])
        gx *= gx
        gy *= gy
        gx += gy
        chunk = out[start:start + 8]
        np.add(gx[..., 0], gx[..., 1], out=chunk)
        np.sqrt(chunk, out=chunk)
    return out


def st_motion(motion: np.ndarray) -> np.ndarray:
    """ST-motion of MCL eq. (2): the motion maps of all frames stacked, [N, H, W].

    Accepts either motion maps [N, H, W] or a displacement field [N, H, W, 2] (converted with
    :func:`motion_map` first).
    """
    motion = np.asarray(motion)
    if motion.ndim == 4:
        return motion_map(motion)
    if motion.ndim != 3:
        raise ValueError(f"expected motion maps [N, H, W] or a flow field [N, H, W, 2], got {motion.shape}")
    return motion.astype(np.float32, copy=False)


def s_motion(motion: np.ndarray) -> np.ndarray:
    """S-motion of MCL eq. (2): ``P_t(m^ST)``, the temporal average pool, [H, W]."""
    return st_motion(motion).mean(axis=0)


def t_motion(motion: np.ndarray) -> np.ndarray:
    """T-motion of MCL eq. (2): ``P_s(m^ST)``, the spatial average pool, [N]."""
    return st_motion(motion).mean(axis=(1, 2))
