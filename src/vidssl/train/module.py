"""One LightningModule trains any Method: optimiser, schedule, precision, skipping and logging.

Optimisation is manual (``automatic_optimization = False``) because the trainer must decide,
after backward, whether a step is safe: a step whose loss or gradient is not finite is skipped
and counted instead of poisoning the weights. Under DDP the gradients are already all-reduced
when that check runs; the loss is each rank's own, so whether it is finite is agreed across ranks
(one rank's NaN loss skips the step everywhere, and every rank's grad scaler sees the same steps).

Every decision that ends or changes a step is taken the same on every rank, so no rank is left
waiting in a collective for one that stopped: each step the ranks share their bad videos (a
count, and the paths when there are any), every rank's ``BadVideoTally`` adds up all of them, and
when the bad fraction passes ``data.max_bad_fraction`` every rank raises ``TooManyBadVideos`` at
the same step, naming every bad file. (A rank that crashes for any other reason ends the others
through Lightning's process observer, which kills them; the crashed rank prints the cause.)

Randomness: the method draws from ``batch["generator"]`` (a function of seed, step and rank); a
module that draws from torch's global generator instead (dropout) runs its forward with that
generator seeded the same way, so a resumed run replays it bit for bit.

Under ``16-mixed`` the gradients come out of backward multiplied by the grad scaler's scale.
There the step always goes through Lightning's precision plugin, which unscales them, calls
``on_before_optimizer_step`` (where they are clipped, now in true units), lets the scaler skip
the update if they overflowed and then updates the scale (backing off after an overflow). A step
the scaler skipped is counted in ``skipped_steps`` like any other skipped step (Lightning's step
counter, which ``total_steps`` is compared with, counts it too, as under automatic optimisation).

How many processes train is known only once the trainer is launched: a ``StepPlan`` turns
``trainer.world_size`` into the learning rate (linear scaling), steps per epoch and total
steps in ``setup``, the same world size the data sampler uses.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

from vidssl.data.dataset import BadVideoTally
from vidssl.train.sampler import steps_per_epoch
from vidssl.train.schedule import lr_factor, scaled_lr

__all__ = ["MethodModule", "StepPlan", "step_generator", "global_rng_of_step"]

_GLOBAL_STREAM = 0x6C0BA1  # keeps the global generator's seed apart from step_generator's


@dataclass(frozen=True)
class StepPlan:
    """The numbers that depend on the number of training processes, resolved by ``resolve(world_size)``.

    ``batch_size`` is per process; ``max_steps`` (optimiser steps) wins over ``max_epochs``.
    """
    base_lr: float
    base_batch: int
    batch_size: int
    samples_per_epoch: int
    max_epochs: int
    max_steps: int | None = None

    def resolve(self, world_size: int) -> tuple[float, int, int]:
        """``(lr, total_steps, steps_per_epoch)`` for ``world_size`` processes."""
        if world_size < 1:
            raise ValueError(f"world size must be >= 1, got {world_size}")
        spe = steps_per_epoch(self.samples_per_epoch, self.batch_size, world_size)
        total = self.max_steps if self.max_steps else self.max_epochs * spe
        return scaled_lr(self.base_lr, self.batch_size * world_size, self.base_batch), total, spe


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The random stream of one optimiser step on one rank: a function of nothing else, so a
    resumed run draws exactly what an uninterrupted one would have."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009 + rank)


@contextmanager
def global_rng_of_step(seed: int, step: int, rank: int, device: torch.device):
    """torch's global generator (CPU, and ``device``'s when it is a GPU) seeded from (seed, step, rank)
    for the block, then restored: dropout and anything else drawing from it replays on resume."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    value = (((seed * 1_000_003 + step) * 1009 + rank) ^ _GLOBAL_STREAM) % (1 << 63)
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(value)
        if cuda:
            torch.cuda.manual_seed(value)
        yield


class MethodModule(L.LightningModule):
    """Trains ``method``. Either fixed ``lr``, ``total_steps`` and ``steps_per_epoch``, or a ``plan``
    that derives them from the launched trainer's world size in ``setup`` (``vidssl pretrain``).
    Training stops after ``total_steps`` optimiser steps."""

    def __init__(self, method: torch.nn.Module, *, optim, lr: float | None = None, total_steps: int | None = None,
                 steps_per_epoch: int | None = None, plan: StepPlan | None = None, seed: int,
                 max_bad_fraction: float, max_time_seconds: float | None = None):
        super().__init__()
        if plan is None and None in (lr, total_steps, steps_per_epoch):
            raise ValueError("MethodModule needs lr, total_steps and steps_per_epoch, or a StepPlan")
        self.automatic_optimization = False
        self.method = method
        self.optim_cfg = optim
        self.plan = plan
        self.world_size: int | None = None  # set in setup() when a plan is given
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
        self._clip_in_hook = False  # 16-mixed: clip in on_before_optimizer_step, after the plugin unscaled
        self._grad_norm: torch.Tensor | None = None

    def setup(self, stage: str) -> None:
        # After the launch: trainer.world_size is the number of processes that really train (the one
        # the sampler splits the data over), whatever `devices` said (-1, "0,1,2,3", "auto", ...).
        if self.plan is not None:
            self.world_size = int(self.trainer.world_size)
            self.lr, self.total_steps, self.steps_per_epoch = self.plan.resolve(self.world_size)

    def epoch_position(self) -> float:
        """Epochs of data consumed: batches seen (skipped ones included) / steps per epoch."""
        return int(self.batches_seen) / self.steps_per_epoch

    def current_epoch_from_step(self) -> float:
        return round(self.epoch_position(), 4)

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

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Signals travel in their storage dtype (uint8 flow codes, float16); float32 here, on the device.
        from vidssl.data.signals import dequantize_batch

        return dequantize_batch(batch) if isinstance(batch, dict) else batch

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        opt = self.optimizers()
        now = time.perf_counter()
        if self._last_step_start is not None:  # the whole previous step: data wait + compute
            self.train_seconds += now - self._last_step_start
        self._last_step_start = now
        lr = self.current_lr()
        for group in opt.param_groups:
            group["lr"] = lr
        self.tally.update(*self._bad_videos_of_all_ranks(batch.get("skipped", []), len(batch["index"])))
        batch["generator"] = step_generator(self.seed, int(self.batches_seen), self.global_rank)
        # Where training is, for the method (a loss weight over epochs): optimiser steps taken so far
        # and epochs of data consumed before this batch; both come back with a checkpoint.
        batch["step"] = int(self.global_step)
        batch["epoch"] = self.epoch_position()

        with global_rng_of_step(self.seed, int(self.batches_seen), self.global_rank, self.device):
            out = self.method(batch)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(out["loss"])  # scaled by the grad scaler under 16-mixed
        loss_finite = self._on_all_ranks(bool(torch.isfinite(out["loss"].detach())))
        scaler = self.grad_scaler()
        if scaler is not None and loss_finite:
            # The plugin unscales, calls on_before_optimizer_step (clipping), lets the scaler skip the
            # update on inf/nan gradients and updates the scale; a backed-off scale means it skipped.
            scale = scaler.get_scale()
            self._clip_in_hook, self._grad_norm = True, None
            try:
                opt.step()
            finally:
                self._clip_in_hook = False
            grad_norm = self._grad_norm if self._grad_norm is not None else torch.full((), float("nan"))
            stepped = scaler.get_scale() >= scale
        elif scaler is not None:  # gradients still scaled: not worth unscaling for a step not taken
            grad_norm, stepped = torch.full((), float("nan")), False
        else:
            grad_norm = self._clip_and_norm()
            stepped = loss_finite and bool(torch.isfinite(grad_norm))
            if stepped:
                opt.step()
        if not stepped:
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

    def _distributed(self) -> bool:
        trainer = self._trainer
        return (trainer is not None and trainer.world_size > 1 and torch.distributed.is_available()
                and torch.distributed.is_initialized())

    def _bad_videos_of_all_ranks(self, skipped, served: int) -> tuple[list[str], int]:
        """This step's bad video paths and items served, of every rank together (the same list on
        every rank); alone, this rank's. One small all-reduce per step; the paths travel only in a
        step where some rank met a bad video."""
        if not self._distributed():
            return list(skipped), served
        counts = torch.tensor([served, len(skipped)], dtype=torch.long, device=self.device)
        torch.distributed.all_reduce(counts)
        served_all, skipped_all = (int(v) for v in counts.tolist())
        if not skipped_all:
            return [], served_all
        per_rank: list = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(per_rank, list(skipped))
        return [path for paths in per_rank for path in paths], served_all

    def _on_all_ranks(self, flag: bool) -> bool:
        """``flag`` and-ed over the ranks (this rank's alone outside DDP)."""
        if not self._distributed():
            return flag
        value = torch.tensor([int(flag)], dtype=torch.long, device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
        return bool(value.item())

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """The precision plugin's grad scaler (``16-mixed``), or ``None``."""
        trainer = self._trainer
        scaler = getattr(trainer.precision_plugin, "scaler", None) if trainer is not None else None
        return scaler if scaler is not None and scaler.is_enabled() else None

    def _clip_and_norm(self) -> torch.Tensor:
        """Clip the method's gradients to ``optim.grad_clip`` (if set); returns their total norm."""
        params = [p for p in self.method.parameters() if p.grad is not None]
        max_norm = self.optim_cfg.grad_clip if self.optim_cfg.grad_clip else float("inf")
        return torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())

    def on_before_optimizer_step(self, optimizer) -> None:
        if self._clip_in_hook:  # 16-mixed: the plugin has just unscaled the gradients
            self._grad_norm = self._clip_and_norm()

    def on_train_start(self) -> None:
        self._last_step_start = None  # time between fits (e.g. before a resume) is not training time
        # The bad-video limit is a share of the videos the run reads: its data loader's dataset.
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if self.tally.num_videos is None and dataset is not None and hasattr(dataset, "__len__") and len(dataset):
            self.tally.num_videos = len(dataset)
        self._stop_at_total_steps()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self._stop_at_total_steps()

    def _stop_at_total_steps(self) -> None:
        # total_steps may only be known after the launch (StepPlan), so the module stops the run itself.
        if self.total_steps is not None and self.trainer.global_step >= self.total_steps:
            self.trainer.should_stop = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The tally travels with the run so a resumed run keeps counting toward the same limit.
        checkpoint["bad_videos"] = self.tally.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tally.load_state_dict(checkpoint.get("bad_videos", {}))
