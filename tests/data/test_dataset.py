import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import vidssl.data.dataset as dataset_mod
from vidssl.data.catalogs import Catalog, VideoRecord
from vidssl.data.dataset import (
    BadVideoTally,
    BadVideoWarning,
    TooManyBadVideos,
    VideoDataset,
    collate,
)
from vidssl.data.views import RandomClips, Request, Requests
from vidssl.video.writer import write_video

NUM_FRAMES = 16


def level(t):
    return 10 + 15 * t  # grey level of frame t: frames can be identified after decoding


def frame_numbers(clip):
    """Frame index of each decoded frame of a clip [T, H, W, 3] from its grey level."""
    return [round((float(f.float().mean()) - 10) / 15) for f in clip]


@pytest.fixture(autouse=True)
def fresh_warning_registry(monkeypatch):
    monkeypatch.setattr(dataset_mod, "_WARNED", set())


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    paths = []
    for k in range(3):
        frames = np.stack([np.full((32, 40, 3), level(t), np.uint8) for t in range(NUM_FRAMES)])
        frames[:, :4, :4] = 40 * k  # a corner mark tells the videos apart
        path = root / f"good{k}.mp4"
        write_video(path, frames, gop=4)
        paths.append(str(path))
    # A download cut short: an MP4 whose second half (with the moov atom) is missing.
    data = (root / "good0.mp4").read_bytes()
    bad = root / "corrupt.mp4"
    bad.write_bytes(data[: len(data) // 2])
    return paths, str(bad)


def make_catalog(paths):
    return Catalog([VideoRecord(p, k) for k, p in enumerate(paths)], [f"c{k}" for k in range(len(paths))], "test")


class FixedViews:
    """Two overlapping views with meta, indices chosen by the test."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __call__(self, info, rng):
        n = info.num_frames
        return Requests({"clips": Request("rgb", np.stack([np.array(self.first) % n, np.array(self.second) % n]))},
                        labels={"pace": [1, 3], "speed": [0.5, 2.0]})


def test_item_holds_the_asked_frames_and_meta(videos):
    good, _ = videos
    ds = VideoDataset(make_catalog(good), FixedViews([0, 1, 2, 3], [3, 6, 9, 15]))
    item = ds[1]
    assert item["clips"].shape == (2, 4, 32, 40, 3) and item["clips"].dtype == torch.uint8
    assert frame_numbers(item["clips"][0]) == [0, 1, 2, 3]
    assert frame_numbers(item["clips"][1]) == [3, 6, 9, 15]
    assert item["label"].dtype == torch.int64 and int(item["label"]) == 1
    assert int(item["index"]) == 1
    assert item["pace"].tolist() == [1, 3] and item["pace"].dtype == torch.int64
    assert item["speed"].tolist() == [0.5, 2.0] and item["speed"].dtype == torch.float32
    assert item["skipped"] == []


def test_union_of_views_decoded_once_with_one_reader(videos, monkeypatch):
    good, _ = videos
    opened, reads = [], []
    real_reader = dataset_mod.VideoReader

    class CountingReader(real_reader):
        def __init__(self, path, **kw):
            opened.append(path)
            super().__init__(path, **kw)

        def read(self, indices):
            reads.append(list(indices))
            return super().read(indices)

    monkeypatch.setattr(dataset_mod, "VideoReader", CountingReader)
    ds = VideoDataset(make_catalog(good), FixedViews([0, 2, 4, 6], [4, 6, 8, 10]))
    ds[0]
    assert opened == [good[0]]
    assert reads == [[0, 2, 4, 6, 8, 10]]


def test_frame_size_resizes(videos):
    good, _ = videos
    ds = VideoDataset(make_catalog(good), RandomClips(num_views=2, clip_len=3, stride=2), frame_size=(24, 20))
    assert ds[0]["clips"].shape == (2, 3, 24, 20, 3)


def test_items_reproduce_from_seed_and_epoch(videos):
    good, _ = videos
    sampler = RandomClips(num_views=2, clip_len=2, stride=1)
    ds = VideoDataset(make_catalog(good), sampler, seed=1)
    again = VideoDataset(make_catalog(good), sampler, seed=1)
    other_seed = VideoDataset(make_catalog(good), sampler, seed=2)
    numbers = lambda d, i: [frame_numbers(c) for c in d[i]["clips"]]  # noqa: E731
    assert numbers(ds, 0) == numbers(again, 0)
    by_epoch = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        by_epoch.append(numbers(ds, 0))
    assert len({str(n) for n in by_epoch}) > 1  # the epoch changes the clips
    ds.set_epoch(0)
    assert numbers(ds, 0) == by_epoch[0]
    assert any(numbers(ds, i) != numbers(other_seed, i) for i in range(3))


def test_bad_video_is_warned_once_replaced_and_recorded(videos):
    good, bad = videos
    ds = VideoDataset(make_catalog([good[0], bad, good[1], good[2]]), FixedViews([0, 1], [2, 3]))
    with pytest.warns(BadVideoWarning, match="corrupt.mp4") as record:
        item = ds[1]
    assert len(record) == 1
    assert item["skipped"] == [bad]
    assert int(item["index"]) != 1
    served = int(item["index"])
    assert int(item["label"]) == served  # label of the video actually served
    expected_mark = 40 * [0, None, 1, 2][served]
    assert int(item["clips"][0, 0, 0, 0, 0]) == pytest.approx(expected_mark, abs=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second hit must not warn again
        again = ds[1]
    assert again["skipped"] == [bad] and int(again["index"]) == served  # deterministic replacement
    fresh = VideoDataset(make_catalog([good[0], bad, good[1], good[2]]), FixedViews([0, 1], [2, 3]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per path per process, across datasets
        assert int(fresh[1]["index"]) == served


def test_all_bad_videos_raise(videos, tmp_path):
    _, bad = videos
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    ds = VideoDataset(make_catalog([bad, str(empty)]), RandomClips(num_views=1, clip_len=2, stride=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadVideoWarning)
        with pytest.raises(TooManyBadVideos, match="corrupt.mp4"):
            ds[0]


def test_signals_get_path_and_view_indices(videos):
    good, _ = videos
    calls = []

    def dummy_motion(path, indices):
        calls.append(path)
        return np.stack([indices, 2 * indices], axis=-1).astype(np.float32)  # [T, 2]

    ds = VideoDataset(make_catalog(good), FixedViews([0, 1, 2], [5, 6, 7]), signals={"motion": dummy_motion})
    item = ds[2]
    assert calls == [good[2], good[2]]
    assert item["motion"].shape == (2, 3, 2) and item["motion"].dtype == torch.float32
    assert item["motion"][1, :, 1].tolist() == [10.0, 12.0, 14.0]
    with pytest.raises(ValueError, match="signal 'clips'"):
        VideoDataset(make_catalog(good), FixedViews([0], [1]), signals={"clips": dummy_motion})


def test_signal_with_another_frame_count_makes_a_bad_item(videos):
    """A cached signal shorter than its video (extracted from another decode): the clip's frames are
    past its end. The video is bad like an unreadable one: warned, replaced, recorded."""
    good, _ = videos
    frames_of = {good[0]: NUM_FRAMES, good[1]: NUM_FRAMES // 2, good[2]: NUM_FRAMES}

    def cached_signal(path, indices):
        values = np.arange(frames_of[path], dtype=np.float32)  # one value per cached frame
        return values[indices]  # IndexError past the end, as a cache lookup raises it

    ds = VideoDataset(make_catalog(good), FixedViews([12, 13], [14, 15]), signals={"motion": cached_signal})
    with pytest.warns(BadVideoWarning, match=r"good1\.mp4.*signal 'motion'"):
        item = ds[1]
    assert item["skipped"] == [good[1]] and int(item["index"]) in (0, 2)
    assert item["motion"][0].tolist() == [12.0, 13.0]


def test_collate_and_tally(videos):
    good, bad = videos
    ds = VideoDataset(make_catalog([good[0], bad, good[1]]), FixedViews([0, 1], [2, 3]), max_bad_fraction=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadVideoWarning)
        batch = collate([ds[0], ds[1], ds[2]])
    assert batch["clips"].shape == (3, 2, 2, 32, 40, 3)
    assert batch["label"].shape == (3,) and batch["pace"].shape == (3, 2)
    assert batch["skipped"] == [bad]

    # Distinct files count, not reads: the same bad video met in every epoch is one of the three.
    tally = ds.make_tally()
    assert tally.num_videos == 3
    for _ in range(5):
        tally.update(batch["skipped"], 3)
    assert tally.report() == {"videos": 3, "served": 15, "bad": 1, "fraction": 1 / 3, "bad_paths": [bad]}
    strict = BadVideoTally(0.3, 3)
    with pytest.raises(TooManyBadVideos, match=r"1 of 3 videos are unreadable.*corrupt\.mp4.*data\.max_bad_fraction"):
        strict.update([bad], 1)  # 1/3 > 0.3, certain as soon as the file is met

    patient = BadVideoTally(0.1, min_served=10)  # videos read not known: items served stand in
    patient.update([bad], 2)  # 50% but too few served to judge
    with pytest.raises(TooManyBadVideos, match=r"1 of 2 videos are unreadable \(50\.0%, more than "
                                               r"data\.max_bad_fraction=0\.1 allows\)"):
        patient.check()
    resumed = BadVideoTally(0.5, 3)
    resumed.load_state_dict(tally.state_dict())
    assert resumed.report() == tally.report()


def test_collate_names_mismatched_shapes():
    items = [{"clips": torch.zeros(1, 2, 8, 8, 3), "skipped": []}, {"clips": torch.zeros(1, 2, 6, 8, 3), "skipped": []}]
    with pytest.raises(ValueError, match="'clips'.*frame_size"):
        collate(items)


def test_set_epoch_reaches_persistent_workers(videos):
    good, _ = videos
    ds = VideoDataset(make_catalog(good), RandomClips(num_views=2, clip_len=2, stride=1), seed=3)
    loader = DataLoader(ds, batch_size=3, num_workers=1, persistent_workers=True, collate_fn=collate)
    seen = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        (batch,) = list(loader)
        expected = collate([ds[i] for i in range(3)])  # computed here, in the main process
        assert torch.equal(batch["clips"], expected["clips"])
        seen.append(batch["clips"])
    assert not all(torch.equal(seen[0], s) for s in seen[1:])


def test_frame_cache_serves_the_same_items_as_decoding(videos, tmp_path):
    from vidssl.video.frame_cache import FrameCache

    good, bad = videos
    catalog = make_catalog([good[0], bad, good[1]])
    views = RandomClips(num_views=2, clip_len=3, stride=2)
    plain = VideoDataset(catalog, views, frame_size=(16, 20), seed=3)
    cached = VideoDataset(catalog, views, frame_size=(16, 20), seed=3,
                          frame_cache=FrameCache(tmp_path / "frames", (16, 20)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadVideoWarning)
        for key in [(0, 0), (2, 0), (0, 1), (1, 0)]:  # (1, 0): the corrupt video is replaced either way
            a, b = plain[key], cached[key]
            assert torch.equal(a["clips"], b["clips"]) and int(a["index"]) == int(b["index"])
            assert a["skipped"] == b["skipped"]
    assert len(list((tmp_path / "frames").rglob("*.npy"))) == 2  # the two good videos, once each


def test_frame_cache_of_another_size_is_refused(videos, tmp_path):
    from vidssl.video.frame_cache import FrameCache

    good, _ = videos
    with pytest.raises(ValueError, match="frame_cache"):
        VideoDataset(make_catalog(good), RandomClips(), frame_size=(16, 20),
                     frame_cache=FrameCache(tmp_path, (32, 32)))


def test_video_stream_names_which_stream_is_read(tmp_path):
    """A file with two video streams: data.video_stream picks the one the items come from."""
    import av

    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as container:
        streams = [container.add_stream("mpeg4", rate=25) for _ in range(2)]
        for k, stream in enumerate(streams):
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for t in range(6):
            for k, stream in enumerate(streams):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 + 150 * k, np.uint8), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
        for stream in streams:
            for packet in stream.encode():
                container.mux(packet)
    sampler = RandomClips(num_views=1, clip_len=2, stride=1)
    levels = [float(VideoDataset(make_catalog([str(path)]), sampler, video_stream=s)[0]["clips"].float().mean())
              for s in (0, 1)]
    assert abs(levels[0] - 40) < 6 and abs(levels[1] - 190) < 6
