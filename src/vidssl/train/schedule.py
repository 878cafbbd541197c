"""Learning-rate schedules as functions of the optimiser step (warm-up, cosine, step decay)."""
from __future__ import annotations

import math
from typing import Sequence

__all__ = ["lr_factor", "scaled_lr"]


def scaled_lr(base_lr: float, global_batch: int, base_batch: int) -> float:
    """Linear scaling rule (Goyal et al. 2017): lr grows with the global batch."""
    return base_lr * global_batch / base_batch


def lr_factor(step: float, *, total_steps: int, steps_per_epoch: int, schedule: str = "cosine",
              warmup_epochs: float = 0.0, step_epochs: Sequence[int] = (), gamma: float = 0.1) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based; fractional positions allowed)."""
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        span = max(1, total_steps - warmup)
        progress = min(1.0, (step - warmup) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        epoch = step / steps_per_epoch
        return gamma ** sum(epoch >= e for e in step_epochs)
    if schedule == "constant":
        return 1.0
    raise ValueError(f"optim.schedule: unknown schedule {schedule!r} (cosine | step | constant)")
