"""The Lightning data module: a method's requests, fetched in workers, resumable by global step."""
from __future__ import annotations

from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from vidssl.data.dataset import VideoDataset, collate
from vidssl.train.sampler import ResumableSampler

__all__ = ["VideoDataModule"]


class VideoDataModule(L.LightningDataModule):
    def __init__(self, catalog, sampler, *, batch_size: int, num_workers: int, frame_size,
                 seed: int, samples_per_epoch: int | None, max_bad_fraction: float,
                 signals: dict[str, Any] | None = None, frame_cache=None, declared=(), cache_dir=None,
                 root=None, video_stream: int | None = None):
        super().__init__()
        self.catalog = catalog
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.samples_per_epoch = samples_per_epoch
        # declared: the method's Signal declarations, matched against the cache here, so a
        # mismatch fails before training starts.
        self.dataset = VideoDataset(catalog, sampler, frame_size=tuple(frame_size) if frame_size else None,
                                    seed=seed, max_bad_fraction=max_bad_fraction, signals=signals,
                                    frame_cache=frame_cache, declared=declared, cache_dir=cache_dir, root=root,
                                    video_stream=video_stream)

    def sampler(self, start_step: int, rank: int = 0, world_size: int = 1) -> ResumableSampler:
        return ResumableSampler(len(self.dataset), self.batch_size, seed=self.seed, rank=rank,
                                world_size=world_size, start_step=start_step,
                                samples_per_epoch=self.samples_per_epoch)

    def train_dataloader(self) -> DataLoader:
        # Called after a checkpoint is restored, so the module's batch counter is where the run
        # resumes (it counts skipped steps too, unlike trainer.global_step).
        trainer = self.trainer
        start = int(trainer.lightning_module.batches_seen) if trainer is not None else 0
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        return DataLoader(
            self.dataset, batch_size=self.batch_size, sampler=self.sampler(start, rank, world),
            num_workers=self.num_workers, collate_fn=collate, pin_memory=False, drop_last=True,
            persistent_workers=self.num_workers > 0, prefetch_factor=4 if self.num_workers > 0 else None,
        )
