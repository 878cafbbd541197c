"""Optical flow on known motion, and the motion maps of MCL eq. (1) and (2)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vidssl.video.flow import (
    flow_pairs,
    motion_boundaries,
    motion_map,
    optical_flow,
    s_motion,
    st_motion,
    t_motion,
)

SIZE, OBJ = 64, 20


def moving_square(dx: int, dy: int, frames: int = 4, seed: int = 0) -> np.ndarray:
    """A textured square moving (dx, dy) px per frame over a static textured background."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), (5, 5), 1.2)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (OBJ, OBJ, 3), dtype=np.uint8), (3, 3), 0.8)
    out = np.repeat(background[None], frames, axis=0)
    for t in range(frames):
        y, x = 16 + dy * t, 12 + dx * t
        out[t, y:y + OBJ, x:x + OBJ] = texture
    return out


@pytest.mark.parametrize("method,tolerance", [("dis", 0.35), ("tvl1", 0.2)])
def test_flow_recovers_known_motion(method, tolerance):
    dx, dy = 2, 1
    frames = moving_square(dx, dy)
    flow = optical_flow(frames, method=method)
    assert flow.shape == (4, SIZE, SIZE, 2) and flow.dtype == np.float32
    for t in range(3):
        y, x = 16 + dy * t, 12 + dx * t
        inside = flow[t, y + 5:y + OBJ - 5, x + 5:x + OBJ - 5]  # away from the occlusion edges
        assert np.abs(inside - [dx, dy]).mean() < tolerance, (method, t)
        assert np.abs(flow[t, :10]).mean() < 0.1  # static background above the square
    np.testing.assert_array_equal(flow[-1], flow[-2])  # MCL 3.1: the last frame repeats


def test_flow_sign_follows_motion_direction():
    flow = optical_flow(moving_square(-2, 0), method="dis")
    assert np.median(flow[0, 21:31, 19:27, 0]) < -1.5  # moving left reads negative x


def test_flow_pairs_are_independent_of_the_rest_of_the_clip():
    frames = moving_square(1, 2, frames=4)
    whole = optical_flow(frames, method="dis")
    np.testing.assert_array_equal(flow_pairs(frames[1:2], frames[2:3], "dis")[0], whole[1])


def test_single_frame_has_no_motion_and_bad_input_is_rejected():
    frame = moving_square(1, 1, frames=1)
    np.testing.assert_array_equal(optical_flow(frame), np.zeros((1, SIZE, SIZE, 2), np.float32))
    with pytest.raises(ValueError, match="unknown optical flow method"):
        optical_flow(moving_square(1, 1), method="farneback")
    with pytest.raises(ValueError, match="uint8"):
        optical_flow(np.zeros((2, 8, 8, 3), np.float32))


def numpy_motion_map(flow: np.ndarray) -> np.ndarray:
    """MCL eq. (1) written out pixel by pixel: central differences inside, one-sided at the border."""
    t_len, h, w, _ = flow.shape

    def derivative(f, i, j, axis):
        n = h if axis == 0 else w
        k = i if axis == 0 else j
        at = (lambda m: f[m, j]) if axis == 0 else (lambda m: f[i, m])
        if k == 0:
            return at(1) - at(0)
        if k == n - 1:
            return at(n - 1) - at(n - 2)
        return (at(k + 1) - at(k - 1)) / 2

    out = np.zeros((t_len, h, w))
    for t in range(t_len):
        u, v = flow[t, ..., 0].astype(np.float64), flow[t, ..., 1].astype(np.float64)
        for i in range(h):
            for j in range(w):
                out[t, i, j] = np.sqrt(derivative(u, i, j, 1) ** 2 + derivative(u, i, j, 0) ** 2
                                       + derivative(v, i, j, 1) ** 2 + derivative(v, i, j, 0) ** 2)
    return out


def test_motion_map_matches_eq1_on_a_hand_made_field():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:9, 0:11].astype(np.float32)
    flow = np.stack([np.stack([0.3 * xx * yy + t, np.sin(xx) - 0.5 * yy], -1) for t in range(2)])
    flow += rng.normal(0, 0.1, flow.shape).astype(np.float32)
    got = motion_map(flow)
    assert got.shape == (2, 9, 11) and got.dtype == np.float32
    np.testing.assert_allclose(got, numpy_motion_map(flow), rtol=1e-5, atol=1e-5)
    boundaries = motion_boundaries(flow)
    np.testing.assert_allclose(boundaries[0, 4, 5], [0.5 * (flow[0, 4, 6, 0] - flow[0, 4, 4, 0]),
                                                     0.5 * (flow[0, 5, 5, 0] - flow[0, 3, 5, 0]),
                                                     0.5 * (flow[0, 4, 6, 1] - flow[0, 4, 4, 1]),
                                                     0.5 * (flow[0, 5, 5, 1] - flow[0, 3, 5, 1])], rtol=1e-6)


def test_motion_map_ignores_camera_motion_and_marks_object_edges():
    flow = np.zeros((1, 16, 16, 2), np.float32)
    flow[...] = [3.0, -1.0]  # the whole frame pans
    flow[0, 4:10, 4:10] = [5.0, -1.0]  # an object moves 2 px further right
    m = motion_map(flow)[0]
    assert m[0, 0] == 0 and m[14, 14] == 0 and m[6:8, 6:8].max() == 0  # pan and object interior
    assert m[6, 3] == pytest.approx(1.0) and m[6, 4] == pytest.approx(1.0)  # the object's left edge


def test_motion_map_of_block_motion_vectors():
    """The cheap path: eq. (1) on a dense motion-vector map, constant over 4x4 cells."""
    vectors = np.zeros((1, 8, 8, 2), np.float32)
    vectors[0, 2:6, 2:6, 0] = 3.0
    m = motion_map(vectors)[0]
    assert m[3, 3] == 0 and m[0, 0] == 0
    assert m[3, 1] == pytest.approx(1.5) and m[3, 2] == pytest.approx(1.5)


def test_st_s_t_motion_pool_the_stacked_maps():
    rng = np.random.default_rng(0)
    maps = rng.random((5, 6, 7)).astype(np.float32)
    np.testing.assert_array_equal(st_motion(maps), maps)
    assert s_motion(maps).shape == (6, 7) and t_motion(maps).shape == (5,)
    np.testing.assert_allclose(s_motion(maps)[2, 3], maps[:, 2, 3].mean(), rtol=1e-6)
    np.testing.assert_allclose(t_motion(maps)[4], maps[4].mean(), rtol=1e-6)
    flow = rng.normal(size=(5, 6, 7, 2)).astype(np.float32)
    np.testing.assert_array_equal(st_motion(flow), motion_map(flow))
    np.testing.assert_allclose(t_motion(flow), motion_map(flow).mean(axis=(1, 2)), rtol=1e-6)
    with pytest.raises(ValueError, match="motion maps"):
        st_motion(maps[0])
