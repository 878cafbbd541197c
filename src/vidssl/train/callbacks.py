"""Checkpoint I/O and logging pieces the trainer plugs into Lightning."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from vidssl.io import atomic_path

__all__ = ["AtomicCheckpointIO", "JsonlMetrics"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temp file and rename, so a crash never leaves a half-written one;
    load with ``weights_only=True`` (checkpoints hold tensors and plain values only)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class JsonlMetrics(L.Callback):
    """Append the logged training metrics to ``metrics.jsonl`` every N steps (rank 0 only).

    Lines carry the global step, so after a resume the few steps replayed since the last
    checkpoint can be told apart (the later line wins).
    """

    def __init__(self, path: str | os.PathLike, every_n_steps: int = 10):
        self.path = Path(path)
        self.every = max(1, every_n_steps)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(pl_module.batches_seen)
        if trainer.global_rank != 0 or step % self.every:
            return
        record = {"step": step, "epoch": pl_module.current_epoch_from_step(),
                  "time": round(time.perf_counter() - self._start, 3)}
        for key, value in trainer.callback_metrics.items():
            if key.startswith("train/"):
                record[key[len("train/"):]] = float(value)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
