"""One LightningModule trains any Method: optimiser, schedule, precision, skipping and logging.

Optimisation is manual (``automatic_optimization = False``) because the trainer must decide,
after backward, whether a step is safe: a step whose loss or gradient is not finite is skipped
and counted instead of poisoning the weights. Under DDP the gradients are already all-reduced
when that check runs, so every rank reaches the same decision without extra communication.
"""
from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from vidssl.data.dataset import BadVideoTally
from vidssl.train.schedule import lr_factor

__all__ = ["MethodModule", "step_generator"]


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The random stream of one optimiser step on one rank: a function of nothing else, so a
    resumed run draws exactly what an uninterrupted one would have."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009 + rank)


class MethodModule(L.LightningModule):
    def __init__(self, method: torch.nn.Module, *, optim, lr: float, total_steps: int,
                 steps_per_epoch: int, seed: int, max_bad_fraction: float, max_time_seconds: float | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.method = method
        self.optim_cfg = optim
        self.lr = lr
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.tally = BadVideoTally(max_bad_fraction)
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.long))
        # Batches consumed, skipped ones included. Lightning's global_step counts optimiser
        # steps only, so data order and random streams are keyed on this counter instead.
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        # With a wall-clock budget the schedule runs over whichever ends first, steps or time, so
        # a time-limited run still warms up, decays and ends at a low learning rate.
        self.max_time_seconds = max_time_seconds
        self.register_buffer("train_seconds", torch.zeros((), dtype=torch.float64))
        self._last_step_start: float | None = None

    def current_epoch_from_step(self) -> float:
        return round(int(self.batches_seen) / self.steps_per_epoch, 4)

    def configure_optimizers(self):
        cfg = self.optim_cfg
        decay, no_decay = [], []
        for name, p in self.method.named_parameters():
            if p.requires_grad:
                # Norm scales and biases are not weight-decayed (standard for SSL recipes).
                (no_decay if p.ndim <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        if cfg.name == "sgd":
            opt = torch.optim.SGD(groups, lr=self.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
        elif cfg.name == "adamw":
            opt = torch.optim.AdamW(groups, lr=self.lr)
        else:
            raise ValueError(f"optim.name: unknown optimiser {cfg.name!r} (sgd | adamw)")
        return opt

    def schedule_position(self) -> float:
        """Where the run is on the schedule's step axis: batches seen, or the time budget's share
        of ``total_steps`` if that is further along."""
        position = float(self.batches_seen)
        if self.max_time_seconds:
            position = max(position, self.total_steps * float(self.train_seconds) / self.max_time_seconds)
        return position

    def current_lr(self) -> float:
        cfg = self.optim_cfg
        return self.lr * lr_factor(self.schedule_position(), total_steps=self.total_steps,
                                   steps_per_epoch=self.steps_per_epoch, schedule=cfg.schedule,
                                   warmup_epochs=cfg.warmup_epochs, step_epochs=list(cfg.step_epochs),
                                   gamma=cfg.gamma)

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        opt = self.optimizers()
        now = time.perf_counter()
        if self._last_step_start is not None:  # the whole previous step: data wait + compute
            self.train_seconds += now - self._last_step_start
        self._last_step_start = now
        lr = self.current_lr()
        for group in opt.param_groups:
            group["lr"] = lr
        self.tally.update(batch.get("skipped", []), len(batch["index"]))
        batch["generator"] = step_generator(self.seed, int(self.batches_seen), self.global_rank)

        out = self.method(batch)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(out["loss"])
        params = [p for p in self.method.parameters() if p.grad is not None]
        max_norm = self.optim_cfg.grad_clip if self.optim_cfg.grad_clip else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())
        if torch.isfinite(grad_norm) and torch.isfinite(out["loss"].detach()):
            opt.step()
        else:
            self.skipped_steps += 1
        self.batches_seen += 1

        logs = {f"train/{k}": v.detach().float() for k, v in out.items() if torch.is_tensor(v) and v.numel() == 1}
        logs["train/grad_norm"] = grad_norm.detach().float()
        logs["train/lr"] = torch.tensor(lr)
        logs["train/skipped_steps"] = self.skipped_steps.float()
        self.log_dict(logs, prog_bar=False, on_step=True, on_epoch=False, batch_size=len(batch["index"]))
        self.log("loss", out["loss"].detach().float(), prog_bar=True, on_step=True, logger=False,
                 batch_size=len(batch["index"]))
        return out["loss"].detach()

    def on_train_start(self) -> None:
        self._last_step_start = None  # time between fits (e.g. before a resume) is not training time

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The tally travels with the run so a resumed run keeps counting toward the same limit.
        checkpoint["bad_videos"] = {"served": self.tally.served, "bad_hits": self.tally.bad_hits,
                                    "bad_paths": dict(self.tally.bad_paths)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("bad_videos", {})
        self.tally.served = saved.get("served", 0)
        self.tally.bad_hits = saved.get("bad_hits", 0)
        self.tally.bad_paths = dict(saved.get("bad_paths", {}))
