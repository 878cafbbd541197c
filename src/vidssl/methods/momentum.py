"""Momentum encoder, feature queue and shuffle-BN: the MoCo machinery (He et al., CVPR 2020).

Kept apart from any one method because moco, dsm and mcl all use it. Follows
facebookresearch/moco ``builder.py``: small ``@torch.no_grad()`` helpers named for what they do.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["MomentumEncoder", "FeatureQueue", "concat_all_gather", "batch_shuffle", "batch_unshuffle",
           "shuffled_forward"]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 across processes (no gradient); identity on one process."""
    rank, world = _world()
    if world == 1:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=0)


class MomentumEncoder(nn.Module):
    """An exponential-moving-average copy of some online modules (no gradients).

    ``update(m)`` sets theta_k <- m theta_k + (1 - m) theta_q (MoCo eq. 2). Buffers (BN running
    statistics) are copied as they are, as in MoCo's key encoder.
    """

    def __init__(self, *online: nn.Module):
        super().__init__()
        self.online = list(online)  # plain list: not registered twice as submodules
        self.copies = nn.ModuleList(copy.deepcopy(m) for m in online)
        for p in self.copies.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, momentum: float) -> None:
        for online, target in zip(self.online, self.copies):
            for p_q, p_k in zip(online.parameters(), target.parameters()):
                p_k.mul_(momentum).add_(p_q.detach(), alpha=1.0 - momentum)
            for b_q, b_k in zip(online.buffers(), target.buffers()):
                b_k.copy_(b_q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.copies:
            x = module(x)
        return x


class FeatureQueue(nn.Module):
    """A FIFO of L2-normalised key features [K, D] used as negatives (MoCo section 3.2).

    Optional integer tags (e.g. the video index a key came from) travel with the keys so a
    method can mask out negatives that are really positives.
    """

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        if size <= 0:
            raise ValueError(f"queue size must be > 0, got {size}")
        self.register_buffer("features", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("tags", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.features.shape[0]

    @torch.no_grad()
    def dequeue_and_enqueue(self, keys: torch.Tensor, tags: torch.Tensor | None = None) -> None:
        """Replace the oldest entries with ``keys`` gathered from every process."""
        keys = concat_all_gather(keys.detach().float())
        tags = concat_all_gather(tags) if tags is not None else torch.full(
            (keys.shape[0],), -1, dtype=torch.long, device=keys.device)
        n = keys.shape[0]
        if n >= self.size:  # a batch larger than the queue keeps its newest part
            keys, tags, n = keys[-self.size:], tags[-self.size:], self.size
        slots = (self.ptr + torch.arange(n, device=keys.device)) % self.size
        self.features[slots] = F.normalize(keys, dim=1).to(self.features.dtype)
        self.tags[slots] = tags.to(self.tags.dtype)
        self.ptr.fill_(int((self.ptr + n) % self.size))


@torch.no_grad()
def batch_shuffle(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle a batch across all processes (MoCo's ``_batch_shuffle_ddp``).

    Returns this process's share of the shuffled global batch and the index that undoes it.
    On one process it is a plain permutation.
    """
    rank, world = _world()
    x_all = concat_all_gather(x)
    n_all = x_all.shape[0]
    perm = torch.randperm(n_all, generator=generator).to(x.device)
    if world > 1:
        dist.broadcast(perm, src=0)  # every rank must use rank 0's permutation
    unshuffle = torch.argsort(perm)
    mine = perm.view(world, -1)[rank]
    return x_all[mine], unshuffle


@torch.no_grad()
def batch_unshuffle(x: torch.Tensor, unshuffle: torch.Tensor) -> torch.Tensor:
    """Undo :func:`batch_shuffle` for this process's rows (MoCo's ``_batch_unshuffle_ddp``)."""
    rank, world = _world()
    x_all = concat_all_gather(x)
    return x_all[unshuffle.view(world, -1)[rank]]


@torch.no_grad()
def shuffled_forward(encoder: nn.Module, x: torch.Tensor, generator: torch.Generator | None = None,
                     splits: int = 2) -> torch.Tensor:
    """Key-encoder forward with shuffle-BN, so BN statistics cannot leak the positive pair.

    Across processes the batch is shuffled and each process normalises a random subset (MoCo).
    On one process a permutation alone changes nothing for BN, so the shuffled batch is also run
    in ``splits`` chunks, each with its own statistics (the single-device SplitBN form).
    """
    rank, world = _world()
    x, unshuffle = batch_shuffle(x, generator)
    chunks: Sequence[torch.Tensor] = (x,) if world > 1 or splits <= 1 else x.tensor_split(min(splits, len(x)))
    y = torch.cat([encoder(c) for c in chunks], dim=0)
    return batch_unshuffle(y, unshuffle)
