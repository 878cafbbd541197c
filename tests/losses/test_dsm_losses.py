"""DSM losses (AAAI 2021 eq. 5, 7) against independent NumPy computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vidssl.losses import dsm_contrastive_loss, dsm_triplet_loss


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_triplet(a, p, n, margin):
    # eq. 5 with explicit loops: L2 distances of the normalised embeddings, hinge at the margin.
    a, p, n = _unit(a), _unit(p), _unit(n)
    total = 0.0
    for i in range(len(a)):
        d_ap = np.sqrt(((a[i] - p[i]) ** 2).sum())
        d_an = np.sqrt(((a[i] - n[i]) ** 2).sum())
        total += max(d_ap - d_an + margin, 0.0)
    return total / len(a)


def np_contrastive(a, p, n, queue, t, mask=None):
    # eq. 7 per anchor: exp(a.p) over exp(a.p) + exp(a.n) + sum over the queued anchors not masked.
    a, p, queue = _unit(a), _unit(p), _unit(queue)
    n = _unit(n) if n is not None else None
    total = 0.0
    for i in range(len(a)):
        pos = np.exp(a[i] @ p[i] / t)
        denom = pos + (np.exp(a[i] @ n[i] / t) if n is not None else 0.0)
        for j in range(len(queue)):
            if mask is None or not mask[i, j]:
                denom += np.exp(a[i] @ queue[j] / t)
        total += -np.log(pos / denom)
    return total / len(a)


def _t(x):
    return torch.tensor(x, dtype=torch.float32)


@pytest.mark.parametrize("n,d,margin", [(1, 3, 0.5), (6, 8, 0.5), (17, 32, 0.0), (9, 5, 2.0)])
def test_triplet_loss_matches_numpy(n, d, margin):
    rng = np.random.default_rng(n * 100 + d)
    a, p, neg = (rng.normal(size=(n, d)) * 2 for _ in range(3))
    got = dsm_triplet_loss(_t(a), _t(p), _t(neg), margin)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(np_triplet(a, p, neg, margin), rel=1e-5, abs=1e-6)


def test_triplet_loss_is_zero_past_the_margin_and_has_gradients():
    a = torch.tensor([[1.0, 0.0]], requires_grad=True)
    assert dsm_triplet_loss(a, torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]]), 0.5).item() == 0.0
    loss = dsm_triplet_loss(a, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.1]]), 0.5)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


@pytest.mark.parametrize("n,d,k,t", [(1, 4, 1, 1.0), (5, 8, 16, 1.0), (8, 16, 40, 0.07), (3, 6, 7, 0.2)])
def test_contrastive_loss_matches_numpy(n, d, k, t):
    rng = np.random.default_rng(n + 10 * d + 100 * k)
    a, p, neg = (rng.normal(size=(n, d)) for _ in range(3))
    queue = rng.normal(size=(k, d))
    got = dsm_contrastive_loss(_t(a), _t(p), _t(neg), _t(queue), t)
    assert got.item() == pytest.approx(np_contrastive(a, p, neg, queue, t), rel=1e-5)
    # Without the intra-video negative it is eq. 6 (InfoNCE against the queue alone).
    got = dsm_contrastive_loss(_t(a), _t(p), None, _t(queue), t)
    assert got.item() == pytest.approx(np_contrastive(a, p, None, queue, t), rel=1e-5)


@pytest.mark.parametrize("n,k", [(4, 12), (6, 30)])
def test_contrastive_loss_masks_own_video_anchors(n, k):
    rng = np.random.default_rng(n * k)
    a, p, neg = (rng.normal(size=(n, 8)) for _ in range(3))
    queue = rng.normal(size=(k, 8))
    mask = rng.random((n, k)) < 0.3
    got = dsm_contrastive_loss(_t(a), _t(p), _t(neg), _t(queue), 0.5, negative_mask=torch.tensor(mask))
    assert got.item() == pytest.approx(np_contrastive(a, p, neg, queue, 0.5, mask), rel=1e-5)
    assert abs(got.item() - np_contrastive(a, p, neg, queue, 0.5)) > 1e-4


def test_losses_compute_in_fp32_under_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(4, 8, generator=g).bfloat16() for _ in range(3))
    queue = torch.randn(10, 8, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert dsm_triplet_loss(a, p, n).dtype == torch.float32
        assert dsm_contrastive_loss(a, p, n, queue).dtype == torch.float32


def test_shape_and_argument_errors():
    z = torch.randn(3, 4)
    with pytest.raises(ValueError, match="one shape"):
        dsm_triplet_loss(z, z, torch.randn(2, 4))
    with pytest.raises(ValueError, match="queue"):
        dsm_contrastive_loss(z, z, z, torch.randn(5, 3))
    with pytest.raises(ValueError, match="temperature"):
        dsm_contrastive_loss(z, z, z, torch.randn(5, 4), temperature=0)
    with pytest.raises(ValueError, match="margin"):
        dsm_triplet_loss(z, z, z, margin=-1)
