"""Training-free calibration rows: scene-only and motion-only features and their retrieval."""
from __future__ import annotations

import numpy as np
import pytest

from vidssl.data.catalogs import ucf101
from vidssl.data.synthetic import CLASSES, SCENES, generate_benchmark, plan_benchmark, render_video, resolve_preset
from vidssl.eval.calibration import (calibration_rows, motion_descriptor, motion_only_features, scene_descriptor,
                                     scene_only_features, standardise)
from vidssl.video.flow import optical_flow


def _leave_one_out_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    f = standardise(features)[0]
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    similarity = f @ f.T
    np.fill_diagonal(similarity, -np.inf)
    return float(np.mean(labels[similarity.argmax(axis=1)] == labels))


@pytest.fixture(scope="module")
def rendered():
    """Eight videos per class at 64 px (the demo's frames before issue #15), scenes balanced over classes.

    At the demo's 48 px some frames have two near-equal dominant orientations, and the rotated copy
    can pick the other one (orientation features off by up to 0.18): the descriptor is tested where
    its invariance is exact; the scene-only row itself is checked at 48 px by the demo."""
    preset = resolve_preset("demo", size=64, object_radius=(8.0, 12.0), background_contrast=0.4,
                            train_per_class=1, unbiased_train_per_class=8, test_per_class=1)
    specs = [s for s in plan_benchmark(preset, 0, 0.9) if s.list_name == "train_unbiased"]
    return specs, [render_video(s) for s in specs]


def test_scene_descriptor_ignores_rotation_and_flip_and_tells_scene_families_apart(rendered):
    specs, videos = rendered
    spec, frame = next((s, v[0]) for s, v in zip(specs, videos) if s.scene == "Stripes")
    base = scene_descriptor(frame)
    assert base.shape == (41,) and base.dtype == np.float32 and np.isfinite(base).all()
    for variant in (np.rot90(frame), frame[:, ::-1]):
        np.testing.assert_allclose(scene_descriptor(np.ascontiguousarray(variant)), base, atol=1e-3)

    scenes = np.array([SCENES.index(s.scene) for s in specs])
    descriptors = np.stack([scene_descriptor(v[len(v) // 2]) for v in videos])
    assert _leave_one_out_accuracy(descriptors, scenes) >= 0.6  # chance 0.125


def test_motion_descriptor_ignores_camera_pan_and_tells_classes_apart(rendered):
    specs, videos = rendered
    flows = [optical_flow(v) for v in videos]
    base = motion_descriptor(flows[0])
    assert base.shape == (46,) and base.dtype == np.float32 and np.isfinite(base).all()
    panned = flows[0] + np.array([0.7, -0.4], np.float32)  # the whole field shifts: a camera pan
    np.testing.assert_allclose(motion_descriptor(panned), base, atol=1e-3)

    labels = np.array([s.label for s in specs])
    descriptors = np.stack([motion_descriptor(f) for f in flows])
    assert _leave_one_out_accuracy(descriptors, labels) >= 0.5  # chance 0.125

    still = motion_descriptor(np.zeros((8, 32, 32, 2), np.float32))
    assert np.isfinite(still).all()
    with pytest.raises(ValueError, match="flow"):
        motion_descriptor(np.zeros((8, 32, 32), np.float32))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate_benchmark(tmp_path_factory.mktemp("calib") / "tiny", "tiny", seed=1, workers=0, progress=False)


def test_features_of_video_files(tiny_root):
    paths = [r.path for r in ucf101(tiny_root, split=1, subset="test").records[:6]]
    scene = scene_only_features(paths, progress=False)
    motion = motion_only_features(paths, progress=False)
    assert scene.shape == (6, 41) and motion.shape == (6, 46)
    assert scene.dtype == motion.dtype == np.float32 and np.isfinite(scene).all() and np.isfinite(motion).all()
    np.testing.assert_array_equal(motion_only_features(paths[:2], progress=False), motion[:2])  # deterministic


def test_calibration_rows_report_recall_per_split(tiny_root):
    result = calibration_rows(tiny_root, splits=(1, 2), gallery_per_class=2, ks=(1, 5), workers=0, progress=False)
    assert result["gallery_size"] == {"split1": 2 * len(CLASSES), "split2": 2 * len(CLASSES)}
    assert result["query_size"] == {"split1": 32, "split2": 32}
    assert result["chance_R@1"] == pytest.approx(12.5)
    for row in ("scene-only", "motion-only"):
        for split in ("split1", "split2"):
            recall = result[row][split]
            assert set(recall) == {"R@1", "R@5"} and 0 <= recall["R@1"] <= recall["R@5"] <= 100
    with pytest.raises(ValueError, match="unknown calibration row"):
        calibration_rows(tiny_root, rows=("colour-only",), progress=False)
