import os
import warnings

import numpy as np
import pytest

import vidssl.video.frame_cache as frame_cache_mod
from vidssl.video.frame_cache import FrameCache, FrameCacheWarning
from vidssl.video.reader import VideoReader, VideoReadError
from vidssl.video.writer import write_video


def make_video(path, num_frames=10, mark=0, size=(32, 40)):
    frames = np.stack([np.full((*size, 3), 10 + 20 * t, np.uint8) for t in range(num_frames)])
    frames[:, :4, :4] = mark
    write_video(path, frames, gop=4)
    return str(path)


@pytest.fixture
def video(tmp_path):
    return make_video(tmp_path / "clip.mp4")


def test_first_read_decodes_and_stores_later_reads_only_slice_the_file(video, tmp_path, monkeypatch):
    cache = FrameCache(tmp_path / "cache", (24, 30))
    with VideoReader(video, size=(24, 30)) as reader:
        expected = reader.read_all()
    first = cache.frames(video)
    np.testing.assert_array_equal(first, expected)
    stored = cache.path_for(video)
    assert stored.is_file() and stored.parent.parent == tmp_path / "cache" / "24x30"

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached video must not be decoded again")

    monkeypatch.setattr(frame_cache_mod, "VideoReader", no_decoding)
    again = cache.frames(video)
    assert isinstance(again, np.memmap) and not again.flags.writeable
    np.testing.assert_array_equal(again, expected)
    np.testing.assert_array_equal(again[[7, 2]], expected[[7, 2]])


def test_native_size_and_other_sizes_live_apart(video, tmp_path):
    native = FrameCache(tmp_path / "cache", None)
    small = FrameCache(tmp_path / "cache", (16, 20))
    assert native.frames(video).shape == (10, 32, 40, 3)
    assert small.frames(video).shape == (10, 16, 20, 3)
    assert native.path_for(video) != small.path_for(video)


def test_a_replaced_video_gets_new_frames_not_the_stale_file(tmp_path):
    path = tmp_path / "v.mp4"
    make_video(path, mark=0)
    cache = FrameCache(tmp_path / "cache", None)
    assert int(cache.frames(str(path))[0, 0, 0, 0]) < 10
    old_key = cache.path_for(str(path))
    make_video(path, mark=250, num_frames=12)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later modification time
    assert cache.path_for(str(path)) != old_key
    frames = cache.frames(str(path))
    assert frames.shape[0] == 12 and int(frames[0, 0, 0, 0]) > 240


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape"])
def test_a_damaged_file_is_reported_replaced_and_the_frames_still_served(video, tmp_path, damage):
    cache = FrameCache(tmp_path / "cache", None)
    expected = np.array(cache.frames(video))
    np.testing.assert_array_equal(cache.frames(video), expected)  # a hit: the file's layout is now remembered
    stored = cache.path_for(video)
    if damage == "truncate":
        stored.write_bytes(stored.read_bytes()[:200])
    elif damage == "garbage":
        stored.write_bytes(b"not an npy file")
    else:
        np.save(stored, np.zeros((3, 5, 5), np.uint8))
    with pytest.warns(FrameCacheWarning, match=stored.name):
        frames = cache.frames(video)
    np.testing.assert_array_equal(frames, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file was rewritten whole
        np.testing.assert_array_equal(cache.frames(video), expected)


def test_bad_videos_raise_video_read_error_naming_them(tmp_path):
    cache = FrameCache(tmp_path / "cache", None)
    with pytest.raises(VideoReadError, match="missing.mp4"):
        cache.frames(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(VideoReadError, match="notes.mp4"):
        cache.frames(text)
    assert not any((tmp_path / "cache").rglob("*.npy"))  # nothing stored for them


def test_an_unwritable_cache_warns_once_and_serves_decoded_frames(video, tmp_path, monkeypatch):
    cache = FrameCache(tmp_path / "cache", None)

    def disk_full(path, frames):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(frame_cache_mod, "_write_npy_atomic", disk_full)
    with pytest.warns(FrameCacheWarning, match="No space left") as record:
        first = cache.frames(video)
        second = cache.frames(video)
    assert len(record) == 1
    assert first.shape == second.shape == (10, 32, 40, 3)


def test_frame_size_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="frame_size"):
        FrameCache(tmp_path, (0, 32))


def test_a_named_stream_is_cached_apart_from_the_default_one(tmp_path):
    from test_reader import write_two_stream_video

    path = write_two_stream_video(tmp_path / "two.mkv")
    default, second = FrameCache(tmp_path / "cache", (16, 16)), FrameCache(tmp_path / "cache", (16, 16), stream=0)
    assert default.path_for(path) != second.path_for(path)
    assert abs(float(default.frames(path).mean()) - 200) < 8 and abs(float(second.frames(path).mean()) - 50) < 8
    assert abs(float(FrameCache(tmp_path / "cache", (16, 16), stream=0).frames(path).mean()) - 50) < 8  # from disk
