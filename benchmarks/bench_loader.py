"""Loader throughput against a bare PyAV decode of the same frames.

What it measures: random 8-frame clips at stride 2 served by the vidssl loader
(``VideoDataset`` + torch ``DataLoader`` + ``collate``, ``--workers`` worker processes, the
videos' native size) against the simplest loop that decodes the same frames with PyAV in
the main process (open, seek to the clip's first frame, decode forward, keep the wanted
frames as RGB). Both read the same clips of MPEG-4 videos (64x64 and 320x240) that the
benchmark writes into a temporary folder; the bare loop's frames are checked against the
loader's, so the two really do the same work.

Printed per size: clips/s of the loader with ``--workers`` workers, of the loader in the
main process (0 workers: its per-clip overhead over the bare loop, since both then use one
core), of the loader in the main process reading a warm ``FrameCache`` (``data.frame_cache``:
each video decoded once, clips sliced from a memory-mapped file) and of the bare loop, as
ratios over the bare loop. Takes about 30-40 s on two cores.

    .venv/bin/python benchmarks/bench_loader.py [--videos 12] [--clips 240] [--workers 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from vidssl.data.catalogs import Catalog, VideoRecord
from vidssl.data.dataset import VideoDataset, collate
from vidssl.data.sampling import random_clip_indices
from vidssl.data.views import View
from vidssl.video.frame_cache import FrameCache
from vidssl.video.writer import write_video

CLIP_LEN, STRIDE = 8, 2
SIZES = {"64x64": (64, 64), "320x240": (240, 320)}  # name -> (H, W)


@dataclass(frozen=True)
class RandomClipWithStart:
    """``SingleClip`` that also reports where its clip starts, so the bare loop can replay it."""

    clip_len: int = CLIP_LEN
    stride: int = STRIDE

    def __call__(self, num_frames: int, rng: np.random.Generator) -> list[View]:
        indices = random_clip_indices(num_frames, self.clip_len, self.stride, rng)
        return [View(indices, meta={"start": int(indices[0])})]


def make_videos(root: Path, size: tuple[int, int], count: int, frames: int, fps: float) -> list[str]:
    """Textured, moving content (a drifting gradient plus noise) so decoding costs what real video does."""
    h, w = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    paths = []
    for v in range(count):
        texture = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
        video = np.empty((frames, h, w, 3), dtype=np.uint8)
        for t in range(frames):
            phase = (xx + 3 * t + 17 * v) % w * (255 / w)
            video[t, ..., 0] = phase.astype(np.uint8)
            video[t, ..., 1] = ((yy + 2 * t) % h * (255 / h)).astype(np.uint8)
            video[t, ..., 2] = 128
            video[t] = np.clip(video[t].astype(np.int16) + texture - 30, 0, 255).astype(np.uint8)
        path = root / f"{h}x{w}_{v:03d}.mp4"
        write_video(path, video, fps=fps)  # MPEG-4 Part 2, GOP 12, no B-frames
        paths.append(str(path))
    return paths


def run_loader(dataset: VideoDataset, clips: int, workers: int, batch_size: int):
    """Clips/s of the loader (timed from the first batch, so worker start-up is excluded).

    Returns (clips_per_s, [(video index, clip start)] of every clip served, first batch).
    """
    sampler = RandomSampler(dataset, replacement=True, num_samples=clips,
                            generator=torch.Generator().manual_seed(workers))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=collate)
    served, first, start_time, timed = [], None, None, 0
    for batch in loader:
        served += list(zip(batch["index"].tolist(), batch["start"][:, 0].tolist()))
        if first is None:
            first, start_time = batch, time.perf_counter()
        else:
            timed += len(batch["index"])
    elapsed = time.perf_counter() - start_time
    return timed / elapsed, served, first


def bare_decode(path: str, indices: np.ndarray) -> np.ndarray:
    """The plainest PyAV read of ``indices`` (ascending): open, seek, decode forward, keep wanted."""
    wanted = set(indices.tolist())
    got = {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps, tb = stream.average_rate, stream.time_base
        container.seek(int(indices[0] / fps / tb), stream=stream, backward=True)
        for frame in container.decode(stream):
            number = int(round(frame.pts * tb * fps))
            if number in wanted:
                got[number] = frame.to_ndarray(format="rgb24")
            if number >= indices[-1]:
                break
    return np.stack([got[i] for i in indices.tolist()])


def run_bare(paths: list[str], served: list[tuple[int, int]]) -> float:
    offsets = np.arange(CLIP_LEN) * STRIDE
    start_time = time.perf_counter()
    for video, start in served:
        bare_decode(paths[video], start + offsets)
    return len(served) / (time.perf_counter() - start_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=12, help="videos per size")
    parser.add_argument("--frames", type=int, default=75, help="frames per video (25 fps)")
    parser.add_argument("--clips", type=int, default=240, help="clips per measurement (64x64; a quarter at 320x240)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    with tempfile.TemporaryDirectory(prefix="vidssl-bench-") as tmp:
        for name, size in SIZES.items():
            paths = make_videos(Path(tmp), size, args.videos, args.frames, fps=25.0)
            catalog = Catalog([VideoRecord(p, 0) for p in paths], ["all"], f"bench-{name}")
            dataset = VideoDataset(catalog, RandomClipWithStart(), frame_size=None, seed=0)
            clips = args.clips if size[0] <= 64 else max(args.clips // 4, 4 * args.batch_size)
            parallel, served, first = run_loader(dataset, clips, args.workers, args.batch_size)
            serial, served_serial, serial_first = run_loader(dataset, clips, 0, args.batch_size)
            # Same frames: the bare loop must reproduce the loader's first batch exactly.
            for row, (video, start) in enumerate(served[:len(first["index"])]):
                expected = first["clips"][row, 0].numpy()
                if not np.array_equal(bare_decode(paths[video], start + np.arange(CLIP_LEN) * STRIDE), expected):
                    raise SystemExit(f"bare decode differs from the loader for {paths[video]} start {start}")
            bare = run_bare(paths, served_serial[args.batch_size:])
            cache = FrameCache(Path(tmp) / "frames", None)
            for path in paths:  # warm: the first epoch of a run fills it
                cache.frames(path)
            cached_dataset = VideoDataset(catalog, RandomClipWithStart(), frame_size=None, seed=0, frame_cache=cache)
            cached, _, cached_first = run_loader(cached_dataset, clips, 0, args.batch_size)
            if not torch.equal(cached_first["clips"], serial_first["clips"]):  # same sampler seed, same clips
                raise SystemExit("the frame cache serves other frames than decoding")
            rows.append((name, parallel, serial, cached, bare))

    print(f"\nloader vs bare PyAV: random {CLIP_LEN}-frame clips at stride {STRIDE}, MPEG-4, "
          f"{args.videos} videos x {args.frames} frames per size, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch thread(s)")
    header = (f"{'size':>8} | {f'loader {args.workers}w clips/s':>20} | {'loader 0w clips/s':>17} | "
              f"{'cached 0w clips/s':>17} | {'bare PyAV clips/s':>17} | {f'{args.workers}w / bare':>10} | "
              f"{'0w / bare':>9} | {'cached / bare':>13}")
    print(header)
    print("-" * len(header))
    for name, parallel, serial, cached, bare in rows:
        print(f"{name:>8} | {parallel:>20.1f} | {serial:>17.1f} | {cached:>17.1f} | {bare:>17.1f} | "
              f"{parallel / bare:>9.2f}x | {serial / bare:>8.2f}x | {cached / bare:>12.2f}x")


if __name__ == "__main__":
    main()
