from fractions import Fraction

import numpy as np
import pytest

from vidssl.data.sampling import (
    clip_indices,
    clip_span,
    loop_indices,
    pace_indices,
    random_clip_indices,
    tiled_clip_indices,
    uniform_clip_indices,
)


def test_pace_examples_from_the_paper():
    # Wang et al. ECCV 2020, Fig. 2 / Sec. 3.1 (0-based here).
    assert pace_indices(25, 10, 5, 3).tolist() == [10, 13, 16, 19, 22]
    assert pace_indices(25, 0, 5, 0.5).tolist() == [0, 0, 1, 1, 2]
    assert pace_indices(25, 0, 5, 1 / 3).tolist() == [0, 0, 0, 1, 1]
    assert pace_indices(25, 0, 5, Fraction(1, 3)).tolist() == [0, 0, 0, 1, 1]
    assert pace_indices(25, 4, 5, 1).tolist() == [4, 5, 6, 7, 8]
    assert pace_indices(25, 7, 4, 0.5).tolist() == [7, 7, 8, 8]


def test_pace_loops_past_the_end():
    assert pace_indices(10, 6, 4, 2).tolist() == [6, 8, 0, 2]
    assert pace_indices(3, 1, 6, 1).tolist() == [1, 2, 0, 1, 2, 0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_frames=0, start=0, clip_len=4, pace=1), "num_frames"),
    (dict(num_frames=10, start=0, clip_len=0, pace=1), "clip_len"),
    (dict(num_frames=10, start=0, clip_len=4, pace=0), "pace"),
    (dict(num_frames=10, start=0, clip_len=4, pace=-2), "pace"),
    (dict(num_frames=10, start=-1, clip_len=4, pace=1), "start"),
])
def test_pace_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pace_indices(**kwargs)


def test_loop_and_clip_indices():
    assert loop_indices([0, 5, 10, 12], 5).tolist() == [0, 0, 0, 2]
    assert clip_indices(20, 3, 4, 2).tolist() == [3, 5, 7, 9]
    assert clip_indices(5, 3, 4, 2).tolist() == [3, 0, 2, 4]
    assert clip_indices(20, 0, 4, 2).dtype == np.int64
    assert clip_span(8, 2) == 15
    with pytest.raises(ValueError, match="stride"):
        clip_indices(20, 0, 4, 0)
    with pytest.raises(ValueError, match=">= 0"):
        loop_indices([-1], 5)


def test_random_clip_fits_inside_the_video():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(300):
        idx = random_clip_indices(20, 4, 3, rng)  # span 10: starts 0..10
        assert np.all(np.diff(idx) == 3)
        assert idx[-1] <= 19
        starts.add(int(idx[0]))
    assert starts == set(range(11))  # every start that fits is reachable, none that doesn't


def test_random_clip_on_a_short_video_starts_at_zero_and_loops():
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert random_clip_indices(5, 4, 2, rng).tolist() == [0, 2, 4, 1]


def test_random_clip_is_reproducible_from_the_generator():
    a = [random_clip_indices(100, 8, 2, np.random.default_rng(3)).tolist() for _ in range(2)]
    assert a[0] == a[1]


def test_uniform_clips_span_the_video():
    clips = uniform_clip_indices(30, 4, 2, 3)  # span 7, starts over [0, 23]
    assert clips.shape == (3, 4)
    assert clips[:, 0].tolist() == [0, 12, 23]
    assert clips[-1, -1] == 29
    assert np.all(np.diff(clips, axis=1) == 2)


def test_uniform_single_clip_is_centred_and_short_videos_loop():
    assert uniform_clip_indices(30, 4, 2, 1)[0].tolist() == [11, 13, 15, 17]
    short = uniform_clip_indices(5, 4, 2, 3)
    assert short.tolist() == [[0, 2, 4, 1]] * 3
    with pytest.raises(ValueError, match="num_clips"):
        uniform_clip_indices(30, 4, 2, 0)


def test_tiled_clips_follow_the_dsm_retrieval_protocol():
    # DSM (AAAI 2021, "Video Retrieval") / Clip Order: videos "divided into clips in units of 16
    # frames"; a 50-frame video holds three whole ones, the last two frames start none.
    tiles = tiled_clip_indices(50, 16, 1)
    assert tiles.shape == (3, 16)
    assert [row[0] for row in tiles.tolist()] == [0, 16, 32] and tiles[2, -1] == 47
    # At stride 2 a clip covers 16 frames: a 32-frame demo video gives two, back to back.
    assert tiled_clip_indices(32, 8, 2).tolist() == [list(range(0, 16, 2)), list(range(16, 32, 2))]
    assert tiled_clip_indices(31, 8, 2).tolist() == [list(range(0, 16, 2)), list(range(16, 31, 2))]  # span 15 fits
    assert tiled_clip_indices(16, 16, 1).tolist() == [list(range(16))]
    # Shorter than one clip: one clip from frame 0 that loops, as random_clip_indices.
    assert tiled_clip_indices(5, 4, 2).tolist() == [[0, 2, 4, 1]]
    with pytest.raises(ValueError, match="clip_len"):
        tiled_clip_indices(50, 0, 1)
