"""The embedded benchmark: motions, scene bias, UCF101 layout, encoding, determinism, resuming."""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from vidssl.data.catalogs import ucf101
from vidssl.data.synthetic import (CLASSES, LISTS, SCENES, generate_benchmark, plan_benchmark, read_manifest,
                                   render_video, resolve_preset, trajectory)
from vidssl.data.synthetic.generate import render_and_write
from vidssl.data.synthetic.motions import natural_speed, sample_motion
from vidssl.video.reader import VideoReader

BOX = (12.0, 52.0, 12.0, 52.0)  # centre range of a 64 px frame
NAME = re.compile(r"^(?P<cls>[A-Za-z]+)/v_(?P=cls)_g\d{2,}_c\d{2}\.avi$")


def _track(name: str, seed: int = 0, tempo: float = 1.0, frames: int = 64):
    params = sample_motion(name, np.random.default_rng(seed), box=BOX, unit=1.0, tempo=tempo)
    return params, trajectory(name, params, frames)


# -- motions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_each_class_moves_as_its_name_says(seed):
    _, h = _track("HorizontalBounce", seed)
    assert np.ptp(h.y) == 0 and np.ptp(h.x) > 30 and np.all(np.abs(np.diff(h.x)) <= 1.25 + 1e-9)
    _, v = _track("VerticalBounce", seed)
    assert np.ptp(v.x) == 0 and np.ptp(v.y) > 30

    p, o = _track("Orbit", seed)
    np.testing.assert_allclose(np.hypot(o.x - p["cx"], o.y - p["cy"]), p["radius"], rtol=1e-9)
    turn = np.diff(np.unwrap(np.arctan2(o.y - p["cy"], o.x - p["cx"])))
    assert np.all(np.sign(turn) == np.sign(p["omega"]))  # keeps going round one way

    _, z = _track("ZigZag", seed)
    assert np.ptp(z.x) > 20 and 8 <= np.ptp(z.y) <= 10.0 + 1e-9  # +-5 px swing while advancing
    assert np.sum(np.diff(np.sign(np.diff(z.y))) != 0) >= 8  # the vertical direction flips often

    _, s = _track("ScalePulse", seed)
    assert np.ptp(s.x) == 0 and np.ptp(s.y) == 0 and 0.6 < s.scale.min() < 0.7 and 1.3 < s.scale.max() < 1.4
    _, r = _track("Spin", seed)
    assert np.ptp(r.x) == 0 and np.all(r.scale == 1)
    assert np.ptp(np.diff(r.angle)) < 1e-12 and abs(r.angle[1] - r.angle[0]) > 0.2  # steady rotation

    p, j = _track("Jitter", seed)
    steps = np.hypot(np.diff(j.x), np.diff(j.y))
    assert 0.8 < steps.mean() < 3.0 and np.std(np.diff(j.x)) > 0.5  # erratic small steps
    assert np.max(np.hypot(j.x - p["x0"], j.y - p["y0"])) < 15  # but it stays in place

    _, g = _track("StopAndGo", seed)
    speed = np.hypot(np.diff(g.x), np.diff(g.y))
    assert 0.4 < np.mean(speed < 1e-9) < 0.6  # still half of the time
    assert np.allclose(speed[speed > 1e-9].max(), 2.0, atol=0.3)

    for name in CLASSES:  # every object stays inside its box
        _, t = _track(name, seed)
        if name != "Orbit":
            assert BOX[0] - 1e-9 <= t.x.min() and t.x.max() <= BOX[1] + 1e-9
            assert BOX[2] - 1e-9 <= t.y.min() and t.y.max() <= BOX[3] + 1e-9


def test_tempo_scales_speed_and_faster_playback_leaves_the_natural_range():
    slow = natural_speed("HorizontalBounce", 0.8)
    fast = natural_speed("HorizontalBounce", 1.2)
    assert 2 * slow > fast  # 2x playback of the slowest video is faster than the fastest at 1x
    _, one = _track("HorizontalBounce", tempo=1.0)
    _, two = _track("HorizontalBounce", tempo=2.0)
    assert np.median(np.abs(np.diff(two.x))) == pytest.approx(2 * np.median(np.abs(np.diff(one.x))))
    assert len({round(natural_speed(c, 1.0), 3) for c in CLASSES}) == len(CLASSES)  # each class its own speed


# -- plan: lists and scene bias ------------------------------------------------------------------


def test_scene_bias_is_rho_in_biased_lists_and_absent_in_unbiased_ones():
    preset = resolve_preset("tiny", train_per_class=60, unbiased_train_per_class=40, test_per_class=40)
    specs = plan_benchmark(preset, seed=3, rho=0.75)
    for list_name in LISTS:
        chosen = [s for s in specs if s.list_name == list_name]
        for label in range(len(CLASSES)):
            scenes = Counter(SCENES.index(s.scene) for s in chosen if s.label == label)
            n = sum(scenes.values())
            if list_name in ("train_biased", "test_biased"):
                assert scenes[label] == round(0.75 * n)
                others = [scenes[k] for k in range(len(SCENES)) if k != label]
                assert max(others) - min(others) <= 1
            else:  # every scene equally often in every class: scene independent of class
                assert max(scenes[k] for k in range(len(SCENES))) - min(scenes[k] for k in range(len(SCENES))) <= 1
    paths = [s.relpath for s in specs]
    assert len(set(paths)) == len(paths) and all(NAME.match(p) for p in paths)


def test_plan_is_deterministic_and_videos_do_not_depend_on_other_lists():
    tiny = resolve_preset("tiny")
    a, b = plan_benchmark(tiny, 0, 0.9), plan_benchmark(tiny, 0, 0.9)
    assert a == b
    assert [s.motion_params for s in plan_benchmark(tiny, 1, 0.9)] != [s.motion_params for s in a]
    bigger = plan_benchmark(resolve_preset("tiny", train_per_class=9), 0, 0.9)
    tests = lambda specs: [(s.label, s.scene, s.obj, s.motion_params) for s in specs if s.list_name.startswith("test")]
    assert tests(bigger) == tests(a)


def test_unknown_preset_or_option_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown benchmark preset 'huge'"):
        resolve_preset("huge")
    with pytest.raises(ValueError, match="unknown benchmark option"):
        resolve_preset("tiny", frames=3)
    with pytest.raises(ValueError, match="background_contrast"):
        resolve_preset("demo", background_contrast=1.5)
    with pytest.raises(ValueError, match="rho"):
        plan_benchmark(resolve_preset("tiny"), 0, 1.5)


def test_object_radius_sets_the_moving_objects_size_and_old_manifests_still_match(tiny_root):
    big = plan_benchmark(resolve_preset("tiny", object_radius=(14.0, 16.0)), 0, 0.9)
    unit = resolve_preset("tiny").unit
    assert all(14.0 * unit <= s.obj["radius"] <= 16.0 * unit for s in big)
    assert all(8.0 * unit <= s.obj["radius"] <= 12.0 * unit for s in plan_benchmark(resolve_preset("tiny"), 0, 0.9))
    with pytest.raises(ValueError, match="object_radius"):
        resolve_preset("tiny", object_radius=(12.0, 8.0))
    # A benchmark written before the field existed holds the default size: still the same benchmark...
    manifest = json.loads((tiny_root / "benchmark.json").read_text())
    manifest["preset"].pop("object_radius")
    (tiny_root / "benchmark.json").write_text(json.dumps(manifest))
    generate_benchmark(tiny_root, "tiny", seed=manifest["seed"], rho=manifest["rho"], workers=0, progress=False)
    # ... and not one with another size.
    with pytest.raises(ValueError, match=r"object_radius"):
        generate_benchmark(tiny_root, "tiny", seed=manifest["seed"], rho=manifest["rho"], workers=0, progress=False,
                           object_radius=(10.0, 12.0))


@pytest.mark.parametrize("contrast", [0.4, 0.6])
def test_render_object_is_visible_and_background_has_the_preset_contrast(contrast):
    preset = resolve_preset("demo", size=64, train_per_class=1, unbiased_train_per_class=1, test_per_class=1,
                            background_contrast=contrast, object_radius=(8.0, 12.0))
    spec = next(s for s in plan_benchmark(preset, 0, 0.9) if s.pan is None and s.distractor is None)
    frames = render_video(spec)
    assert frames.shape == (32, 64, 64, 3) and frames.dtype == np.uint8
    luma = frames @ np.array([0.299, 0.587, 0.114])
    bg = np.asarray(spec.palette) @ np.array([0.299, 0.587, 0.114]) * 255
    assert abs(abs(bg[1] - bg[0]) - contrast * 255) < 0.05 * 255
    obj = np.asarray(spec.obj["colour"]) @ np.array([0.299, 0.587, 0.114]) * 255
    assert min(abs(obj - bg[0]), abs(obj - bg[1])) > 20  # darker or brighter than any background
    moved = np.abs(np.diff(luma, axis=0)).sum(axis=0) > 0
    assert 0.02 < moved.mean() < 0.8  # only the object changes the picture


# -- generated files -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return generate_benchmark(tmp_path_factory.mktemp("bench") / "tiny", "tiny", seed=5, workers=2, progress=False)


def test_layout_is_ucf101_and_the_catalog_reads_every_split(tiny_root):
    lists = tiny_root / "ucfTrainTestlist"
    class_ind = (lists / "classInd.txt").read_bytes().decode()
    assert class_ind.startswith("1 HorizontalBounce\r\n2 VerticalBounce\r\n") and class_ind.count("\r\n") == 8
    train = (lists / "trainlist01.txt").read_bytes().decode().split("\r\n")
    assert train[-1] == "" and all(re.match(r"^\S+\.avi [1-8]$", line) for line in train[:-1])
    test = (lists / "testlist01.txt").read_bytes().decode().split("\r\n")
    assert all(NAME.match(line) for line in test[:-1])
    assert (lists / "trainlist01.txt").read_bytes() == (lists / "trainlist02.txt").read_bytes()
    assert (lists / "testlist01.txt").read_bytes() == (lists / "testlist03.txt").read_bytes()

    catalogs = {(s, sub): ucf101(tiny_root, split=s, subset=sub) for s in (1, 2, 3) for sub in ("train", "test")}
    assert all(len(c) == 32 for c in catalogs.values())
    assert catalogs[(1, "train")].classes == list(CLASSES)
    sets = {k: {r.path for r in c.records} for k, c in catalogs.items()}
    distinct = [sets[(1, "train")], sets[(3, "train")], sets[(1, "test")], sets[(2, "test")]]
    assert sum(len(s) for s in distinct) == len(set().union(*distinct))  # four disjoint video sets
    for record in catalogs[(2, "test")].records:
        assert Path(record.path).parent.name == CLASSES[record.label]


def test_manifest_records_every_video(tiny_root):
    manifest = read_manifest(tiny_root)
    assert manifest["status"] == "complete" and manifest["seed"] == 5 and manifest["rho"] == 0.9
    assert len(manifest["videos"]) == 4 * 4 * 8
    video = manifest["videos"][0]
    assert {"path", "list", "class", "label", "scene", "tempo", "pan_px_per_frame", "distractor"} <= set(video)
    assert all((tiny_root / v["path"]).is_file() for v in manifest["videos"])


def test_videos_are_mpeg4_gop12_without_b_frames_and_match_the_render(tiny_root):
    spec = plan_benchmark(resolve_preset("tiny"), 5, 0.9)[0]
    path = tiny_root / spec.relpath
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "mpeg4"
        types = [int(frame.pict_type) for frame in container.decode(stream)]
    i_frame, p_frame = int(av.video.frame.PictureType.I), int(av.video.frame.PictureType.P)
    assert types == [i_frame if k % 12 == 0 else p_frame for k in range(16)]
    with VideoReader(path) as reader:
        decoded = reader.read_all()
    rendered = render_video(spec)
    mse = np.mean((decoded.astype(float) - rendered) ** 2)
    assert 10 * np.log10(255**2 / mse) > 28  # PSNR: the file shows the planned video


def test_same_seed_gives_identical_bytes_and_resume_restores_missing_videos(tiny_root, tmp_path):
    spec = plan_benchmark(resolve_preset("tiny"), 5, 0.9)[7]
    render_and_write((str(tmp_path), spec))
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()
    original = digest(tiny_root / spec.relpath)
    assert digest(tmp_path / spec.relpath) == original

    (tiny_root / spec.relpath).unlink()
    (tiny_root / spec.relpath).with_name(f".tmp-1-{Path(spec.relpath).name}").write_bytes(b"half")
    generate_benchmark(tiny_root, "tiny", seed=5, workers=0, progress=False)
    assert digest(tiny_root / spec.relpath) == original
    assert not list((tiny_root / spec.relpath).parent.glob(".tmp-*"))

    with pytest.raises(ValueError, match=r"benchmark.json.*seed"):
        generate_benchmark(tiny_root, "tiny", seed=6, workers=0, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        generate_benchmark(tmp_path / "other", "tiny", workers=0, progress=False)
    assert json.loads((tiny_root / "benchmark.json").read_text())["status"] == "complete"
