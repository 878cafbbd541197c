"""Cost of the motion methods' steps against a MoCo step of the same backbone and batch, in one run.

A step is the method's forward (augmentation on the device, query and key encoders, queue) and
the backward of its loss, with an SGD update. Timed, interleaved round by round:

  * moco: ``vidssl.methods.moco`` (two random crops);
  * mcl none: MCL's motion-focused views (the batched box search on the S-motion, one transfer)
    and MoCo's loss, no alignment loss: the cost of section 3.2;
  * mcl v1: plus eq. (4) on the last convolution's feature map (first order only);
  * mcl v3: the default, eq. (7) on the weighted gradient map: ``torch.autograd.grad`` of
    ``q . k+`` w.r.t. that map with ``create_graph=True``, then the second-order backward;
  * dsm-triplet shift: DSM (Triplet), eq. 5, with the TPS-warped positive and the shifted
    negative (the demo's row): three views forward and backward;
  * dsm-triplet shift+flow: plus flow scaling (eq. 3) of the negative (Table 4's M-disturb);
  * dsm shift+flow: eq. 7 with the key encoder and the queue (the paper's default);
  * cmd: context matching against an I-frame (I-network R2D-10) plus motion prediction of 8 frames
    of motion vectors with 3 hard negatives through the M-network (R3D-10, 2 channels) at two thirds
    of the crop, at configs/demo/cmd.yaml's head and Transformer sizes: one clip per video.

Printed: ms per step (median and best of the rounds after a warm-up; on shared cores the best is
the steadier figure) and each as a ratio over moco. MCL's target is mcl v3 / moco <= 1.3: between
the map and ``q`` lie only the last block's BN, shortcut add and ReLU, the global pool and the MLP
head, so the extra backward pass is short. DSM has no target: it encodes three clips where MoCo
encodes two, so about 1.5x is its floor. Nor has cmd: beside the V-network it runs the I-network on
one frame and the M-network on four motion clips.

    .venv/bin/python benchmarks/bench_method_step.py [--methods mcl,dsm,cmd] [--backbone r3d] [--depth 10]
        [--width 16] [--batch 16] [--frames 8] [--size 64] [--crop 56] [--steps 8] [--threads 1] [--device cpu]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from vidssl.data.augment import ClipAugment
from vidssl.methods.base import build_method, method_config
from vidssl.models import build_backbone


def build(args, name, **method):
    torch.manual_seed(0)
    kw = {"depth": args.depth} if args.backbone.startswith("r") else {}
    backbone = build_backbone(args.backbone, width=args.width, **kw)
    common = {"queue_size": 4096, "proj_dim": 128, "clip_len": args.frames}
    if not name.startswith("dsm"):
        common["proj_hidden"] = 2048
    if name == "cmd":  # configs/demo/cmd.yaml's heads, Transformer and motion size (no queue)
        common = {"clip_len": args.frames, "stride": 2, "proj_hidden": 256, "proj_dim": 128, "d_model": 64,
                  "nhead": 4, "encoder_layers": 1, "decoder_layers": 2, "ffn_dim": 128,
                  "motion_size": args.crop * 2 // 3}
    cfg = method_config(name, {"name": name, **common, **method})
    model = build_method(name, backbone, cfg, 8, ClipAugment(crop_size=args.crop)).to(args.device)
    return model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)


def step(model, opt, batch, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model(batch)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="mcl,dsm,cmd", help="which methods to time beside moco (mcl, dsm, cmd)")
    parser.add_argument("--backbone", default="r3d")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="delivered frame side")
    parser.add_argument("--crop", type=int, default=56)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    b, t, s = args.batch, args.frames, args.size
    clips = torch.randint(0, 256, (b, 2, t, s, s, 3), dtype=torch.uint8, generator=g).to(device)
    motion = torch.zeros(b, 2, t, s, s)
    motion[..., s // 8:s // 2, s // 3:s - s // 8] = torch.rand(b, 2, t, s // 2 - s // 8, s - s // 8 - s // 3, generator=g)
    motion = motion.to(device)
    variants = {"moco": build(args, "moco")}
    if "mcl" in args.methods:
        variants.update({"mcl none": build(args, "mcl", alignment="none"),
                         "mcl v1": build(args, "mcl", alignment="v1"), "mcl v3": build(args, "mcl", alignment="v3")})
    if "dsm" in args.methods:
        variants.update({"dsm-triplet shift": build(args, "dsm-triplet", flow_scaling=False, stride=2),
                         "dsm-triplet shift+flow": build(args, "dsm-triplet", flow_scaling=True, stride=2),
                         "dsm shift+flow": build(args, "dsm", flow_scaling=True, stride=2)})
    if "cmd" in args.methods:
        variants["cmd"] = build(args, "cmd")
    # DSM's three rows (c1, c2, c3) of one clip and the flow between the third row's frames.
    triple = torch.cat([clips, clips[:, :1]], dim=1)
    flow = (torch.randn(b, t - 1, s, s, 2, generator=g) * 2).to(device)
    vectors = (torch.randn(b, 8, -(-s // 4), -(-s // 4), 2, generator=g) * 2).to(device)  # the decoder's 1/4 grid
    times = {name: [] for name in variants}
    for i in range(args.steps + 1):
        for name, (model, opt) in variants.items():
            batch = {"clips": clips, "index": torch.arange(b), "generator": torch.Generator().manual_seed(i),
                     "epoch": 0.0}
            if name.startswith("mcl"):
                batch["motion"] = motion
            elif name.startswith("dsm"):
                batch.update(clips=triple, flow=flow, shift=torch.full((b,), 4))
            elif name == "cmd":  # one clip, its I-frame, 8 frames of vectors and 3 hard negatives
                batch.update(clips=clips[:, :1], iframe=clips[:, 0, :1], motion=vectors,
                             motion_negatives=vectors[:, None].expand(-1, 3, -1, -1, -1, -1))
            elapsed = step(model, opt, batch, device)
            if i:  # the first round warms up
                times[name].append(elapsed)
    print(f"{args.backbone}-{args.depth if args.backbone.startswith('r') else ''} width {args.width}, batch {b} "
          f"(moco, mcl: 2 views; dsm: 3; cmd: 1 + I-frame + 4 motion clips) x {t} frames, {s} px -> {args.crop} px, {args.device}, {args.threads} threads, "
          f"median of {args.steps} steps")
    base, best = statistics.median(times["moco"]), min(times["moco"])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:24s} median {med * 1000:8.1f} ms/step  ratio to moco {med / base:5.2f}x   "
              f"best {min(values) * 1000:8.1f} ms/step  ratio {min(values) / best:5.2f}x")


if __name__ == "__main__":
    main()
