import numpy as np
import pytest
import torch

from vidssl.losses import info_nce


def _np_info_nce(q, k, negatives, t):
    """InfoNCE written from the equation: -log exp(q.k+/t) / sum over {k+} U negatives."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    losses = []
    for i in range(len(q)):
        if negatives is None:
            cand = k  # in-batch: every key, the positive is the i-th
            pos = i
        else:
            n = negatives / np.linalg.norm(negatives, axis=1, keepdims=True)
            cand = np.concatenate([k[i:i + 1], n])
            pos = 0
        logits = cand @ q[i] / t
        m = logits.max()
        losses.append(-(logits[pos] - m - np.log(np.exp(logits - m).sum())))
    return float(np.mean(losses))


@pytest.mark.parametrize("n,d,k", [(1, 4, 3), (8, 16, 32), (5, 128, 1)])
@pytest.mark.parametrize("t", [0.07, 0.2, 1.0])
def test_info_nce_with_queue_matches_numpy(n, d, k, t):
    rng = np.random.default_rng(n * 100 + d + k)
    q, key, neg = rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.normal(size=(k, d))
    got = info_nce(torch.tensor(q), torch.tensor(key), torch.tensor(neg), temperature=t)
    assert got.item() == pytest.approx(_np_info_nce(q, key, neg, t), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n", [2, 7])
def test_info_nce_in_batch_matches_numpy(n):
    rng = np.random.default_rng(n)
    q, key = rng.normal(size=(n, 12)), rng.normal(size=(n, 12))
    got = info_nce(torch.tensor(q), torch.tensor(key), None, temperature=0.1)
    assert got.item() == pytest.approx(_np_info_nce(q, key, None, 0.1), rel=1e-5)


def test_info_nce_is_fp32_under_bf16_inputs_and_finite_for_aligned_pairs():
    q = torch.randn(16, 32).bfloat16()
    loss = info_nce(q, q.clone(), torch.randn(64, 32).bfloat16(), temperature=0.07)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # Perfectly aligned pairs against random negatives: far below the chance level log(65).
    assert loss.item() < np.log(65) / 2


def test_info_nce_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.randn(2, 3), torch.randn(2, 3), None, temperature=0.0)


def _np_info_nce_masked(q, k, negatives, t, mask):
    """InfoNCE with negative j dropped from query i's candidates where mask[i, j]."""
    per_row = [_np_info_nce(q[i:i + 1], k[i:i + 1], negatives[~mask[i]], t) if (~mask[i]).any()
               else 0.0 for i in range(len(q))]  # no negatives left: only the positive, loss 0
    return float(np.mean(per_row))


@pytest.mark.parametrize("n,d,k", [(3, 8, 5), (6, 16, 40)])
def test_info_nce_negative_mask_drops_the_masked_negatives(n, d, k):
    rng = np.random.default_rng(n + k)
    q, key, neg = rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.normal(size=(k, d))
    mask = rng.random((n, k)) < 0.4
    mask[0] = True  # a row whose every negative is masked
    got = info_nce(torch.tensor(q), torch.tensor(key), torch.tensor(neg), temperature=0.2,
                   negative_mask=torch.tensor(mask))
    assert got.item() == pytest.approx(_np_info_nce_masked(q, key, neg, 0.2, mask), rel=1e-5, abs=1e-6)
    # Gradients stay finite through the -inf logits.
    qt = torch.tensor(q, requires_grad=True)
    info_nce(qt, torch.tensor(key), torch.tensor(neg), 0.2, negative_mask=torch.tensor(mask)).backward()
    assert torch.isfinite(qt.grad).all()
    with pytest.raises(ValueError, match="negative_mask"):
        info_nce(torch.tensor(q), torch.tensor(key), None, negative_mask=torch.tensor(mask))
