"""MoCo under DDP on CPU (gloo, 2 processes): shuffle-BN, the shared queue, identical replicas."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vidssl.data.augment import ClipAugment
from vidssl.methods.base import build_method, method_config
from vidssl.methods.momentum import FeatureQueue, batch_shuffle, batch_unshuffle, concat_all_gather
from vidssl.models import build_backbone

WORLD = 2


def _init(rank: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)


def _shuffle_and_queue(rank: int, init_file: str, out_dir: str) -> None:
    _init(rank, init_file)
    try:
        x = torch.arange(4.0).unsqueeze(1) + 10 * rank            # rank 0: 0..3, rank 1: 10..13
        shuffled, undo = batch_shuffle(x, torch.Generator().manual_seed(rank))  # rank 0's perm wins
        everything = concat_all_gather(shuffled).flatten().tolist()
        restored = batch_unshuffle(shuffled, undo)
        queue = FeatureQueue(16, 2)
        dist.broadcast(queue.features, 0)
        queue.dequeue_and_enqueue(torch.full((3, 2), float(rank + 1)), torch.full((3,), rank))
        torch.save({"everything": everything, "restored": restored, "shuffled": shuffled,
                    "queue": queue.features, "tags": queue.tags, "ptr": int(queue.ptr)},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _train_steps(rank: int, init_file: str, out_dir: str) -> None:
    _init(rank, init_file)
    try:
        torch.manual_seed(0)  # same initial weights on both ranks, as DDP requires
        cfg = method_config("moco", {"name": "moco", "queue_size": 32, "proj_hidden": 32, "proj_dim": 16,
                                     "momentum": 0.9})
        moco = build_method("moco", build_backbone("r3d", width=8, depth=10), cfg, 2, ClipAugment(crop_size=32))
        ddp = torch.nn.parallel.DistributedDataParallel(moco)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
        g = torch.Generator().manual_seed(100 + rank)  # each rank sees different videos
        for step in range(3):
            clips = torch.randint(0, 256, (4, 2, 8, 40, 40, 3), dtype=torch.uint8, generator=g)
            index = torch.arange(4) + 4 * rank  # each rank's own videos
            out = ddp({"clips": clips, "index": index, "generator": torch.Generator().manual_seed(step)})
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        torch.save({"params": [p.detach() for p in moco.parameters()], "queue": moco.queue.features.clone(),
                    "tags": moco.queue.tags.clone(), "ptr": int(moco.queue.ptr),
                    "masked": float(out["masked_negatives"])}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _spawn(fn, tmp_path):
    mp.start_processes(fn, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_batch_shuffle_across_ranks_and_shared_queue(tmp_path):
    r0, r1 = _spawn(_shuffle_and_queue, tmp_path)
    # The shuffled global batch is a permutation of all 8 rows, and each rank got a different share.
    assert sorted(r0["everything"]) == [0, 1, 2, 3, 10, 11, 12, 13]
    assert r0["everything"] != [0, 1, 2, 3, 10, 11, 12, 13]
    # Unshuffle gives every rank back exactly its own rows.
    torch.testing.assert_close(r0["restored"], torch.arange(4.0).unsqueeze(1))
    torch.testing.assert_close(r1["restored"], torch.arange(4.0).unsqueeze(1) + 10)
    # Both ranks enqueue the keys of both ranks, in rank order, and end with identical queues.
    torch.testing.assert_close(r0["queue"], r1["queue"])
    assert r0["tags"][:6].tolist() == [0, 0, 0, 1, 1, 1] and r0["ptr"] == r1["ptr"] == 6


@pytest.mark.slow
def test_moco_ddp_replicas_stay_identical(tmp_path):
    r0, r1 = _spawn(_train_steps, tmp_path)
    for p0, p1 in zip(r0["params"], r1["params"]):
        torch.testing.assert_close(p0, p1)
    torch.testing.assert_close(r0["queue"], r1["queue"])
    assert r0["ptr"] == r1["ptr"] == (3 * 4 * WORLD) % 32
    # The video tags travel with the keys from both ranks, so each rank masks keys of its own videos
    # that the other rank's step could not have known about.
    torch.testing.assert_close(r0["tags"], r1["tags"])
    assert r0["tags"][:24].tolist() == list(range(8)) * 3
    assert r0["masked"] == r1["masked"] == 2.0  # the third step meets two earlier keys of each video
