"""The on-disk signal cache: quantisation, portable keys, atomic files, spec and failure lists."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from vidssl.video.cache import FLOW_BOUND, SignalCache, dequantize_flow, quantize_flow


def test_flow_quantisation_follows_the_20px_convention():
    flow = np.array([-25.0, -20.0, 0.0, 7.3, 20.0, 31.0], dtype=np.float32)
    q = quantize_flow(flow)
    assert q.dtype == np.uint8
    np.testing.assert_array_equal(q, np.rint(np.clip(flow, -20, 20) * 127 / 20 + 127).astype(np.uint8))
    assert q[0] == q[1] == 0 and q[-1] == q[-2] == 254
    back = dequantize_flow(q)
    inside = np.abs(flow) <= FLOW_BOUND
    assert np.abs(back[inside] - flow[inside]).max() <= 10 / 127 + 1e-6  # half a step
    np.testing.assert_allclose(back[[0, -1]], [-20, 20], atol=1e-5)  # clipped at the bound
    np.testing.assert_array_equal(quantize_flow(back), q)  # a second round trip changes nothing


def test_flow_quantisation_keeps_zero_motion_zero_and_is_symmetric():
    assert dequantize_flow(quantize_flow(np.zeros(3, np.float32))).tolist() == [0.0, 0.0, 0.0]
    values = np.linspace(0, 20, 41, dtype=np.float32)
    np.testing.assert_array_equal(dequantize_flow(quantize_flow(-values)), -dequantize_flow(quantize_flow(values)))


def test_save_load_round_trip_is_keyed_by_relative_path(tmp_path):
    root = tmp_path / "data"
    (root / "walk").mkdir(parents=True)
    video = root / "walk" / "v1.avi"
    video.write_bytes(b"x")
    cache = SignalCache(tmp_path / "cache", "flow", root)
    arrays = {"flow": np.arange(24, dtype=np.uint8).reshape(1, 3, 4, 2)}
    target = cache.save(video, arrays)
    assert target == tmp_path / "cache" / "flow" / "walk" / "v1.avi.npz"
    assert [p.name for p in target.parent.iterdir()] == ["v1.avi.npz"]  # no temporary left behind
    np.testing.assert_array_equal(cache.load(video)["flow"], arrays["flow"])
    assert cache.load("walk/v1.avi")["flow"].dtype == np.uint8  # relative paths resolve against root
    assert cache.load(root / "walk" / "other.avi") is None

    # The same cache, dataset and cache moved elsewhere: still found.
    shutil.copytree(tmp_path / "data", tmp_path / "moved" / "data")
    shutil.copytree(tmp_path / "cache", tmp_path / "moved" / "cache")
    moved = SignalCache(tmp_path / "moved" / "cache", "flow", tmp_path / "moved" / "data")
    np.testing.assert_array_equal(moved.load(tmp_path / "moved" / "data" / "walk" / "v1.avi")["flow"], arrays["flow"])

    with pytest.raises(ValueError, match="not under the dataset root"):
        cache.path_for(tmp_path / "elsewhere.avi")


def test_damaged_file_is_an_error_naming_it(tmp_path):
    cache = SignalCache(tmp_path / "cache", "motion-map", tmp_path)
    target = cache.path_for(tmp_path / "v.avi")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="v.avi.npz: damaged cache file"):
        cache.load(tmp_path / "v.avi")


def test_spec_and_failure_lists(tmp_path):
    cache = SignalCache(tmp_path / "cache", "motion-vectors", tmp_path)
    assert cache.read_spec() is None and cache.read_failures() == {}
    cache.write_spec({"kind": "motion-vectors", "mv_downsample": 4})
    assert cache.read_spec() == {"kind": "motion-vectors", "mv_downsample": 4}
    cache.record_failures({"a.avi": "VideoReadError: a.avi: bad", "b.avi": "bad too"})
    assert cache.record_failures({}, succeeded=["a.avi"]) == {"b.avi": "bad too"}  # fixed since
    cache.record_failures({"c.avi": "rank 1 saw this"}, rank=1)
    assert cache.read_failures() == {"b.avi": "bad too"}
    assert cache.all_failures() == {"b.avi": "bad too", "c.avi": "rank 1 saw this"}
