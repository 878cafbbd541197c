"""Pace prediction losses (ECCV 2020 eq. 1-3) against independent NumPy computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vidssl.losses import pace_cls_loss, pace_same_context_loss, pace_same_pace_loss


def _log_sum_exp(values):
    m = max(values)
    return m + np.log(sum(np.exp(v - m) for v in values))


def np_cls(logits, target):
    # eq. 1: -sum_i y_i log softmax(h)_i, averaged over clips.
    total = 0.0
    for h, y in zip(logits, target):
        total += -(h[y] - _log_sum_exp(list(h)))
    return total / len(target)


def np_same_context(z, zp, t):
    # eq. 2 written out with explicit loops: positive = other clip of the video, negatives = every
    # clip of every other video.
    n = len(z)
    clips = [(i, z[i]) for i in range(n)] + [(i, zp[i]) for i in range(n)]
    total = 0.0
    for a, (video_a, za) in enumerate(clips):
        pos = None
        denom = []
        for b, (video_b, zb) in enumerate(clips):
            if a == b:
                continue
            s = float(np.dot(za, zb)) / t
            denom.append(s)
            if video_b == video_a:
                pos = s
        total += -(pos - _log_sum_exp(denom))
    return total / (2 * n)


def np_same_pace(z, pace, t):
    n = len(z)
    per_anchor = []
    for i in range(n):
        denom = [float(np.dot(z[i], z[b])) / t for b in range(n) if b != i]
        lse = _log_sum_exp(denom)
        terms = [float(np.dot(z[i], z[j])) / t - lse for j in range(n) if j != i and pace[j] == pace[i]]
        if terms:
            per_anchor.append(-np.mean(terms))
    return float(np.mean(per_anchor)) if per_anchor else 0.0


@pytest.mark.parametrize("n,m", [(1, 2), (5, 4), (30, 5)])
def test_cls_loss_matches_numpy(n, m):
    rng = np.random.default_rng(n * 10 + m)
    logits = rng.normal(size=(n, m)) * 3
    target = rng.integers(0, m, size=n)
    got = pace_cls_loss(torch.tensor(logits, dtype=torch.float32), torch.tensor(target))
    assert got.item() == pytest.approx(np_cls(logits, target), rel=1e-5)


@pytest.mark.parametrize("n,d,t", [(2, 3, 1.0), (6, 16, 0.1), (15, 8, 0.5)])
def test_same_context_matches_numpy(n, d, t):
    rng = np.random.default_rng(n + d)
    z, zp = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    zp /= np.linalg.norm(zp, axis=1, keepdims=True)
    got = pace_same_context_loss(torch.tensor(z, dtype=torch.float32), torch.tensor(zp, dtype=torch.float32), t)
    assert got.item() == pytest.approx(np_same_context(z, zp, t), rel=1e-4)


def test_same_context_prefers_aligned_pairs():
    # Pairs that agree give a lower loss than the same features with partners shuffled.
    rng = np.random.default_rng(0)
    z = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(8, 16)), dtype=torch.float32), dim=1)
    aligned = pace_same_context_loss(z, z, 0.1)
    shuffled = pace_same_context_loss(z, z.roll(1, dims=0), 0.1)
    assert aligned < shuffled


@pytest.mark.parametrize("n,d,t,num_paces", [(4, 3, 1.0, 2), (12, 16, 0.1, 4), (20, 8, 0.3, 5)])
def test_same_pace_matches_numpy(n, d, t, num_paces):
    rng = np.random.default_rng(n * d)
    z = rng.normal(size=(n, d))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    pace = rng.integers(0, num_paces, size=n)
    pace[-1] = num_paces + 1  # a pace seen once: excluded as anchor, still a negative for others
    got = pace_same_pace_loss(torch.tensor(z, dtype=torch.float32), torch.tensor(pace), t)
    assert got.item() == pytest.approx(np_same_pace(z, pace, t), rel=1e-4)


def test_same_pace_without_positives_is_zero_and_differentiable():
    z = torch.randn(4, 8, requires_grad=True)
    loss = pace_same_pace_loss(z, torch.arange(4), 0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_losses_give_finite_gradients_and_run_in_fp32_under_autocast():
    z = torch.randn(6, 8, requires_grad=True)
    zp = torch.randn(6, 8, requires_grad=True)
    logits = torch.randn(6, 4, requires_grad=True)
    pace = torch.tensor([0, 1, 1, 2, 0, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = [pace_cls_loss(logits, pace), pace_same_context_loss(z, zp, 0.1), pace_same_pace_loss(z, pace, 0.1)]
    assert all(loss.dtype == torch.float32 for loss in losses)
    sum(losses).backward()
    for g in (z.grad, zp.grad, logits.grad):
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="pace_cls_loss"):
        pace_cls_loss(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="pace_same_context_loss"):
        pace_same_context_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        pace_same_context_loss(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="pace_same_pace_loss"):
        pace_same_pace_loss(torch.randn(4, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        pace_same_pace_loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match="temperature"):
        pace_same_context_loss(torch.randn(4, 3), torch.randn(4, 3), -1.0)
