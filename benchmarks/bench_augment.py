"""Speed of the clip geometry: DSM's thin-plate-spline warp, fast path against kornia per frame.

What it measures, on a batch of float clips [N, T, H, W, 3] (default 8 clips x 16 frames x
112x112, one random TPS per clip as DSM draws it: a 4x4 grid of destination points, offsets
up to a tenth of the frame):

1. bare: one ``F.grid_sample`` of every clip's frames through a sampling grid computed
   beforehand (the floor: the resampling alone, no spline).
2. vidssl ``tps_warp``: per clip one spline solve (host), one sampling grid (device) and one
   ``grid_sample`` for all T frames (the T frames as 3T channels of one image).
3. kornia per frame: ``warp_image_tps`` on the N*T frames, with the spline solved once per
   clip and its weights repeated for the frames (kornia's own solve is not what is timed
   against; the per-frame grid evaluation is).
4. crop: ``warp_clips`` with a random resized crop to the same size (``ClipAugment``'s
   geometry), for scale.

Printed: ms per batch (best of ``--repeats``, each timed over ``--iters`` calls, the
methods interleaved) and each as a ratio over the bare grid_sample, plus kornia per frame
over vidssl. The outputs of 2 and 3 are checked equal first, so both do the same work. On a
CUDA device (``--device cuda``) every timing synchronises once at its end. A few seconds on
two cores at ``--size 56 --frames 8``.

    .venv/bin/python benchmarks/bench_augment.py [--clips 8] [--frames 16] [--size 112] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_tps_transform, warp_image_tps

from vidssl.data.geometry import sample_geometry, sample_tps, tps_warp, warp_clips


def timed(fn, iters: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over ``iters`` calls (one sync at the end on CUDA)."""
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112, help="frame side in pixels")
    parser.add_argument("--grid", type=int, default=4, help="TPS control points per side")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n, t, s = args.clips, args.frames, args.size
    g = torch.Generator().manual_seed(0)
    clips = torch.rand(n, t, s, s, 3, generator=g).to(device)
    tps = sample_tps(n, (s, s), grid=args.grid, max_offset=0.1, generator=g)
    crop = sample_geometry(n, (s, s), (s, s), scale=(0.5, 1.0), generator=g)

    # kornia's frame: normalised coordinates; solve once per clip, weights repeated per frame.
    norm = torch.tensor([2.0 / s, 2.0 / s])
    dst, src = tps.dst * norm - 1, tps.src * norm - 1
    kernel, affine = get_tps_transform(dst.double(), src.double())
    per_frame = [v.float().repeat_interleave(t, dim=0).to(device) for v in (src, kernel, affine)]
    frames = clips.permute(0, 1, 4, 2, 3).reshape(n * t, 3, s, s)

    def kornia_per_frame():
        out = warp_image_tps(frames, *per_frame, padding_mode="border")
        return out.view(n, t, 3, s, s).permute(0, 1, 3, 4, 2)

    def vidssl_tps():
        return tps_warp(clips, tps)

    folded = clips.permute(0, 1, 4, 2, 3).reshape(n, t * 3, s, s)
    coords = (torch.arange(s, dtype=torch.float32, device=device) + 0.5) * (2.0 / s) - 1
    grid = torch.stack(torch.meshgrid(coords, coords, indexing="xy"), dim=-1).expand(n, s, s, 2).contiguous()

    def bare():
        return F.grid_sample(folded, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def crop_resize():
        return warp_clips(clips, crop)

    diff = float((vidssl_tps() - kornia_per_frame()).abs().max())
    assert diff < 1e-3, f"tps_warp and kornia's warp_image_tps disagree by {diff}"

    cases = {"bare grid_sample": bare, "vidssl tps_warp": vidssl_tps, "kornia per frame": kornia_per_frame,
             "crop+resize+flip": crop_resize}
    best = {name: float("inf") for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            best[name] = min(best[name], timed(fn, args.iters, device))

    print(f"\nTPS warp of {n} clips x {t} frames x {s}x{s} px on {device} "
          f"({args.grid}x{args.grid} control points, torch threads {torch.get_num_threads()}; "
          f"max |vidssl - kornia| = {diff:.1e})")
    header = f"{'':>18} | {'ms / batch':>10} | {'x bare':>7}"
    print(header)
    print("-" * len(header))
    for name, sec in best.items():
        print(f"{name:>18} | {sec * 1e3:>10.2f} | {sec / best['bare grid_sample']:>7.2f}")
    print(f"kornia per frame / vidssl tps_warp: {best['kornia per frame'] / best['vidssl tps_warp']:.1f}x")


if __name__ == "__main__":
    main()
