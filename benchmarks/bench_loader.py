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

A second table measures requests with signals (``vidssl.data.views``), each against a bare loop
of the same work in the main process: ``rgb + flow`` (the clip plus DIS flow between its
consecutive frames, computed on the fly; bare: the PyAV decode above, OpenCV DIS on the same
frame pairs and the uint8 quantisation) and ``rgb + motion-vectors`` (the clip plus its frames'
decoder motion vectors; bare: one PyAV decode with ``+export_mvs`` from the start of the file to
the clip's last frame, keeping the wanted frames' RGB and raw motion-vector side data). The
loader computes the vectors on the fly (its whole-video decode, no cache) and, in the ``cached``
column, reads them from a warm ``vidssl extract motion-vectors`` cache.

``--readers`` prints another table instead: ``VideoReader`` against decord2 (random 16-frame clips,
a reader opened per clip, one thread, native size and 112x112, on 320x240 MPEG-4 without and with
B-frames and H.264 written into a temporary folder). decord2 is not a vidssl dependency; without it
its column reads "not installed".

    .venv/bin/python benchmarks/bench_loader.py [--videos 12] [--clips 240] [--workers 2]
    .venv/bin/python benchmarks/bench_loader.py --readers [--reader-clips 60] [--reader-rounds 3]
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
from vidssl.data.signals import SignalSet
from vidssl.data.views import Request, Requests
from vidssl.video.frame_cache import FrameCache
from vidssl.video.writer import write_video

CLIP_LEN, STRIDE = 8, 2
SIZES = {"64x64": (64, 64), "320x240": (240, 320)}  # name -> (H, W)


@dataclass(frozen=True)
class RandomClipWithStart:
    """``SingleClip`` that also reports where its clip starts, so the bare loop can replay it."""

    clip_len: int = CLIP_LEN
    stride: int = STRIDE

    signal: str | None = None  # also request "flow" (between the clip's frames) or "motion_vectors" (of its frames)

    def __call__(self, info, rng: np.random.Generator) -> Requests:
        indices = random_clip_indices(info.num_frames, self.clip_len, self.stride, rng)
        requests = Requests({"clips": Request("rgb", indices[None])}, labels={"start": [int(indices[0])]})
        if self.signal == "flow":
            requests["flow"] = Request("flow", indices, method="dis", dtype="uint8")
        elif self.signal == "motion_vectors":
            requests["motion_vectors"] = Request("motion_vectors", indices)
        return requests


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


def bare_flow(path: str, indices: np.ndarray) -> np.ndarray:
    """The bare loop's frames, then DIS flow between consecutive ones and the uint8 storage codes."""
    from vidssl.video.cache import quantize_flow
    from vidssl.video.flow import flow_pairs

    frames = bare_decode(path, indices)
    return quantize_flow(flow_pairs(frames[:-1], frames[1:], "dis"))


def bare_motion_vectors(path: str, indices: np.ndarray) -> list:
    """One PyAV decode with motion-vector export up to the clip's last frame: RGB and raw vectors
    of the wanted frames."""
    wanted = set(indices.tolist())
    got = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"flags2": "+export_mvs"}
        for number, frame in enumerate(container.decode(stream)):
            if number in wanted:
                side = frame.side_data.get("MOTION_VECTORS")
                got.append((frame.to_ndarray(format="rgb24"), side.to_ndarray() if side is not None else None))
            if number >= indices[-1]:
                break
    return got


def run_bare_signal(paths: list[str], served: list[tuple[int, int]], signal: str) -> float:
    offsets = np.arange(CLIP_LEN) * STRIDE
    work = bare_flow if signal == "flow" else bare_motion_vectors
    start_time = time.perf_counter()
    for video, start in served:
        work(paths[video], start + offsets)
    return len(served) / (time.perf_counter() - start_time)


def signal_rows(tmp: Path, name: str, paths: list[str], catalog: Catalog, clips: int, args) -> list[tuple]:
    """(size, request, loader Nw, loader 0w, cached 0w or None, bare) for rgb + flow and rgb + motion-vectors."""
    from vidssl.extract import extract_signals

    rows = []
    for signal in ("flow", "motion_vectors"):
        sampler = RandomClipWithStart(signal=signal)
        dataset = VideoDataset(catalog, sampler, frame_size=None, seed=0)
        parallel, _, first = run_loader(dataset, clips, args.workers, args.batch_size)
        serial, served, serial_first = run_loader(dataset, clips, 0, args.batch_size)
        if signal == "flow":  # same work: the bare loop's flow codes are the loader's
            video, start = served[0]
            if not np.array_equal(bare_flow(paths[video], start + np.arange(CLIP_LEN) * STRIDE),
                                  serial_first["flow"][0].numpy()):
                raise SystemExit(f"bare flow differs from the loader for {paths[video]} start {start}")
        bare = run_bare_signal(paths, served[args.batch_size:], signal)
        cached = None
        if signal == "motion_vectors":
            cache_dir = tmp / f"signals-{name}"
            extract_signals(paths, "motion-vectors", cache_dir, root=tmp, progress=False)
            warm = VideoDataset(catalog, sampler, frame_size=None, seed=0,
                                signal_set=SignalSet(cache_dir=cache_dir, root=tmp, frame_size=None))
            cached, _, cached_first = run_loader(warm, clips, 0, args.batch_size)
            if not torch.equal(cached_first["motion_vectors"], serial_first["motion_vectors"]):
                raise SystemExit("the signal cache serves other motion vectors than decoding")
        label = "rgb + flow" if signal == "flow" else "rgb + motion-vectors"
        rows.append((name, label, parallel, serial, cached, bare))
    return rows


# -- VideoReader against decord2 -------------------------------------------------------------------

READER_CLIP = 16
READER_KINDS = {  # name -> write_video arguments: 320x240, 25 fps, long GOPs as real Xvid / x264 files have
    "Xvid (no B)": dict(suffix=".avi", codec="mpeg4", max_b_frames=0, bit_rate=600_000, qscale=None),
    "Xvid (B-frames)": dict(suffix=".avi", codec="mpeg4", max_b_frames=2, bit_rate=600_000, qscale=None),
    "H.264": dict(suffix=".mp4", codec="libx264", max_b_frames=3, options={"crf": "23", "preset": "medium"}),
}


def reader_videos(root: Path, kind: str, count: int, frames: int, gop: int) -> list[str]:
    """320x240 clips of one kind: a slowly panning blurred texture, a moving sharp patch, sensor noise."""
    import cv2

    spec = dict(READER_KINDS[kind])
    suffix = spec.pop("suffix")
    h, w = 240, 320
    paths = []
    for v in range(count):
        rng = np.random.default_rng(v)
        background = cv2.GaussianBlur(rng.integers(0, 256, (2 * h, 2 * w, 3), dtype=np.uint8), (0, 0), 3)
        patch = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        video = np.empty((frames, h, w, 3), dtype=np.uint8)
        for t in range(frames):
            ox, oy = int(40 + 30 * np.sin(t / 25)), int(20 + 0.3 * t) % h
            frame = background[oy:oy + h, ox:ox + w].astype(np.int16)
            x, y = 20 + (3 * t) % (w - 80), int(60 + 40 * np.sin(t / 10))
            frame[y:y + 48, x:x + 48] = patch
            frame += rng.integers(-6, 7, (h, w, 1), dtype=np.int16)
            video[t] = np.clip(frame, 0, 255).astype(np.uint8)
        path = root / f"{kind.split()[0].lower().replace('.', '')}{spec['max_b_frames']}_{v}{suffix}"
        write_video(path, video, gop=gop, **spec)
        paths.append(str(path))
    return paths


def reader_clip_vidssl(path: str, indices: np.ndarray, size) -> np.ndarray:
    from vidssl.video.reader import VideoReader

    with VideoReader(path, size=size) as reader:  # opened per clip, as a loader worker does
        return reader.read(indices)


def reader_clip_decord(path: str, indices: np.ndarray, size) -> np.ndarray:
    import decord

    extra = {} if size is None else {"height": size[0], "width": size[1]}
    reader = decord.VideoReader(path, num_threads=1, **extra)
    return reader.get_batch(indices.tolist()).asnumpy()


def reader_rows(args) -> list[tuple]:
    """(kind, size, vidssl clips/s, decord2 clips/s or None) per video kind and output size.

    Both readers take turns clip by clip (so load from other processes hits both alike), over
    ``--reader-rounds`` passes; the best pass counts. Before timing, vidssl's clips are checked
    against one sequential PyAV decode of each video (frame i is frame i).
    """
    try:
        import decord  # noqa: F401
    except ImportError:
        decord = None
        print("decord2 is not installed: its rows are skipped (`pip install decord2` into the venv to compare; "
              "it is not a vidssl dependency)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidssl-bench-readers-") as tmp:
        for kind in READER_KINDS:
            paths = reader_videos(Path(tmp), kind, args.reader_videos, args.reader_frames, args.reader_gop)
            rng = np.random.default_rng(0)
            clips = []
            for _ in range(args.reader_clips):
                video = int(rng.integers(len(paths)))
                start = int(rng.integers(0, args.reader_frames - READER_CLIP + 1))
                clips.append((paths[video], start + np.arange(READER_CLIP)))
            with av.open(paths[0]) as container:  # exactness: against a plain sequential decode
                reference = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
            for start in (0, args.reader_frames // 2, args.reader_frames - READER_CLIP):
                wanted = start + np.arange(READER_CLIP)
                if not np.array_equal(reader_clip_vidssl(paths[0], wanted, None), reference[wanted]):
                    raise SystemExit(f"VideoReader differs from a sequential decode: {paths[0]} frames {wanted[0]}..")
            for size in (None, (112, 112)):
                readers = {"vidssl": reader_clip_vidssl}
                if decord is not None:
                    readers["decord2"] = reader_clip_decord
                best = dict.fromkeys(readers, 0.0)
                for fn in readers.values():  # warm-up: imports, page cache
                    fn(*clips[0], size)
                for _ in range(args.reader_rounds):
                    spent = dict.fromkeys(readers, 0.0)
                    for i, (path, indices) in enumerate(clips):
                        for name in (list(readers) if i % 2 == 0 else list(readers)[::-1]):
                            start_time = time.perf_counter()
                            readers[name](path, indices, size)
                            spent[name] += time.perf_counter() - start_time
                    for name in readers:
                        best[name] = max(best[name], len(clips) / spent[name])
                rows.append((kind, "native" if size is None else f"{size[1]}x{size[0]}", best["vidssl"],
                             best.get("decord2")))
    return rows


def print_reader_table(rows: list[tuple], args) -> None:
    print(f"\nVideoReader vs decord2: random {READER_CLIP}-frame clips, a reader opened per clip, one thread, "
          f"320x240 sources ({args.reader_videos} videos x {args.reader_frames} frames, GOP {args.reader_gop}), "
          f"{args.reader_clips} clips, best of {args.reader_rounds}")
    header = f"{'source':>16} | {'output':>7} | {'vidssl clips/s':>14} | {'decord2 clips/s':>15} | {'vidssl / decord2':>16}"
    print(header)
    print("-" * len(header))
    for kind, size, mine, theirs in rows:
        other = f"{theirs:>15.1f}" if theirs is not None else f"{'(not installed)':>15}"
        ratio = f"{mine / theirs:>15.2f}x" if theirs is not None else f"{'-':>16}"
        print(f"{kind:>16} | {size:>7} | {mine:>14.1f} | {other} | {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=12, help="videos per size")
    parser.add_argument("--frames", type=int, default=75, help="frames per video (25 fps)")
    parser.add_argument("--clips", type=int, default=240, help="clips per measurement (64x64; a quarter at 320x240)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--readers", action="store_true",
                        help="only the VideoReader vs decord2 table (random 16-frame clips of 320x240 videos)")
    parser.add_argument("--reader-videos", type=int, default=3, help="videos per kind for --readers")
    parser.add_argument("--reader-frames", type=int, default=300, help="frames per video for --readers")
    parser.add_argument("--reader-gop", type=int, default=250, help="keyframe interval for --readers")
    parser.add_argument("--reader-clips", type=int, default=60, help="clips per measurement for --readers")
    parser.add_argument("--reader-rounds", type=int, default=3, help="passes per measurement (best counts)")
    args = parser.parse_args()
    if args.readers:
        print_reader_table(reader_rows(args), args)
        return
    torch.set_num_threads(1)

    rows, signal_table = [], []
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
            sig_clips = clips // 2 if size[0] <= 64 else max(clips // 2, 2 * args.batch_size)
            signal_table += signal_rows(Path(tmp), name, paths, catalog, sig_clips, args)

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
    print_signal_table(signal_table, args)


def print_signal_table(table: list[tuple], args) -> None:
    print(f"\nrequests with signals vs a bare loop of the same work (clips/s; cached: signals from a warm "
          f"`vidssl extract` cache)")
    header = (f"{'size':>8} | {'request':>20} | {f'loader {args.workers}w':>9} | {'loader 0w':>9} | "
              f"{'cached 0w':>9} | {'bare':>7} | {f'{args.workers}w / bare':>10} | {'0w / bare':>9} | "
              f"{'cached / bare':>13}")
    print(header)
    print("-" * len(header))
    for name, label, parallel, serial, cached, bare in table:
        cached_s = f"{cached:>9.1f}" if cached is not None else f"{'-':>9}"
        ratio = f"{cached / bare:>12.2f}x" if cached is not None else f"{'-':>13}"
        print(f"{name:>8} | {label:>20} | {parallel:>9.1f} | {serial:>9.1f} | {cached_s} | {bare:>7.1f} | "
              f"{parallel / bare:>9.2f}x | {serial / bare:>8.2f}x | {ratio}")


if __name__ == "__main__":
    main()
