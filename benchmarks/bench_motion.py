"""Speed of the motion signals against bare baselines, on one core.

What it measures (all single-threaded: decoder threads 1, OpenCV threads 1, torch threads 1):

1. Motion vectors: ``read_compressed(..., iframes=False)`` (decode with vector export + dense
   maps at 1/4) in frames/s on a 340x256 MPEG-4 Part 2 video in the CoViAR convention
   (GOP 12, no B-frames, ``-q:v 1`` as `vidssl extract reencode` writes it), against the bare
   PyAV loop that decodes the same file with ``flags2=+export_mvs`` and fetches each frame's
   vectors as a numpy array without densifying them. Target: >= 3,000 frames/s and >= 0.8x bare.
2. I-frames: ``read_compressed(..., motion_vectors=False)`` (key frames only, picture types
   from packet headers) against a full decode of every frame to RGB of the same file.
3. Motion maps at 112x112: DIS flow + MCL eq. (1) in frame pairs/s (target >= 1,000), and
   TV-L1 for reference; with the end-point error of both on a generated clip whose true
   flow is known (textured objects translating over a panning textured background).

The videos are generated into a temporary folder. Rates are per CPU-second of this
process (``time.process_time``; everything runs single-threaded, so that is one core's
throughput and other load on a shared machine changes it little); ``--clock wall`` uses
wall-clock time instead. Ratios come from one run, each pair timed interleaved, best of
``--repeats``. About a minute on two cores.

    .venv/bin/python benchmarks/bench_motion.py [--frames 300] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from vidssl.video.compressed import read_compressed
from vidssl.video.flow import flow_pairs, motion_map
from vidssl.video.writer import write_video


def textured(rng: np.random.Generator, h: int, w: int, scales=(4, 16, 64)) -> np.ndarray:
    """Smooth multi-scale texture (sums of upsampled noise): what natural images look like to an encoder."""
    out = np.zeros((h, w, 3), np.float32)
    for s in scales:
        small = rng.normal(size=(max(2, h // s), max(2, w // s), 3)).astype(np.float32)
        out += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * (s ** 0.5)
    out = (out - out.min()) / (out.max() - out.min()) * 255
    return out.astype(np.uint8)


def scene(h: int, w: int, frames: int, seed: int = 0, pan=(1, 0), objects=3):
    """Frames [T, H, W, 3] and their true forward flow [T-1, H, W, 2]: a panning background and
    textured squares each translating by a fixed integer number of pixels per frame."""
    rng = np.random.default_rng(seed)
    big = textured(rng, h + abs(pan[1]) * frames + 8, w + abs(pan[0]) * frames + 8)
    side = max(12, min(h, w) // 4)
    objs = [(textured(rng, side, side, scales=(2, 6)), int(rng.integers(0, h - side)), int(rng.integers(0, w - side)),
             int(rng.integers(-3, 4)), int(rng.integers(-2, 3))) for _ in range(objects)]
    video = np.empty((frames, h, w, 3), np.uint8)
    flow = np.zeros((frames, h, w, 2), np.float32)
    for t in range(frames):
        # The camera moves by +pan: the background content moves by -pan... expressed as the
        # background sliding right by pan[0] px per frame.
        x0 = abs(pan[0]) * frames - pan[0] * t
        y0 = abs(pan[1]) * frames - pan[1] * t
        video[t] = big[y0:y0 + h, x0:x0 + w]
        flow[t] = pan
        for tex, top, left, dx, dy in objs:
            y = int(np.clip(top + dy * t, 0, h - side))
            x = int(np.clip(left + dx * t, 0, w - side))
            y1 = int(np.clip(top + dy * (t + 1), 0, h - side))
            x1 = int(np.clip(left + dx * (t + 1), 0, w - side))
            video[t, y:y + side, x:x + side] = tex
            flow[t, y:y + side, x:x + side] = (x1 - x, y1 - y)
    return video, flow[:-1]


CLOCK = time.process_time  # set from --clock


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return min(times)


def bare_export(path: Path) -> int:
    """Decode with vector export and fetch each frame's vectors as numpy, nothing else."""
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        stream.codec_context.options = {"flags2": "+export_mvs"}
        for frame in container.decode(stream):
            side = frame.side_data.get("MOTION_VECTORS")
            if side is not None:
                side.to_ndarray()
            n += 1
    return n


def full_rgb_decode(path: Path) -> int:
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n


def bench_vectors(folder: Path, frames: int, repeats: int, qscale: int) -> dict:
    video, _ = scene(256, 340, frames, seed=1, pan=(1, 0), objects=4)
    path = folder / f"coviar_q{qscale}.avi"
    write_video(path, video, codec="mpeg4", gop=12, max_b_frames=0, qscale=None,  # as reencode_video does
                options={"qmin": str(qscale), "qmax": str(qscale)})
    n = bare_export(path)
    assert read_compressed(path, iframes=False).motion_vectors.shape == (n, 64, 85, 2)
    t_bare, t_ours = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        t_bare.append(best(lambda: bare_export(path), 1))
        t_ours.append(best(lambda: read_compressed(path, iframes=False), 1))
    t_key = best(lambda: read_compressed(path, motion_vectors=False), repeats)
    t_full = best(lambda: full_rgb_decode(path), repeats)
    return {"file": f"340x256 MPEG-4, GOP 12, no B-frames, q={qscale}, {n} frames, "
                    f"{path.stat().st_size / n / 1024:.1f} KiB/frame",
            "mv_densify_fps": round(n / min(t_ours)), "bare_export_fps": round(n / min(t_bare)),
            "mv_vs_bare": round(min(t_bare) / min(t_ours), 2),
            "iframe_only_fps": round(n / t_key), "full_rgb_decode_fps": round(n / t_full),
            "iframe_only_speedup": round(t_full / t_key, 1)}


def endpoint_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(estimate - truth, axis=-1).mean())


def bench_flow(pairs: int, repeats: int) -> dict:
    video, truth = scene(112, 112, pairs + 1, seed=2, pan=(1, 0), objects=3)
    out = {}
    for method, count in (("dis", pairs), ("tvl1", min(pairs, 6))):
        first, second = video[:count], video[1:count + 1]
        seconds = best(lambda: motion_map(flow_pairs(first, second, method)), repeats if method == "dis" else 1)
        flow = flow_pairs(first, second, method)
        out[method] = {"pairs_per_s": round(count / seconds, 1),
                       "epe_px": round(endpoint_error(flow, truth[:count]), 3)}
    out["dis_speedup_over_tvl1"] = round(out["dis"]["pairs_per_s"] / out["tvl1"]["pairs_per_s"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames of the 340x256 video")
    parser.add_argument("--pairs", type=int, default=200, help="frame pairs for the 112x112 flow")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="rates per CPU-second of this process (default) or per wall-clock second")
    parser.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        results = {"motion_vectors": bench_vectors(Path(tmp), args.frames, args.repeats, qscale=1),
                   "motion_vectors_q3": bench_vectors(Path(tmp), args.frames, args.repeats, qscale=3),
                   "flow_112": bench_flow(args.pairs, args.repeats)}
    results["clock"] = args.clock
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
