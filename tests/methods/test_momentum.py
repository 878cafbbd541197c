import pytest
import torch
from torch import nn

from vidssl.methods.momentum import FeatureQueue, MomentumEncoder, batch_shuffle, batch_unshuffle, shuffled_forward


def test_momentum_update_is_an_ema_and_copies_buffers():
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = MomentumEncoder(online)
    before = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
        online[1].running_mean.fill_(7.0)
    target.update(0.9)
    for p0, p_q, p_k in zip(before, online.parameters(), target.parameters()):
        torch.testing.assert_close(p_k, 0.9 * p0 + 0.1 * p_q)
        assert not p_k.requires_grad
    assert torch.all(target.copies[0][1].running_mean == 7.0)


def test_queue_is_fifo_and_wraps():
    q = FeatureQueue(5, 2)
    keys = torch.eye(2).repeat(3, 1)[:3] * torch.tensor([[1.0], [2.0], [3.0]])
    q.dequeue_and_enqueue(keys, torch.tensor([10, 11, 12]))
    q.dequeue_and_enqueue(keys, torch.tensor([13, 14, 15]))
    assert q.tags.tolist() == [15, 11, 12, 13, 14]
    assert int(q.ptr) == 1
    torch.testing.assert_close(q.features.norm(dim=1), torch.ones(5))


def test_queue_keeps_newest_of_an_oversized_batch():
    q = FeatureQueue(4, 3)
    q.dequeue_and_enqueue(torch.randn(6, 3), torch.arange(6))
    assert sorted(q.tags.tolist()) == [2, 3, 4, 5]


def test_shuffle_unshuffle_round_trip_single_process():
    x = torch.arange(10.0).unsqueeze(1)
    g = torch.Generator().manual_seed(0)
    shuffled, undo = batch_shuffle(x, g)
    assert not torch.equal(shuffled, x)
    torch.testing.assert_close(batch_unshuffle(shuffled, undo), x)


def test_shuffled_forward_uses_separate_bn_statistics_per_split():
    bn = nn.BatchNorm1d(1).train()
    x = torch.cat([torch.zeros(4, 1), torch.full((4, 1), 10.0)])
    whole = bn(x)
    split = shuffled_forward(bn, x, torch.Generator().manual_seed(1), splits=2)
    # Same rows, same order; but normalised with per-split statistics, so values differ.
    assert split.shape == whole.shape
    assert not torch.allclose(split, whole)
    with pytest.raises(ValueError):
        FeatureQueue(0, 4)
