"""Named requests as the motion papers need them (DSM, MCL, CMD), loaded as batches from generated videos.

Each test writes the paper's sampler with :mod:`vidssl.data.views`, loads a batch through
``VideoDataset`` + ``collate`` + ``dequantize_batch`` and checks shapes, dtypes and values.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import vidssl.data.dataset as dataset_mod
from vidssl.data.catalogs import Catalog, VideoRecord
from vidssl.data.dataset import VideoDataset, collate
from vidssl.data.sampling import clip_indices, clip_span, random_clip_indices
from vidssl.data.signals import Signal, SignalSet, SignalSource, dequantize_batch
from vidssl.data.views import Request, Requests, VideoInfo
from vidssl.extract import extract_signals
from vidssl.video.cache import dequantize_flow, quantize_flow
from vidssl.video.flow import flow_pairs
from vidssl.video.reader import VideoReader
from vidssl.video.writer import write_video

NATIVE, SIZE, FRAMES, DX, STILL = 64, 32, 48, 2, 24  # 64 px files read at 32 px; 2 px/frame from frame 24
GOP = 12


def render(seed: int, moving_from: int = 0) -> np.ndarray:
    """A 16 px textured square moving DX px per frame (from ``moving_from``) over a smooth background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:NATIVE, 0:NATIVE]
    background = np.stack([60 + xx * 2, 60 + yy * 2, np.full_like(xx, 90 + 20 * (seed % 3))], -1).astype(np.uint8)
    texture = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    out = np.repeat(background[None], FRAMES, axis=0)
    for t in range(FRAMES):
        x = 4 + DX * max(t - moving_from, 0) % (NATIVE - 24)
        out[t, 24:40, x:x + 16] = texture
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    moving = []
    for k in range(2):
        path = root / "moving" / f"v{k}.avi"
        write_video(path, render(k), gop=GOP)
        moving.append(str(path))
    late = []
    for k in range(2):
        path = root / "late" / f"v{k}.avi"
        write_video(path, render(10 + k, moving_from=STILL), gop=GOP)
        late.append(str(path))
    return root, moving, late


def catalog(paths):
    return Catalog([VideoRecord(p, 0) for p in paths], ["all"], "requests")


def load_batch(dataset, n=2):
    loader = DataLoader(dataset, batch_size=n, shuffle=False, num_workers=0, collate_fn=collate)
    return next(iter(loader))


def square_median(field, t_native_x, size=SIZE):
    """Median vector over the inner pixels of the square (at delivered size) in a [H, W, 2] field."""
    s = size / NATIVE
    top, left = int(28 * s), int((t_native_x + 4) * s)
    return np.median(np.asarray(field)[top:top + int(8 * s), left:left + int(8 * s)].reshape(-1, 2), axis=0)


# -- DSM (Wang et al., AAAI 2021, sec. 3.1 and 4.1) -------------------------------------------------

def dsm_sampler(info: VideoInfo, rng: np.random.Generator, clip_len: int = 4, stride: int = 4) -> Requests:
    """Three crops of one clip (anchor, positive, negative, cropped on the device) plus the flow
    between the third clip's own frames, which its temporal disturbance (optical-flow scaling) needs."""
    clip = random_clip_indices(info.num_frames, clip_len, stride, rng)
    return Requests({"clips": Request("rgb", np.stack([clip] * 3)),
                     "flow": Request("flow", clip, method="dis")})


def test_dsm_three_crops_of_one_clip_and_flow_between_its_frames(videos, monkeypatch):
    _, moving, _ = videos
    reads = []
    real = dataset_mod.VideoReader

    class Counting(real):
        def read(self, indices):
            reads.append(np.asarray(indices).tolist())
            return super().read(indices)

    monkeypatch.setattr(dataset_mod, "VideoReader", Counting)
    ds = VideoDataset(catalog(moving), dsm_sampler, frame_size=(SIZE, SIZE), seed=1,
                      declared=[Signal("flow", method="dis")])
    batch = load_batch(ds)
    assert len(reads) == 2  # one decode per video serves the three clips and the flow's frames
    assert batch["clips"].shape == (2, 3, 4, SIZE, SIZE, 3) and batch["clips"].dtype == torch.uint8
    assert torch.equal(batch["clips"][:, 0], batch["clips"][:, 2])
    assert torch.equal(batch["clips"][:, 1], batch["clips"][:, 2])
    assert batch["flow"].shape == (2, 3, SIZE, SIZE, 2) and batch["flow"].dtype == torch.uint8  # shipped as stored
    assert batch["encodings"] == {"flow": "flow-uint8"}
    codes = batch["flow"].clone()
    dequantize_batch(batch)
    assert batch["flow"].dtype == torch.float32 and "encodings" not in batch
    np.testing.assert_array_equal(batch["flow"].numpy(), dequantize_flow(codes.numpy()))  # device = NumPy
    for b in range(2):
        clip = reads[b]
        frames = batch["clips"][b, 2].numpy()
        expected = dequantize_flow(quantize_flow(flow_pairs(frames[:-1], frames[1:], "dis")))
        np.testing.assert_array_equal(batch["flow"][b].numpy(), expected)
        # stride 4 at 2 px per native frame: 8 px native, 4 px at the delivered 32 px.
        start = int(clip[0])
        x = 4 + DX * start % (NATIVE - 24)
        if x + DX * 4 * 3 + 16 <= NATIVE:  # the square does not wrap inside the clip
            np.testing.assert_allclose(square_median(batch["flow"][b, 0], x), [4 * DX * SIZE / NATIVE, 0], atol=0.5)


# -- MCL (Li et al., ICCV 2021, sec. 3.2) -------------------------------------------------------------

def mcl_sampler(info: VideoInfo, rng: np.random.Generator, clip_len: int = 4, stride: int = 1) -> Requests:
    """A clip above the video's median clip-level motion (T-motion, from the cache), and its
    motion maps so the method picks the crop box from the clip's S-motion on the device."""
    span = clip_span(clip_len, stride)
    starts = np.arange(max(info.num_frames - span + 1, 1))
    t_motion = info.motion.get("t_motion")
    if t_motion is not None and len(t_motion) == info.num_frames:
        level = np.array([t_motion[s:s + span:stride].mean() for s in starts])
        above = starts[level > np.median(level)]
        starts = above if len(above) else starts
    clip = clip_indices(info.num_frames, int(rng.choice(starts)), clip_len, stride)
    return Requests({"clips": Request("rgb", clip), "motion_map": Request("motion_map", clip)})


def mcl_box(motion_map: torch.Tensor, coverage: float = 0.8) -> tuple[int, int, int, int]:
    """Device side: a box (top, left, bottom, right) holding >= 80% of the clip's S-motion pixels
    above its 90th percentile (the box the method crops; here the tightest such box)."""
    s_motion = motion_map.float().mean(0)                       # eq. (2), S-motion [H, W]
    hot = s_motion > torch.quantile(s_motion.flatten(), 0.9)
    rows, cols = torch.nonzero(hot, as_tuple=True)
    cut = (1 - coverage) / 2
    r0, r1 = torch.quantile(rows.float(), torch.tensor([cut, 1 - cut])).tolist()
    c0, c1 = torch.quantile(cols.float(), torch.tensor([cut, 1 - cut])).tolist()
    box = (int(np.floor(r0)), int(np.floor(c0)), int(np.ceil(r1)) + 1, int(np.ceil(c1)) + 1)
    inside = hot[box[0]:box[2], box[1]:box[3]].sum() / hot.sum()
    if inside < coverage:  # quantile boxes of a skewed mask: fall back to the whole mask's box
        box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
    return box


def test_mcl_clip_above_median_t_motion_and_box_from_s_motion(videos, tmp_path):
    root, _, late = videos
    report = extract_signals(late, "motion-map", tmp_path, root=root, frame_size=(SIZE, SIZE), progress=False)
    assert report.done == 2
    ds = VideoDataset(catalog(late), mcl_sampler, frame_size=(SIZE, SIZE), seed=0,
                      declared=[Signal("motion_map")], cache_dir=tmp_path, root=root)
    stats = ds.signal_set.motion_stats(late[0])
    assert stats["t_motion"].shape == (FRAMES,) and stats["t_motion"].dtype == np.float32
    # Without a cache the same statistics are computed once per video (and remembered).
    live = SignalSet([Signal("motion_map")], frame_size=(SIZE, SIZE))
    np.testing.assert_array_equal(live.motion_stats(late[0])["t_motion"], stats["t_motion"])
    assert live.motion_stats(late[0])["t_motion"] is live.motion_stats(late[0])["t_motion"]
    batch = load_batch(ds)
    assert batch["clips"].shape == (2, 4, SIZE, SIZE, 3)
    assert batch["motion_map"].shape == (2, 4, SIZE, SIZE) and batch["motion_map"].dtype == torch.float16
    dequantize_batch(batch)
    assert batch["motion_map"].dtype == torch.float32
    for b, path in enumerate(late):
        t_motion = ds.signal_set.motion_stats(path)["t_motion"]
        levels = np.array([t_motion[s:s + 4].mean() for s in range(FRAMES - 3)])
        cached = SignalSource("motion-map", cache_dir=tmp_path, root=root, frame_size=(SIZE, SIZE))
        assert cached.cache is not None
        # Which clip: the one whose cached motion maps the batch holds (served from the cache as stored).
        hits = [s for s in range(FRAMES - 3)
                if np.array_equal(cached(path, np.arange(s, s + 4)), batch["motion_map"][b].numpy())]
        # Drawn above the median clip-level motion: in the half where the square moves.
        assert hits and levels[hits[0]] > np.median(levels) and hits[0] >= STILL - 3
        box = mcl_box(batch["motion_map"][b])
        # The square's moving edges lie in the box, which is well inside the frame.
        s = SIZE / NATIVE
        assert box[0] <= 24 * s + 2 and box[2] >= 40 * s - 2 and (box[2] - box[0]) * (box[3] - box[1]) < SIZE * SIZE / 2


# -- CMD (Huang et al., CVPR 2021, sec. 3 and 4.1; the authors' code for the offsets) -----------------

def cmd_sampler(info: VideoInfo, rng: np.random.Generator, clip_len: int = 4, stride: int = 2,
                future: int = 8, gap: int = 2, negatives: int = 3, iframe_window: int = 5) -> Requests:
    """A clip, an I-frame within +-5 frames of it (context matching), the motion vectors of the 8
    frames starting 2 frames after it (motion prediction) and 3 motion-vector clips from other
    times of the same video (hard negatives)."""
    n, span = info.num_frames, clip_span(clip_len, stride)
    last_start = n - (span - 1 + gap + future)
    start = int(rng.integers(0, last_start + 1))
    clip = clip_indices(n, start, clip_len, stride)
    keys = info.keyframes
    near = keys[(keys >= clip[0] - iframe_window) & (keys <= clip[-1] + iframe_window)]
    iframe = int(rng.choice(near)) if len(near) else int(keys[np.argmin(np.abs(keys - clip[0]))])
    first = int(clip[-1]) + gap
    others = np.array([s for s in range(n - future + 1) if abs(s - first) >= future])
    negs = rng.choice(others, size=negatives, replace=False)
    return Requests({"clips": Request("rgb", clip),
                     "iframe": Request("iframe", [iframe]),
                     "motion_vectors": Request("motion_vectors", first + np.arange(future)),
                     "negative_motion_vectors": Request("motion_vectors", negs[:, None] + np.arange(future))},
                    labels={"iframe_offset": iframe - int(clip[0]), "mv_start": first})


def test_cmd_clip_iframe_future_vectors_and_hard_negatives(videos):
    _, moving, _ = videos
    ds = VideoDataset(catalog(moving), cmd_sampler, frame_size=(SIZE, SIZE), seed=2,
                      declared=[Signal("motion_vectors")])
    batch = load_batch(ds)
    grid = SIZE // 4
    assert batch["clips"].shape == (2, 4, SIZE, SIZE, 3)
    assert batch["iframe"].shape == (2, 1, SIZE, SIZE, 3) and batch["iframe"].dtype == torch.uint8
    assert batch["motion_vectors"].shape == (2, 8, grid, grid, 2) and batch["motion_vectors"].dtype == torch.float16
    assert batch["negative_motion_vectors"].shape == (2, 3, 8, grid, grid, 2)
    assert batch["encodings"] == {"motion_vectors": "float16", "negative_motion_vectors": "float16"}
    dequantize_batch(batch)
    for b, path in enumerate(moving):
        with VideoReader(path, size=(SIZE, SIZE)) as reader:
            start = int(batch["mv_start"][b]) - 2 - 6  # clip: 4 frames at stride 2 end 2 frames before
            iframe = start + int(batch["iframe_offset"][b])
            assert iframe % GOP == 0 and -5 <= iframe - start <= 6 + 5  # an I-frame of the GOP-12 file
            np.testing.assert_array_equal(batch["iframe"][b, 0].numpy(), reader.read([iframe])[0])
            np.testing.assert_array_equal(batch["clips"][b].numpy(), reader.read(start + 2 * np.arange(4)))
        vectors = batch["motion_vectors"][b].numpy()
        for k, t in enumerate(range(int(batch["mv_start"][b]), int(batch["mv_start"][b]) + 8)):
            x = 4 + DX * t % (NATIVE - 24)
            if t % GOP and 4 + DX * (t - 1) % (NATIVE - 24) < x:  # a P-frame, no wrap-around this frame
                # 2 px per native frame is 1 px of the delivered 32 px frame, although on the 1/4 grid:
                # the grid cells under the square's centre (rows 24..40 native are cells 3..4).
                centre = vectors[k, 3:5, int((x + 8) * SIZE / NATIVE / 4), 0]
                np.testing.assert_allclose(np.median(centre), DX * SIZE / NATIVE, atol=0.26)
                assert not vectors[k, :2].any()  # the static background above it reads zero
            elif t % GOP == 0:
                assert not vectors[k].any()  # an I-frame has no vectors
        # The hard negatives: the same video's vectors at other times (none overlapping the positive).
        everything = ds.signal_set.resolve("motion_vectors").fetch(path, np.arange(FRAMES), stream="motion_vectors")[0]
        for neg in batch["negative_motion_vectors"][b].numpy():
            starts = [s for s in range(FRAMES - 7) if np.array_equal(everything[s:s + 8].astype(np.float32), neg)]
            assert starts and all(abs(s - int(batch["mv_start"][b])) >= 8 for s in starts)
        np.testing.assert_array_equal(everything[int(batch["mv_start"][b]):][:8].astype(np.float32), vectors)


# -- signals declared by a method, matched against the cache (issue item 2) ----------------------------

def test_a_cache_of_any_method_and_dtype_is_used_and_a_mismatch_names_the_command(videos, tmp_path):
    root, moving, _ = videos
    extract_signals(moving, "flow", tmp_path, root=root, frame_size=(SIZE, SIZE), flow_method="tvl1",
                    flow_dtype="float16", progress=False)
    accepted = SignalSet([Signal("flow")], cache_dir=tmp_path, root=root, frame_size=(SIZE, SIZE))
    (source,) = accepted.sources
    assert source.cache is not None and (source.spec.flow_method, source.spec.flow_dtype) == ("tvl1", "float16")
    assert SignalSet([Signal("flow", "tvl1", "float16")], cache_dir=tmp_path, root=root,
                     frame_size=(SIZE, SIZE)).sources[0].cache is not None
    with pytest.raises(ValueError) as err:
        SignalSet([Signal("flow", method="dis")], cache_dir=tmp_path, root=root, frame_size=(SIZE, SIZE))
    assert "vidssl extract flow --root" in str(err.value) and "--method dis" in str(err.value)
    assert "flow_method: the cache holds 'tvl1', this run reads 'dis'" in str(err.value)

    def consecutive(info, rng):  # flow t -> t+1 for t = 3..6: every pair is in the cache
        return Requests({"flow": Request("flow", np.arange(3, 8))})

    ds = VideoDataset(catalog(moving), consecutive, frame_size=(SIZE, SIZE), declared=[Signal("flow")],
                      cache_dir=tmp_path, root=root)
    item = ds[0]
    assert item["flow"].dtype == torch.float16 and item["encodings"] == {"flow": "float16"}
    np.testing.assert_array_equal(item["flow"].numpy(), source.cache.load(moving[0])["flow"][3:7])
    assert set(item) == {"flow", "encodings", "label", "index", "skipped"}  # nothing else fetched


def test_stale_signal_makes_the_video_bad_not_the_run(videos, tmp_path):
    root, moving, _ = videos
    extract_signals(moving, "motion-map", tmp_path, root=root, frame_size=(SIZE, SIZE), progress=False)
    from vidssl.video.cache import SignalCache

    cache = SignalCache(tmp_path, "motion-map", root)
    stored = cache.load(moving[0])
    cache.save(moving[0], {k: v[:10] for k, v in stored.items()})  # another decode of the file: 10 frames

    def late_clip(info, rng):
        return Requests({"clips": Request("rgb", [30, 31]), "motion_map": Request("motion_map", [30, 31])})

    ds = VideoDataset(catalog(moving), late_clip, frame_size=(SIZE, SIZE), declared=[Signal("motion_map")],
                      cache_dir=tmp_path, root=root)
    with pytest.warns(dataset_mod.BadVideoWarning, match="does not cover"):
        item = ds[0]
    assert set(item["skipped"]) == {moving[0]} and int(item["index"]) == 1  # replaced by the other video


def test_the_trainer_dequantises_after_transfer_and_bad_requests_are_clear_errors(videos):
    from vidssl.train.module import MethodModule

    codes = torch.tensor([[0, 127, 254]], dtype=torch.uint8)
    batch = {"flow": codes, "mv": torch.tensor([0.5], dtype=torch.float16), "clips": codes.clone(),
             "encodings": {"flow": "flow-uint8", "mv": "float16"}}
    out = MethodModule.on_after_batch_transfer(None, batch, 0)
    assert out["flow"].dtype == torch.float32 and out["flow"].tolist() == [[-20.0, 0.0, 20.0]]
    assert out["mv"].dtype == torch.float32 and out["clips"].dtype == torch.uint8 and "encodings" not in out
    _, moving, _ = videos
    for sampler, match in [(lambda info, rng: [np.arange(3)], "must return Requests"),
                           (lambda info, rng: Requests({"clips": Request("rgb", [0, FRAMES])}), "outside 0..47"),
                           (lambda info, rng: Requests({"label": Request("rgb", [0])}), "reserved")]:
        with pytest.raises((TypeError, ValueError), match=match):
            VideoDataset(catalog(moving), sampler)[0]


def test_iframes_outside_the_rgb_span_use_a_keyframe_only_decode(videos, monkeypatch):
    _, moving, _ = videos
    calls = []
    real = dataset_mod.VideoReader

    class Counting(real):
        def read(self, indices):
            calls.append(("read", np.asarray(indices).tolist()))
            return super().read(indices)

        def read_keyframes(self, indices):
            calls.append(("read_keyframes", np.asarray(indices).tolist()))
            return super().read_keyframes(indices)

    if not hasattr(real, "read_keyframes"):
        pytest.skip("VideoReader has no keyframe-only decode")
    monkeypatch.setattr(dataset_mod, "VideoReader", Counting)

    def sampler(info, rng):
        assert info.frame_types[::GOP] == "IIII" and info.keyframes.tolist() == [0, 12, 24, 36]
        return Requests({"clips": Request("rgb", [2, 3]), "iframe": Request("iframe", [[36], [24]])})

    item = VideoDataset(catalog(moving), sampler, frame_size=(SIZE, SIZE))[0]
    assert calls == [("read", [2, 3]), ("read_keyframes", [24, 36])]
    assert item["iframe"].shape == (2, 1, SIZE, SIZE, 3)
    with real(moving[0], size=(SIZE, SIZE)) as reader:
        np.testing.assert_array_equal(item["iframe"][:, 0].numpy(), reader.read([36, 24]))
