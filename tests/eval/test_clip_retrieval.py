"""DSM's clip-level retrieval: back-to-back clips, adaptive max pooling, R@k per query clip."""
import math

import numpy as np
import pytest
import torch

from vidssl.config import EvalConfig
from vidssl.data.catalogs import folder
from vidssl.eval import clip_retrieval, protocol
from vidssl.eval.clip_retrieval import clip_features, pool_clip_map, score_clip_sets
from vidssl.eval.features import FeatureSet
from vidssl.models import build_backbone
from vidssl.video.writer import write_video

EXTRACT = dict(clip_len=4, stride=2, frame_size=(32, 32), crop_size=28, batch_size=5, progress=False)


def drifting_square(seed: int, frames: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    video = np.repeat(rng.integers(0, 80, size=(1, 40, 40, 3), dtype=np.uint8), frames, axis=0)
    for t in range(frames):
        x = (seed * 7 + 2 * t) % 32
        video[t, 8:16, x:x + 8] = 255
    return video


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip_videos")
    for i, frames in enumerate((24, 16, 8, 20)):  # 3, 2, 1 and 2 clips of 4 frames at stride 2
        write_video(root / f"class{i % 2}" / f"v{i}.mp4", drifting_square(i, frames))
    return root


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_backbone("r3d", width=4, depth=10)


def numpy_adaptive_max_pool(x: np.ndarray, out: tuple[int, ...]) -> np.ndarray:
    """Adaptive max pooling over the trailing len(out) axes, bins [floor(i n / o), ceil((i + 1) n / o))."""
    lead = x.shape[:x.ndim - len(out)]
    result = np.empty(lead + tuple(out), dtype=x.dtype)
    for cell in np.ndindex(*out):
        window = tuple(slice(math.floor(i * n / o), math.ceil((i + 1) * n / o))
                       for i, n, o in zip(cell, x.shape[len(lead):], out))
        result[(...,) + cell] = x[(...,) + window].max(axis=tuple(range(len(lead), x.ndim)))
    return result


def test_pooling_matches_an_independent_adaptive_max_pool():
    maps = torch.randn(2, 3, 1, 3, 3)  # a tiny network's p5: pooled up to 2 x 7 x 7 repeats its cells
    pooled = pool_clip_map(maps, (2, 7, 7))
    assert pooled.shape == (2, 3 * 2 * 7 * 7)
    np.testing.assert_allclose(pooled.numpy(), numpy_adaptive_max_pool(maps.numpy(), (2, 7, 7)).reshape(2, -1))
    big = torch.randn(2, 3, 4, 9, 11)
    np.testing.assert_allclose(pool_clip_map(big, (2, 7, 7)).numpy(),
                               numpy_adaptive_max_pool(big.numpy(), (2, 7, 7)).reshape(2, -1))
    np.testing.assert_allclose(pool_clip_map(big, None).numpy(), big.numpy().mean(axis=(2, 3, 4)), rtol=1e-5,
                               atol=1e-6)
    images = torch.randn(2, 3, 5, 5)  # an image network's map: H, W of the pool
    np.testing.assert_allclose(pool_clip_map(images, (2, 2, 3)).numpy(),
                               numpy_adaptive_max_pool(images.numpy(), (2, 3)).reshape(2, -1))
    with pytest.raises(ValueError, match="shape"):
        pool_clip_map(torch.randn(2, 3), (2, 7, 7))


def test_every_clip_of_every_video_is_a_row(video_root, backbone):
    catalog = folder(video_root)
    fs = clip_features(backbone, catalog, pool=(2, 3, 3), **EXTRACT)
    per_video = {p: fs.paths.count(p) for p in catalog.paths()}
    assert sorted(per_video.values()) == [1, 2, 2, 3] and len(fs) == 8
    assert fs.features.shape == (8, backbone.stage_dims["p5"] * 18)
    assert fs.paths == [p for p in catalog.paths() for _ in range(per_video[p])]  # catalog and time order
    np.testing.assert_array_equal(fs.labels, [catalog.labels()[catalog.paths().index(p)] for p in fs.paths])
    assert fs.meta["protocol"] == "clips" and fs.meta["clip_pool"] == [2, 3, 3] and fs.meta["videos"] == 4
    # Batching in clips changes nothing: the same rows one clip at a time.
    one_by_one = clip_features(backbone, catalog, pool=(2, 3, 3), **dict(EXTRACT, batch_size=1))
    np.testing.assert_allclose(one_by_one.features, fs.features, rtol=1e-4, atol=1e-5)


def test_a_clip_row_is_the_pooled_map_of_that_clip(video_root, backbone):
    from vidssl.data.augment import eval_transform
    from vidssl.video import VideoReader

    catalog = folder(video_root)
    fs = clip_features(backbone, catalog, pool=(2, 7, 7), **EXTRACT)
    path = catalog.paths()[0]
    rows = fs.features[[i for i, p in enumerate(fs.paths) if p == path]]
    with VideoReader(path, size=(32, 32)) as reader:
        frames = reader.read(range(reader.num_frames))
    clips = np.stack([frames[s:s + 8:2] for s in range(0, 8 * len(rows), 8)])  # back to back: 0, 8, 16
    backbone.eval()
    with torch.inference_mode():
        maps = backbone.forward_features(eval_transform(torch.from_numpy(clips), 28), stages=("p5",))["p5"]
    np.testing.assert_allclose(rows, numpy_adaptive_max_pool(maps.numpy(), (2, 7, 7)).reshape(len(rows), -1),
                               rtol=1e-4, atol=1e-5)


def test_bad_video_is_skipped_and_reported(video_root, backbone, tmp_path):
    import shutil

    root = tmp_path / "with_bad"
    shutil.copytree(video_root, root)
    (root / "class1" / "broken.mp4").write_bytes(b"not a video")
    with pytest.warns(UserWarning, match="broken.mp4"):
        fs = clip_features(backbone, folder(root), max_bad_fraction=0.5, **EXTRACT)
    assert fs.skipped == [str(root / "class1" / "broken.mp4")] and len(fs) == 8


def test_recall_counts_query_clips():
    # Two gallery clips of class 0 near +x, one of class 1 near +y; three query clips.
    gallery = FeatureSet([[1, 0.1], [1, -0.1], [0, 1]], [0, 0, 1], ["g0", "g0", "g1"])
    queries = FeatureSet([[1, 0], [0.1, 1], [1, 0.05]], [0, 0, 1], ["q0", "q0", "q1"])
    scores = score_clip_sets(gallery, {"test": queries}, ks=(1, 2, 3))["test"]
    # Query 0 hits at 1; query 1 (class 0) finds class 1 first, a class-0 clip second; query 2
    # (class 1) finds two class-0 clips before the class-1 one.
    assert scores["R@1"] == pytest.approx(100 / 3) and scores["R@2"] == pytest.approx(200 / 3)
    assert scores["R@3"] == 100.0
    assert (scores["query_clips"], scores["query_videos"], scores["gallery_clips"], scores["gallery_videos"]) == \
        (3, 2, 3, 2)


def test_evaluate_backbone_takes_the_clip_protocol_from_the_config(monkeypatch, video_root):
    calls = []

    def fake_clip_features(backbone, catalog, **kwargs):
        calls.append((catalog.name.rsplit("-", 1)[-1], kwargs["pool"], kwargs["clip_len"], kwargs["batch_size"]))
        rng = np.random.default_rng(len(calls))
        return FeatureSet(rng.normal(size=(2 * len(catalog), 3)), np.repeat(catalog.labels(), 2),
                          [p for p in catalog.paths() for _ in range(2)])

    monkeypatch.setattr(clip_retrieval, "clip_features", fake_clip_features)
    monkeypatch.setattr(protocol, "extract_features", lambda *a, **k: pytest.fail("video features extracted"))
    catalog = folder(video_root)
    train, test = catalog.subset([0, 2], "train"), catalog.subset([1, 3], "test")
    cfg = EvalConfig(ks=[1, 5], protocol="clips", clip_pool=[2, 7, 7], clip_len=16, batch_size=7)
    results = protocol.evaluate_backbone(None, train, {"test": test}, cfg, frame_size=(32, 32), crop_size=28,
                                         progress=False)
    assert calls == [("train", [2, 7, 7], 16, 7), ("test", [2, 7, 7], 16, 7)]
    assert set(results["test"]) == {"R@1", "R@5", "query_clips", "query_videos", "gallery_clips", "gallery_videos"}
    assert results["test"]["query_clips"] == 4 and results["test"]["gallery_videos"] == 2
