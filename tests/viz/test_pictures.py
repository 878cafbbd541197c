"""Pictures: the flow colour wheel, overlays, strips, PNG / GIF encoding, charts."""
from __future__ import annotations

import colorsys
import io

import numpy as np
import pytest
from PIL import Image

from vidssl.viz import charts
from vidssl.viz import pictures as pic


def hsv_reference(dx: float, dy: float, value: float) -> np.ndarray:
    """RGB of a displacement by the usual convention: hue = angle in image coordinates (y down)."""
    hue = (np.degrees(np.arctan2(dy, dx)) % 360) / 360
    return np.array(colorsys.hsv_to_rgb(hue, 1.0, value)) * 255


@pytest.mark.parametrize("dx, dy, name", [(1, 0, "right: red"), (-1, 0, "left: cyan"), (0, 1, "down"),
                                          (0, -1, "up"), (1, 1, "down-right"), (-0.5, 0.8, "down-left")])
def test_flow_colours_follow_the_hsv_wheel(dx, dy, name):
    field = np.zeros((2, 3, 4, 2), np.float32)
    field[..., 0], field[..., 1] = dx, dy
    field[1] *= 0.5  # half the speed: half the brightness, same hue
    rgb = pic.flow_to_rgb(field)
    assert rgb.shape == (2, 3, 4, 3) and rgb.dtype == np.uint8
    # OpenCV's 8-bit hue has 2-degree steps: up to 1 degree off, 4.25 of 255 in a channel.
    np.testing.assert_allclose(rgb[0, 0, 0], hsv_reference(dx, dy, 1.0), atol=5, err_msg=name)
    np.testing.assert_allclose(rgb[1, 0, 0], hsv_reference(dx, dy, 0.5), atol=5, err_msg=name)


def test_flow_scale_zero_motion_and_the_wheel_legend():
    assert not pic.flow_to_rgb(np.zeros((4, 4, 2))).any()  # no motion: black
    field = np.zeros((1, 2, 2, 2), np.float32)
    field[..., 0] = 2.0
    assert pic.flow_to_rgb(field, max_magnitude=4.0)[0, 0, 0, 0] == pytest.approx(128, abs=1)
    wheel = pic.color_wheel(33)
    assert wheel.shape == (33, 33, 3) and not wheel[16, 16].any() and not wheel[0, 0].any()  # centre, outside
    np.testing.assert_allclose(wheel[16, 32], [255, 0, 0], atol=2)   # right edge: red
    np.testing.assert_allclose(wheel[16, 0], [0, 255, 255], atol=2)  # left edge: cyan
    with pytest.raises(ValueError, match=r"\[..., H, W, 2\]"):
        pic.flow_to_rgb(np.zeros((4, 4, 3)))


def test_overlay_blends_and_resizes_the_map():
    frames = np.full((2, 8, 10, 3), 100, np.uint8)
    maps = np.zeros((2, 8, 10), np.float32)
    maps[:, :, 5:] = 1.0
    np.testing.assert_array_equal(pic.overlay(frames, maps, alpha=0.0), frames)
    np.testing.assert_array_equal(pic.overlay(frames, maps, alpha=1.0), pic.colorize(maps))
    half = pic.overlay(frames, maps, alpha=0.5)
    hot, cold = pic.colorize(np.ones(1))[0].astype(float), pic.colorize(np.zeros(1))[0].astype(float)
    np.testing.assert_allclose(half[0, 0, 9], (100 + hot) / 2, atol=1)
    np.testing.assert_allclose(half[0, 0, 0], (100 + cold) / 2, atol=1)
    small = pic.overlay(frames, maps[:, ::2, ::2], alpha=1.0)  # a coarser map is resized to the frames
    assert small.shape == frames.shape
    with pytest.raises(ValueError, match="T = 2 frames"):
        pic.overlay(frames, maps[:1])
    with pytest.raises(ValueError, match="uint8 RGB"):
        pic.overlay(frames.astype(np.float32), maps)


def test_motion_overlay_lights_the_moving_square_not_the_still_background():
    from vidssl.video.flow import motion_map, optical_flow

    frames = np.zeros((4, 48, 48, 3), np.uint8)
    frames[:] = (np.indices((48, 48)).sum(0) % 7 * 30)[None, ..., None].astype(np.uint8)  # still texture
    for t in range(4):
        frames[t, 18:30, 10 + 3 * t:22 + 3 * t] = 255  # a square moving right by 3 px per frame
    shown = pic.motion_overlay(frames, motion_map(optical_flow(frames)))
    still = pic.overlay(frames, np.zeros((4, 48, 48)), alpha=0.6, cmap="inferno")
    changed = np.abs(shown.astype(int) - still.astype(int)).sum(-1) > 30
    assert changed[:, 14:34, 8:36].mean() > 5 * changed[:, :, 40:].mean()


def test_strip_layout_and_png_gif_round_trips():
    frames = np.stack([np.full((6, 5, 3), 40 * (i + 1), np.uint8) for i in range(3)])
    row = pic.strip(frames, gap=2, scale=2)
    assert row.shape == (12, 3 * 10 + 2 * 2, 3)
    assert (row[:, 12:22] == 80).all() and (row[:, 10:12] == 255).all()  # second frame, then a white gap
    png = Image.open(io.BytesIO(pic.png_bytes(row)))
    np.testing.assert_array_equal(np.asarray(png.convert("RGB")), row)
    gif = Image.open(io.BytesIO(pic.gif_bytes(frames, fps=5, scale=3)))
    assert gif.n_frames == 3 and gif.size == (15, 18) and gif.info["loop"] == 0 and gif.info["duration"] == 200
    gif.seek(2)
    np.testing.assert_allclose(np.asarray(gif.convert("RGB")), 120, atol=2)
    with pytest.raises(ValueError, match="uint8 RGB image"):
        pic.png_bytes(np.zeros((4, 4)))


def test_charts_are_pngs_and_refuse_nothing_to_draw():
    curves = {"moco": {"step": [1, 2, 3], "loss": [5.0, 4.0, 3.5]}, "pace": {"step": [1, 2], "loss": [2.0, 1.0]}}
    results = {"split1": {"moco": {"R@1": 10.0, "R@5": 40.0}, "pace": {"R@1": 20.0}}}
    per_class = {"moco": {"a": 50.0, "b": 0.0}, "pace": {"a": 100.0}}
    for data in (charts.loss_curves_png(curves), charts.recall_bars_png(results, ks=(1, 5)),
                 charts.per_class_png(per_class, ["a", "b"], "per class")):
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 100
    with pytest.raises(ValueError, match="no training curves"):
        charts.loss_curves_png({})
    with pytest.raises(ValueError, match="no per-class"):
        charts.per_class_png({}, ["a"], "x")
