"""Signals for dataset items: cached and on-the-fly values agree, geometry and units are right."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from vidssl.data.catalogs import Catalog, VideoRecord
from vidssl.data.dataset import VideoDataset
from vidssl.data.signals import SignalSource, build_signals
from vidssl.data.views import RandomClips
from vidssl.extract import extract_signals
from vidssl.video.cache import SignalCache
from vidssl.video.writer import write_video

SIZE, FRAMES, DX, DY = 80, 8, 4, 2


def render(size=SIZE, frames=FRAMES, seed=0) -> np.ndarray:
    """A 32 px blocky-textured square moving (DX, DY) px per frame over a smooth background."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (5, 5), 1.0)
    texture = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    out = np.repeat(background[None], frames, axis=0)
    for t in range(frames):
        out[t, 4 + DY * t:36 + DY * t, 2 + DX * t:34 + DX * t] = texture
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    paths = [root / "walk" / "a.avi", root / "run" / "b.avi"]
    for i, path in enumerate(paths):
        write_video(path, render(seed=i))
    return root, [str(p) for p in paths]


NAMES = ["flow", "motion-map", "motion-vectors", "accumulated-motion-vectors", "mv-motion-map"]
INDICES = np.array([[0, 3, 3, 7], [7, 6, 1, 2]])  # repeats, unordered, the last frame


@pytest.mark.parametrize("frame_size", [None, (32, 48)])
def test_cache_round_trip_equals_on_the_fly(tmp_path, dataset, frame_size):
    root, paths = dataset
    cache_dir = tmp_path / "cache"
    for kind in ("flow", "motion-vectors", "motion-map"):
        report = extract_signals(paths, kind, cache_dir, root=root, frame_size=frame_size, progress=False)
        assert report.done == 2 and not report.failed
    cached = build_signals(NAMES, cache_dir=cache_dir, root=root, frame_size=frame_size)
    live = build_signals(NAMES, frame_size=frame_size)
    assert all(s.cache is not None for s in cached.values()) and all(s.cache is None for s in live.values())
    h, w = frame_size or (SIZE, SIZE)
    shapes = {"flow": (h, w, 2), "motion-map": (h, w), "motion-vectors": (-(-h // 4), -(-w // 4), 2),
              "accumulated-motion-vectors": (-(-h // 4), -(-w // 4), 2), "mv-motion-map": (-(-h // 4), -(-w // 4))}
    for name in NAMES:
        for path in paths:
            a, b = cached[name](path, INDICES), live[name](path, INDICES)
            assert a.shape == INDICES.shape + shapes[name] and a.dtype == np.float32, name
            np.testing.assert_array_equal(a, b, err_msg=name)
            np.testing.assert_array_equal(a[0, 1], a[0, 2])  # the same frame twice
        assert np.abs(cached[name](paths[0], INDICES)).max() > 0, name  # there is motion


def test_flow_and_vectors_are_in_pixels_of_the_delivered_map(dataset):
    _, paths = dataset
    half = build_signals(["flow", "motion-vectors"], frame_size=(40, 40))
    flow = half["flow"](paths[0], np.arange(FRAMES))
    vectors = half["motion-vectors"](paths[0], np.arange(FRAMES))
    assert vectors.shape == (FRAMES, 10, 10, 2)
    for t in (2, 5):
        top, left = (4 + DY * t) / 2, (2 + DX * t) / 2  # the 16 px square in the 40 px frame
        centre = flow[t, int(top) + 4:int(top) + 12, int(left) + 4:int(left) + 12].reshape(-1, 2)
        np.testing.assert_allclose(np.median(centre, axis=0), [DX / 2, DY / 2], atol=0.3)
        cells = vectors[t, int(top / 4) + 1:int((top + 16) / 4), int(left / 4) + 1:int((left + 16) / 4)]
        # Pixels of the 40 px frame, not of the 1/4 grid: 4 px in the 80 px video is 2 px.
        np.testing.assert_allclose(np.median(cells.reshape(-1, 2), axis=0), [DX / 2, DY / 2], atol=1e-3)
    np.testing.assert_array_equal(flow[-1], flow[-2])  # MCL 3.1


def test_known_translation_reads_the_same_from_flow_vectors_and_the_motion_map_input(tmp_path):
    """A whole-frame translation of (2, 1) px per delivered frame (4, 2 in the 64 px file)."""
    rng = np.random.default_rng(3)
    texture = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)  # 160 px
    frames = np.stack([texture[40 - 2 * t:104 - 2 * t, 40 - 4 * t:104 - 4 * t] for t in range(6)])
    path = tmp_path / "pan.avi"
    write_video(path, frames)
    signals = build_signals(["flow", "motion-vectors", "mv-motion-map", "motion-map"], frame_size=(32, 32))
    frames_at = np.arange(1, 5)
    flow = signals["flow"](path, frames_at - 1)  # flow t-1 -> t: the displacement the vectors of t hold
    vectors = signals["motion-vectors"](path, frames_at)
    inner_flow, inner_vectors = flow[:, 8:24, 8:24].reshape(-1, 2), vectors[:, 2:6, 2:6].reshape(-1, 2)
    np.testing.assert_allclose(np.median(inner_flow, axis=0), [2, 1], atol=0.2)
    np.testing.assert_array_equal(np.median(inner_vectors, axis=0), [2, 1])
    from vidssl.video.flow import motion_map

    # The motion maps are eq. (1) on those very fields: uniform motion, no boundary inside.
    np.testing.assert_array_equal(signals["mv-motion-map"](path, frames_at), motion_map(vectors))
    assert np.median(signals["mv-motion-map"](path, frames_at)[:, 2:6, 2:6]) == 0
    assert np.median(signals["motion-map"](path, frames_at - 1)[:, 8:24, 8:24]) < 0.2
    # Zero motion stays exactly zero through the uint8 flow storage.
    still = tmp_path / "still.avi"
    write_video(still, np.repeat(frames[:1], 3, axis=0))
    assert np.median(signals["flow"](still, np.arange(3))) == 0.0


def test_cache_with_other_settings_is_refused(tmp_path, dataset):
    root, paths = dataset
    extract_signals(paths[:1], "flow", tmp_path, root=root, frame_size=(32, 32), progress=False)
    with pytest.raises(ValueError, match="spec.json.*re-run `vidssl extract flow`"):
        SignalSource("flow", cache_dir=tmp_path, root=root, frame_size=(48, 48))
    with pytest.raises(ValueError, match="unknown signal"):
        SignalSource("optical-flow")
    assert SignalSource("motion_vectors").name == "motion-vectors"


@pytest.mark.parametrize("kind", ["flow", "motion-vectors"])
def test_cache_of_an_older_stored_format_is_refused(tmp_path, dataset, kind):
    """Flow stored with the old uint8 codes (zero read +0.078 px) or motion vectors with B-frames
    mis-marked must be recomputed, not read."""
    root, paths = dataset
    extract_signals(paths[:1], kind, tmp_path, root=root, progress=False)
    cache = SignalCache(tmp_path, kind, root)
    old = dict(cache.read_spec(), version=1)
    cache.write_spec(old)
    with pytest.raises(ValueError, match=f"re-run `vidssl extract {kind}`"):
        SignalSource(kind, cache_dir=tmp_path, root=root)


def test_missing_or_damaged_cache_file_falls_back_to_computing(tmp_path, dataset):
    root, paths = dataset
    extract_signals(paths[:1], "motion-map", tmp_path, root=root, progress=False)
    source = SignalSource("motion-map", cache_dir=tmp_path, root=root)
    expected = SignalSource("motion-map")(paths[0], [1, 2])
    SignalCache(tmp_path, "motion-map", root).path_for(paths[0]).write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="damaged cache file"):
        np.testing.assert_array_equal(source(paths[0], [1, 2]), expected)
    np.testing.assert_array_equal(source(paths[1], [0]), SignalSource("motion-map")(paths[1], [0]))  # never cached
    with pytest.raises(IndexError, match="out of range"):
        source(paths[1], [FRAMES])


def test_dataset_items_carry_the_signals(dataset):
    _, paths = dataset
    catalog = Catalog([VideoRecord(p, i) for i, p in enumerate(paths)], ["walk", "run"], "tiny")
    signals = build_signals(["motion-vectors", "motion-map"], frame_size=(32, 32))
    data = VideoDataset(catalog, RandomClips(num_views=2, clip_len=4, stride=1), frame_size=(32, 32),
                        signals=signals)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        item = data[0]
    assert tuple(item["clips"].shape) == (2, 4, 32, 32, 3)
    assert tuple(item["motion-vectors"].shape) == (2, 4, 8, 8, 2)
    assert tuple(item["motion-map"].shape) == (2, 4, 32, 32)
