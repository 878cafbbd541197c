"""Resources and safety (issue #14): memory stays flat, checkpoints never run code, files share one mode.

- RSS after warm-up vs at the end of 2,000 clip reads through ``VideoReader`` (every container
  closed), of 1,000 items through ``VideoDataset``, and of repeated extractions: flat within a
  tolerance far below what a leak of one container per read would add. (benchmarks/bench_memory.py
  does the 10,000-read version.) Measured from /proc/self/status (psutil is not installed).
- A checkpoint that carries code (a pickled ``__reduce__`` payload) is refused by ``--resume`` with
  one line naming the file, and the payload never runs; a damaged one is one clear line too.
- Every file a run writes has the mode ``open()`` gives under the umask (safetensors alone used
  to write 0600).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from vidssl.config import load_config
from vidssl.demo import demo_config_dir

# Measured growth with nothing leaking: under 1 MB over these counts. A reader or frame array kept
# per read (a cache without a bound, a container never closed) adds tens of kB to MBs per read, far
# above 8 MB. The 300 bytes per read that PyAV leaked for a demuxer dropped part-way (fixed in
# VideoReader._demux) show only over 10,000 reads: benchmarks/bench_memory.py.
RSS_TOLERANCE_MB = 8.0


def _benchmark_module(name: str):
    """The benchmark script ``benchmarks/<name>.py`` as a module: the test and the 10,000-read benchmark measure
    RSS with one function."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rss_mb = _benchmark_module("bench_memory").rss_mb


def _growth(step, count: int, warmup: int) -> tuple[float, float]:
    """(RSS after ``warmup`` calls of ``step(i)``, growth from there to ``count`` calls), in MB."""
    for i in range(warmup):
        step(i)
    start = rss_mb()
    for i in range(warmup, count):
        step(i)
    return start, rss_mb() - start


def _videos(root) -> list[str]:
    return sorted(str(p) for p in Path(root).glob("*/*.avi"))


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="RSS is read from /proc")
def test_rss_is_flat_over_2000_clip_reads(tiny_benchmark):
    from vidssl.video import VideoReader

    paths, rng = _videos(tiny_benchmark), np.random.default_rng(0)

    def read(i):
        with VideoReader(paths[i % len(paths)], size=(32, 32)) as reader:
            frames = reader.read(np.sort(rng.choice(reader.num_frames, 8, replace=False)))
        assert frames.shape == (8, 32, 32, 3)

    start, growth = _growth(read, 2000, warmup=200)
    assert growth < RSS_TOLERANCE_MB, f"RSS grew {growth:.1f} MB over 1,800 reads (from {start:.0f} MB)"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="RSS is read from /proc")
def test_rss_is_flat_over_dataset_items_and_extractions(tiny_benchmark, tmp_path):
    from vidssl.data.catalogs import ucf101
    from vidssl.data.dataset import VideoDataset
    from vidssl.data.views import RandomClips
    from vidssl.extract import extract_signals

    dataset = VideoDataset(ucf101(tiny_benchmark, split=1, subset="train"),
                           RandomClips(num_views=2, clip_len=8, stride=1), frame_size=(32, 32))
    start, growth = _growth(lambda i: dataset[(i % len(dataset), i // len(dataset))], 1000, warmup=100)
    assert growth < RSS_TOLERANCE_MB, f"RSS grew {growth:.1f} MB over 900 dataset items (from {start:.0f} MB)"

    paths = _videos(tiny_benchmark)  # 128 videos per extraction, in this process (workers=0)
    start, growth = _growth(lambda i: extract_signals(paths, "flow", tmp_path / "cache", root=tiny_benchmark,
                                                      workers=0, frame_size=(32, 32), overwrite=True,
                                                      progress=False), 5, warmup=1)
    assert growth < RSS_TOLERANCE_MB, f"RSS grew {growth:.1f} MB over 4 extractions of 128 videos"


# -- checkpoints that carry code ----------------------------------------------------------------------


class Payload:
    """Unpickling it runs ``touch MARKER``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _resume(run: Path, bench, capsys) -> tuple[int, str]:
    from vidssl.cli import main

    args = ["pretrain", "-c", str(demo_config_dir() / "moco.yaml"), "--resume",
            *tiny_overrides(bench, run, **{"method.queue_size": 16, "method.proj_hidden": 16, "model.width": 4})]
    code = main(args)
    return code, capsys.readouterr().err.strip()


def test_resume_refuses_a_checkpoint_that_carries_code(tiny_benchmark, tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "payload-ran"
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "global_step": 3, "extra": Payload(marker)}, ckpt)

    code, err = _resume(run, tiny_benchmark, capsys)
    assert code != 0 and "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith("vidssl pretrain: error: ") and str(ckpt) in line and "refused" in line, err
    assert "posix.system" in line or "os.system" in line  # what it would have imported
    assert not marker.exists()  # the payload never ran

    torch.load(ckpt, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()


def test_resume_from_a_damaged_checkpoint_is_one_clear_line(tiny_benchmark, tmp_path, capsys):
    from vidssl.train.callbacks import AtomicCheckpointIO

    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "global_step": 3}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:300])  # truncated, e.g. copied while being written
    code, err = _resume(run, tiny_benchmark, capsys)
    assert code != 0 and "Traceback" not in err
    line = err.splitlines()[-1]
    assert str(ckpt) in line and "damaged" in line, err


# -- file modes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_file_a_run_writes_has_the_mode_the_umask_gives(tiny_benchmark, tmp_path, umask):
    from vidssl.train.run import pretrain

    previous = os.umask(umask)
    try:
        run = pretrain(load_config([demo_config_dir() / "moco.yaml"], tiny_overrides(
            tiny_benchmark, tmp_path / "run", **{"method.queue_size": 16, "method.proj_hidden": 16,
                                                 "model.width": 4, "trainer.max_steps": 2})))
    finally:
        os.umask(previous)
    modes = {str(p.relative_to(run)): p.stat().st_mode & 0o777 for p in run.rglob("*") if p.is_file()}
    assert "backbone.safetensors" in modes and "checkpoints/last.ckpt" in modes
    assert set(modes.values()) == {0o666 & ~umask}, {k: oct(v) for k, v in modes.items()}
