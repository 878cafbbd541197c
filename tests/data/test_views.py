import numpy as np
import pytest

from vidssl.data.views import RandomClips, Request, Requests, Sampler, SingleClip, TiledClips, UniformClips, VideoInfo


def test_random_clips_are_independent_views():
    sampler = RandomClips(num_views=3, clip_len=4, stride=2)
    assert isinstance(sampler, Sampler)
    requests = sampler(VideoInfo("v.mp4", 100), np.random.default_rng(0))
    assert isinstance(requests, Requests) and list(requests) == ["clips"] and requests.labels == {}
    clips = requests["clips"]
    assert clips.stream == "rgb" and clips.indices.shape == (3, 4) and clips.indices.dtype == np.int64
    assert np.all(np.diff(clips.indices, axis=1) == 2)
    assert len(set(clips.indices[:, 0].tolist())) > 1  # not the same clip three times


def test_random_clips_reproduce_from_the_generator():
    sampler = RandomClips()
    a = sampler(50, np.random.default_rng(4))["clips"].indices.tolist()
    b = sampler(VideoInfo("x", 50), np.random.default_rng(4))["clips"].indices.tolist()
    assert a == b


def test_single_clip():
    clips = SingleClip(clip_len=5, stride=1)(5, np.random.default_rng(0))["clips"]
    assert clips.indices.tolist() == [[0, 1, 2, 3, 4]]


def test_uniform_clips_are_deterministic():
    sampler = UniformClips(num_clips=3, clip_len=2, stride=3)
    a = sampler(40, np.random.default_rng(0))["clips"].indices
    b = sampler(40, np.random.default_rng(99))["clips"].indices
    assert a.tolist() == b.tolist()
    assert a[:, 0].tolist() == [0, 18, 36]


def test_tiled_clips_cover_the_video_and_ignore_the_rng():
    sampler = TiledClips(clip_len=4, stride=2)
    request = sampler(VideoInfo("v", 20), np.random.default_rng(0))["clips"]
    assert request.stream == "rgb" and request.indices.shape == (2, 4)  # frames 0-7 and 8-15; 16-19 start none
    assert request.indices[:, 0].tolist() == [0, 8]
    assert sampler(20, None)["clips"].indices.tolist() == request.indices.tolist()
    assert TiledClips(clip_len=4, stride=2)(48, None)["clips"].indices.shape == (6, 4)
    with pytest.raises(ValueError, match="clip_len"):
        TiledClips(clip_len=0)


def test_video_info_is_lazy():
    calls = []
    info = VideoInfo("v", 6, frame_types=lambda: calls.append(1) or "IPPIPP", fps=25.0)
    assert calls == [] and info.motion == {}
    assert info.frame_types == "IPPIPP" and info.keyframes.tolist() == [0, 3]
    assert info.frame_types == "IPPIPP" and calls == [1]
    assert VideoInfo("v", 3).frame_types == "???"


def test_invalid_samplers_and_requests():
    with pytest.raises(ValueError, match="num_views"):
        RandomClips(num_views=0)
    with pytest.raises(ValueError, match="stride"):
        UniformClips(stride=-1)
    with pytest.raises(ValueError, match=r"\[T\] or \[V, T\]"):
        Request("rgb", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="unknown stream"):
        Request("depth", [0, 1])
    with pytest.raises(ValueError, match="takes options"):
        Request("rgb", [0, 1], method="dis")
    with pytest.raises(ValueError, match="at least 2"):
        Request("flow", [3])
    with pytest.raises(TypeError, match="must be a Request"):
        Requests({"clips": np.arange(3)})
