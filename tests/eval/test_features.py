import numpy as np
import pytest
import torch

from vidssl.data.catalogs import folder
from vidssl.eval.features import FeatureSet, extract_features, load_features, save_features
from vidssl.models import build_backbone
from vidssl.video.writer import write_video

torch.set_num_threads(1)

EXTRACT = dict(clip_len=4, stride=2, frame_size=(32, 32), crop_size=28, batch_size=3, progress=False)


def moving_square_video(seed: int, frames: int = 24, size: int = 40) -> np.ndarray:
    """A bright square drifting over a noisy background, so different clips look different."""
    rng = np.random.default_rng(seed)
    video = np.repeat(rng.integers(0, 80, size=(1, size, size, 3), dtype=np.uint8), frames, axis=0)
    for t in range(frames):
        x = (seed * 7 + 2 * t) % (size - 8)
        video[t, 8:16, x:x + 8] = 255
    return video


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i in range(4):
        write_video(root / f"class{i % 2}" / f"v{i}.mp4", moving_square_video(i))
    return root


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_backbone("r3d", width=8, depth=10)


def test_shapes_labels_and_paths(video_root, backbone):
    catalog = folder(video_root)
    fs = extract_features(backbone, catalog, num_clips=3, **EXTRACT)
    assert fs.features.shape == (4, backbone.out_dim) and fs.features.dtype == np.float32
    np.testing.assert_array_equal(fs.labels, catalog.labels())
    assert fs.paths == catalog.paths() and fs.skipped == []
    assert np.isfinite(fs.features).all() and fs.features.std() > 0
    p4 = extract_features(backbone, catalog, num_clips=3, stage="p4", **EXTRACT)
    assert p4.features.shape == (4, backbone.stage_dims["p4"])
    assert fs.meta["stage"] == "p5" and p4.meta["stage"] == "p4"


def test_clips_are_averaged_and_extraction_is_deterministic(video_root, backbone):
    catalog = folder(video_root)
    backbone.train()
    one = extract_features(backbone, catalog, num_clips=1, **EXTRACT)
    three = extract_features(backbone, catalog, num_clips=3, **EXTRACT)
    again = extract_features(backbone, catalog, num_clips=3, num_workers=1, **dict(EXTRACT, batch_size=4))
    assert backbone.training  # mode restored after extraction
    assert not np.allclose(one.features, three.features, atol=1e-4)
    np.testing.assert_allclose(three.features, again.features, rtol=1e-5, atol=1e-6)


def test_average_equals_mean_of_single_clip_features(video_root, backbone):
    # With 3 clips over 24 frames (span 7) the starts are 0, 8 and 17; averaging them must equal
    # the mean of the per-clip pooled features computed by hand.
    from vidssl.data.augment import eval_transform
    from vidssl.video import VideoReader

    catalog = folder(video_root)
    fs = extract_features(backbone, catalog, num_clips=3, **EXTRACT)
    backbone.eval()
    with VideoReader(catalog.records[0].path, size=(32, 32)) as reader:
        clips = np.stack([reader.read(range(s, s + 7, 2)) for s in (0, 8, 17)])
    with torch.inference_mode():
        per_clip = backbone(eval_transform(torch.from_numpy(clips), 28))
    np.testing.assert_allclose(fs.features[0], per_clip.mean(0).numpy(), rtol=1e-4, atol=1e-5)


def test_bad_video_is_skipped_and_reported(video_root, backbone, tmp_path):
    import shutil

    root = tmp_path / "with_bad"
    shutil.copytree(video_root, root)
    (root / "class1" / "broken.mp4").write_bytes(b"not a video at all")
    catalog = folder(root)
    with pytest.warns(UserWarning, match="broken.mp4"):
        fs = extract_features(backbone, catalog, num_clips=2, max_bad_fraction=0.5, **EXTRACT)
    assert len(fs) == 4 and len(fs.skipped) == 1 and fs.skipped[0].endswith("broken.mp4")
    assert all(not p.endswith("broken.mp4") for p in fs.paths)

    from vidssl.data.dataset import TooManyBadVideos
    with pytest.raises(TooManyBadVideos, match="broken.mp4"):
        extract_features(backbone, catalog, num_clips=2, max_bad_fraction=0.1, **EXTRACT)


def test_save_and_load_round_trip(tmp_path):
    fs = FeatureSet(np.random.default_rng(0).normal(size=(3, 5)), [0, 1, 1], ["a.mp4", "b.mp4", "c.mp4"],
                    skipped=["bad.avi"], meta={"stage": "p4", "num_clips": 10})
    path = save_features(tmp_path / "feats" / "train.npz", fs)
    loaded = load_features(path)
    np.testing.assert_array_equal(loaded.features, fs.features)
    assert loaded.features.dtype == np.float32 and loaded.labels.dtype == np.int64
    assert loaded.paths == fs.paths and loaded.skipped == fs.skipped and loaded.meta == fs.meta
    assert [p.name for p in path.parent.iterdir()] == ["train.npz"]  # no temp file left

    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.npz"):
        load_features(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_features(tmp_path / "missing.npz")


def test_bf16_autocast_gives_float32_close_to_full_precision(video_root, backbone):
    catalog = folder(video_root)
    full = extract_features(backbone, catalog, num_clips=2, **EXTRACT)
    half = extract_features(backbone, catalog, num_clips=2, bf16=True, **EXTRACT)
    assert half.features.dtype == np.float32
    scale = np.abs(full.features).max()
    np.testing.assert_allclose(half.features, full.features, atol=0.05 * scale)
    assert not np.array_equal(half.features, full.features)  # autocast really ran in bf16
