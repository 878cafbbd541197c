"""Memory over long jobs: resident set size (RSS) over many clip reads, dataset items and extractions.

What it measures (issue #14, "RSS stays flat"): the process's RSS (VmRSS from /proc/self/status)
after a warm-up and then every ``--every`` operations, for

1. reader: ``--reads`` clip reads, each opening a ``VideoReader`` on the next video of the
   benchmark, reading 8 random frames at 32x32 and closing it (a container left open would
   add its demuxer and decoder buffers, about 0.5 MB, per read);
2. dataset: ``--items`` items of a ``VideoDataset`` (2 random 8-frame clips each), the path every
   training step takes;
3. extract: ``--rounds`` flow extractions of every video of the benchmark in this process
   (``overwrite=True``).

Printed: RSS in MB at each mark and the growth from the first mark to the last, per section.
tests/test_resources.py checks the same with smaller counts. About 1-2 minutes on two cores
with the defaults; the benchmark folder is generated (tiny preset) when absent.

    .venv/bin/python benchmarks/bench_memory.py [--data /tmp/bench-tiny] [--reads 10000] [--items 3000] [--rounds 10]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def rss_mb() -> float:
    """VmRSS after a garbage collection and glibc's malloc_trim (freed heap given back), so what
    remains is memory still held, not allocator slack."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def track(name: str, step, count: int, warmup: int, every: int) -> None:
    """Call ``step(i)`` ``count`` times; print RSS after ``warmup`` calls and every ``every`` after."""
    started = time.perf_counter()
    for i in range(warmup):
        step(i)
    marks = [(warmup, rss_mb())]
    for i in range(warmup, count):
        step(i)
        if (i + 1) % every == 0 or i + 1 == count:
            marks.append((i + 1, rss_mb()))
    line = "  ".join(f"{n}: {mb:.1f}" for n, mb in marks)
    print(f"{name}: RSS MB after  {line}")
    print(f"{name}: growth {marks[-1][1] - marks[0][1]:+.1f} MB over {count - warmup} operations "
          f"({time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="a tiny benchmark folder (generated when absent)")
    parser.add_argument("--reads", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--every", type=int, default=None, help="RSS mark interval (default: a tenth)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from vidssl.data.catalogs import ucf101
    from vidssl.data.dataset import VideoDataset
    from vidssl.data.synthetic import generate_benchmark
    from vidssl.data.views import RandomClips
    from vidssl.extract import extract_signals
    from vidssl.video import VideoReader

    scratch = tempfile.TemporaryDirectory(prefix="bench-memory-")
    root = Path(args.data) if args.data else Path(scratch.name) / "bench"
    generate_benchmark(root, preset="tiny", seed=0, workers=1, progress=False)
    paths = sorted(str(p) for p in root.glob("*/*.avi"))
    rng = np.random.default_rng(0)

    def read(i):
        with VideoReader(paths[i % len(paths)], size=(32, 32)) as reader:
            reader.read(np.sort(rng.choice(reader.num_frames, 8, replace=False)))

    track("reader", read, args.reads, warmup=min(200, args.reads // 10), every=args.every or max(1, args.reads // 10))

    dataset = VideoDataset(ucf101(root, split=1, subset="train"), RandomClips(num_views=2, clip_len=8, stride=1),
                           frame_size=(32, 32))
    track("dataset", lambda i: dataset[(i % len(dataset), i // len(dataset))], args.items,
          warmup=min(100, args.items // 10), every=args.every or max(1, args.items // 10))

    cache = Path(scratch.name) / "cache"
    track("extract", lambda i: extract_signals(paths, "flow", cache, root=root, workers=0, frame_size=(32, 32),
                                               overwrite=True, progress=False),
          args.rounds, warmup=1, every=max(1, args.rounds // 5))
    scratch.cleanup()


if __name__ == "__main__":
    main()
