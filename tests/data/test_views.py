import numpy as np
import pytest

from vidssl.data.views import RandomClips, SingleClip, UniformClips, View, ViewSampler


def test_random_clips_are_independent_views():
    sampler = RandomClips(num_views=3, clip_len=4, stride=2)
    assert isinstance(sampler, ViewSampler)
    views = sampler(100, np.random.default_rng(0))
    assert len(views) == 3
    for v in views:
        assert isinstance(v, View)
        assert v.indices.shape == (4,) and v.indices.dtype == np.int64
        assert np.all(np.diff(v.indices) == 2)
        assert v.meta == {}
    assert len({int(v.indices[0]) for v in views}) > 1  # not the same clip three times


def test_random_clips_reproduce_from_the_generator():
    sampler = RandomClips()
    a = [v.indices.tolist() for v in sampler(50, np.random.default_rng(4))]
    b = [v.indices.tolist() for v in sampler(50, np.random.default_rng(4))]
    assert a == b


def test_single_clip():
    views = SingleClip(clip_len=5, stride=1)(5, np.random.default_rng(0))
    assert len(views) == 1 and views[0].indices.tolist() == [0, 1, 2, 3, 4]


def test_uniform_clips_are_deterministic():
    sampler = UniformClips(num_clips=3, clip_len=2, stride=3)
    a = sampler(40, np.random.default_rng(0))
    b = sampler(40, np.random.default_rng(99))
    assert [v.indices.tolist() for v in a] == [v.indices.tolist() for v in b]
    assert [int(v.indices[0]) for v in a] == [0, 18, 36]


def test_invalid_samplers_and_views():
    with pytest.raises(ValueError, match="num_views"):
        RandomClips(num_views=0)
    with pytest.raises(ValueError, match="stride"):
        UniformClips(stride=-1)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        View(np.zeros((2, 2)))
