"""Training-step speed: vidssl's trainer against a bare PyTorch loop on the same model and batch.

Prints, from one run, seconds per step of
  * a bare loop (backbone + linear classifier, cross-entropy, SGD) in fp32,
  * the same bare loop under bf16 autocast with channels_last_3d,
  * vidssl's MethodModule (``supervised``, same backbone/batch) through Lightning, at the
    precision ``trainer.precision=auto`` picks on this machine and at the other one,
and the ratios against the bare loop of the same precision (the trainer's overhead) and
bf16 vs fp32 (whether bf16 pays on this CPU).

    .venv/bin/python benchmarks/bench_train_step.py [--steps 12] [--width 16] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset

from vidssl.config import OptimConfig
from vidssl.data.augment import ClipAugment
from vidssl.methods.base import build_method, method_config
from vidssl.models import build_backbone
from vidssl.train.module import MethodModule
from vidssl.train.run import resolve_precision


def bare_steps(model, head, batch, steps, bf16, channels_last):
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9)
    x, y = batch
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(head(model(x)).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sorted(times[2:])[len(times[2:]) // 2]  # median after warm-up


class Repeat(IterableDataset):
    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


class StepTimer(L.Callback):
    def __init__(self):
        self.times, self._t0 = [], None

    def on_train_batch_start(self, *args):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, *args):
        self.times.append(time.perf_counter() - self._t0)


def trainer_steps(args, clips, labels, precision, channels_last):
    torch.manual_seed(0)
    backbone = build_backbone("r3d", width=args.width, depth=args.depth)
    cfg = method_config("supervised", {"name": "supervised"})
    method = build_method("supervised", backbone, cfg, 8, ClipAugment(crop_size=args.crop), channels_last=channels_last)
    if channels_last:
        method = method.to(memory_format=torch.channels_last_3d)
    module = MethodModule(method, optim=OptimConfig(), lr=0.01, total_steps=args.steps, steps_per_epoch=args.steps,
                          seed=0, max_bad_fraction=1.0)
    batch = {"clips": clips, "label": labels, "index": torch.arange(len(labels)), "skipped": []}
    loader = DataLoader(Repeat(batch), batch_size=None)
    timer = StepTimer()
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=precision, max_steps=args.steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer])
    trainer.fit(module, loader)
    return sorted(timer.times[2:])[len(timer.times[2:]) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--crop", type=int, default=56)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (args.batch, 1, args.frames, 64, 64, 3), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 8, (args.batch,), generator=g)
    x = ClipAugment(crop_size=args.crop)(clips[:, 0], generator=g)

    def fresh():
        torch.manual_seed(0)
        model = build_backbone("r3d", width=args.width, depth=args.depth)
        return model, torch.nn.Linear(model.out_dim, 8)

    print(f"R3D-{args.depth} width {args.width}, batch {args.batch}x3x{args.frames}x{args.crop}x{args.crop}, "
          f"{args.threads} threads, median of {args.steps - 2} steps")
    bare32 = bare_steps(*fresh(), (x, labels), args.steps, bf16=False, channels_last=False)
    bare16 = bare_steps(*fresh(), (x, labels), args.steps, bf16=True, channels_last=True)
    ours32 = trainer_steps(args, clips, labels, "32-true", channels_last=False)
    ours16 = trainer_steps(args, clips, labels, "bf16-mixed", channels_last=True)
    auto = resolve_precision("auto", "cpu")
    print(f"bare fp32                      {bare32 * 1000:8.1f} ms/step")
    print(f"bare bf16 + channels_last_3d   {bare16 * 1000:8.1f} ms/step   bf16/fp32 speed-up {bare32 / bare16:5.2f}x")
    print(f"vidssl fp32                    {ours32 * 1000:8.1f} ms/step   ratio to bare {ours32 / bare32:5.2f}x")
    print(f"vidssl bf16 + channels_last_3d {ours16 * 1000:8.1f} ms/step   ratio to bare {ours16 / bare16:5.2f}x")
    print(f"trainer.precision=auto picks {auto} on this CPU")
    print("(the vidssl step includes on-device augmentation of uint8 clips, which the bare loop skips)")


if __name__ == "__main__":
    main()
