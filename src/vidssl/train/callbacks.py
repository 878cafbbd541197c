"""Checkpoint I/O and logging pieces the trainer plugs into Lightning."""
from __future__ import annotations

import errno
import json
import os
import pickle
import re
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from vidssl.io import DiskFullError, atomic_file, remove_stale_temporaries

__all__ = ["AtomicCheckpointIO", "JsonlMetrics", "UnsafeCheckpointError", "load_checkpoint_safely"]


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds pickled Python objects beyond tensors and plain values: refused unloaded."""


def load_checkpoint_safely(path: str | os.PathLike, map_location=None) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors that name the file and say what to do.

    A checkpoint that carries code (a pickled object with a ``__reduce__``, a class to import) is
    refused before anything of it runs: :class:`UnsafeCheckpointError`. A damaged one (truncated,
    not a checkpoint) is a ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f" (it imports {found.group(1)})" if found else ""
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the checkpoint holds Python objects other than tensors and plain "
            f"values{what}, which could run code when unpickled. vidssl loads checkpoints with "
            f"weights_only=True; resume from a checkpoint vidssl wrote.") from None
    except (RuntimeError, KeyError, EOFError, ValueError, pickle.PickleError) as err:
        # torch's first sentence says what failed ("PytorchStreamReader failed reading zip archive: ...").
        first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
        reason = first if isinstance(err, RuntimeError) and first else f"{type(err).__name__}: {first}"
        raise ValueError(f"{path}: cannot read the checkpoint, it is damaged or not a PyTorch checkpoint "
                         f"({reason}); delete it to start over, or resume from another copy") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temp file and rename, so a crash never leaves a half-written one
    (a full disk is a ``DiskFullError`` naming the file, and the previous checkpoint stays);
    load with ``weights_only=True`` (checkpoints hold tensors and plain values only)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        # Through a Python file object, so a write error (ENOSPC) surfaces as an OSError.
        with atomic_file(path, "wb") as f:
            torch.save(checkpoint, f)
        # A temporary checkpoint a killed run left is several hundred MB on a real model.
        remove_stale_temporaries(Path(path).parent, "*.ckpt")

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_checkpoint_safely(path, map_location)


class JsonlMetrics(L.Callback):
    """Append the logged training metrics to ``metrics.jsonl`` every N steps (rank 0 only).

    Lines carry the global step, so after a resume the few steps replayed since the last
    checkpoint can be told apart (the later line wins).
    """

    def __init__(self, path: str | os.PathLike, every_n_steps: int = 10):
        self.path = Path(path)
        self.every = max(1, every_n_steps)
        self._start = time.perf_counter()

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            _drop_partial_last_line(self.path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(pl_module.batches_seen)
        if trainer.global_rank != 0 or step % self.every:
            return
        record = {"step": step, "epoch": pl_module.current_epoch_from_step(),
                  "time": round(time.perf_counter() - self._start, 3)}
        for key, value in trainer.callback_metrics.items():
            if key.startswith("train/"):
                record[key[len("train/"):]] = float(value)
        try:
            with open(self.path, "a") as f:  # one short write: a kill leaves whole lines
                f.write(json.dumps(record) + "\n")
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise DiskFullError(self.path) from err
            raise


def _drop_partial_last_line(path: Path) -> None:
    """Cut a last line left without its newline (a run killed, or a disk filled, mid-append), so
    the lines a resumed run appends are not glued onto it."""
    try:
        with open(path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass
