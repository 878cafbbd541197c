"""Context and motion decoupling losses (CVPR 2021 eq. 1-3, Table 1) against independent NumPy computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vidssl.losses import cmd_context_loss, cmd_joint_loss, cmd_motion_ce_loss, cmd_motion_mse_loss, cmd_pointwise_loss
from vidssl.losses.cmd import quantize_motion


def _log_sum_exp(values):
    m = max(values)
    return m + np.log(sum(np.exp(v - m) for v in values))


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def np_context(x, z, t):
    # eq. 1 with explicit loops: anchor clip i, positive its video's I-frame, denominator every I-frame.
    b = len(x)
    total = 0.0
    for i in range(b):
        total += -(_cos(z[i], x[i]) / t - _log_sum_exp([_cos(z[k], x[i]) / t for k in range(b)]))
    return total / b


def np_pointwise(pred, target, negatives, t):
    # eq. 2 with explicit loops: query (i, j); keys every real point (k, l) of every video, then
    # every point of every hard-negative clip; positive only (k, l) == (i, j).
    b, n, _ = pred.shape
    keys = [((k, l), target[k, l]) for k in range(b) for l in range(n)]
    if negatives is not None:
        keys += [(None, v) for v in negatives.reshape(-1, negatives.shape[-1])]
    total = 0.0
    for i in range(b):
        for j in range(n):
            sims = [_cos(key, pred[i, j]) / t for _, key in keys]
            pos = [s for (where, _), s in zip(keys, sims) if where == (i, j)]
            assert len(pos) == 1
            total += -(pos[0] - _log_sum_exp(sims))
    return total / (b * n)


@pytest.mark.parametrize("b,c,t", [(2, 3, 1.0), (5, 16, 0.1), (12, 8, 0.07)])
def test_context_loss_matches_numpy(b, c, t):
    rng = np.random.default_rng(b * c)
    x, z = rng.normal(size=(b, c)), rng.normal(size=(b, c)) * 3  # not unit norm: cosines are taken inside
    got = cmd_context_loss(torch.tensor(x, dtype=torch.float32), torch.tensor(z, dtype=torch.float32), t)
    assert got.item() == pytest.approx(np_context(x, z, t), rel=1e-4)


def test_context_loss_is_one_sided_clip_to_iframe():
    # eq. 1 sums over I-frames z_k for each clip x_i: swapping the roles is another loss.
    rng = np.random.default_rng(3)
    x, z = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    tx, tz = torch.tensor(x, dtype=torch.float32), torch.tensor(z, dtype=torch.float32)
    assert cmd_context_loss(tx, tz, 0.1).item() == pytest.approx(np_context(x, z, 0.1), rel=1e-4)
    assert cmd_context_loss(tz, tx, 0.1).item() == pytest.approx(np_context(z, x, 0.1), rel=1e-4)
    assert abs(np_context(x, z, 0.1) - np_context(z, x, 0.1)) > 1e-3


@pytest.mark.parametrize("b,n,k,c,t", [(1, 1, 0, 3, 1.0), (2, 4, 3, 8, 0.1), (3, 6, 1, 5, 0.5), (4, 2, 0, 16, 0.07)])
def test_pointwise_loss_matches_numpy(b, n, k, c, t):
    rng = np.random.default_rng(b * 100 + n * 10 + k)
    pred, target = rng.normal(size=(b, n, c)), rng.normal(size=(b, n, c))
    negatives = rng.normal(size=(b, k, n, c)) if k else None
    got = cmd_pointwise_loss(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32),
                             None if negatives is None else torch.tensor(negatives, dtype=torch.float32), t)
    assert got.item() == pytest.approx(np_pointwise(pred, target, negatives, t), rel=1e-4)


def test_hard_negatives_only_add_to_the_denominator():
    rng = np.random.default_rng(0)
    pred = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(2, 3, 8)), dtype=torch.float32), dim=-1)
    plain = cmd_pointwise_loss(pred, pred, None, 0.1)
    # A negative identical to point (0, 0) doubles that positive's mass in every denominator
    # where it sits: query (0, 0)'s term rises by about log 2, the others by less.
    harder = cmd_pointwise_loss(pred, pred, pred[:1, :1].clone(), 0.1)
    assert plain < harder < plain + np.log(2.0)
    # The positives' columns are the same with or without negatives (the target is column i*N + j).
    from vidssl.losses.cmd import cmd_pointwise_logits

    with_neg = cmd_pointwise_logits(pred, pred, pred[:1, :1], 0.1)
    torch.testing.assert_close(with_neg[:, :6], cmd_pointwise_logits(pred, pred, None, 0.1))


@pytest.mark.parametrize("alpha", [0.0, 0.2, 0.5, 1.0])
def test_joint_loss_is_eq3(alpha):
    j_i, j_m = torch.tensor(2.0), torch.tensor(5.0)
    assert cmd_joint_loss(j_i, j_m, alpha).item() == pytest.approx((1 - alpha) * 2.0 + alpha * 5.0)


@pytest.mark.parametrize("shape", [(1, 1, 2), (3, 7, 2)])
def test_motion_mse_matches_numpy(shape):
    rng = np.random.default_rng(sum(shape))
    pred, target = rng.normal(size=shape), rng.normal(size=shape) * 4
    got = cmd_motion_mse_loss(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    assert got.item() == pytest.approx(np.mean((pred - target) ** 2), rel=1e-5)


def np_bin(v, k, bound):
    v = min(max(v, -bound), bound)
    return min(int(np.floor((v + bound) / (2 * bound) * k)), k - 1)


@pytest.mark.parametrize("b,n,k,bound", [(1, 2, 2, 1.0), (2, 5, 9, 8.0), (3, 4, 16, 4.0)])
def test_motion_ce_matches_numpy(b, n, k, bound):
    rng = np.random.default_rng(k)
    logits = rng.normal(size=(b, n, 2, k)) * 2
    target = rng.normal(size=(b, n, 2)) * bound  # some beyond the bound: clamped into the end bins
    total, count = 0.0, 0
    for idx in np.ndindex(b, n, 2):
        y = np_bin(target[idx], k, bound)
        total += -(logits[idx][y] - _log_sum_exp(list(logits[idx])))
        count += 1
    got = cmd_motion_ce_loss(torch.tensor(logits, dtype=torch.float32), torch.tensor(target, dtype=torch.float32),
                             bound)
    assert got.item() == pytest.approx(total / count, rel=1e-5)


def test_quantize_motion_bins():
    values = torch.tensor([-100.0, -8.0, -0.01, 0.0, 0.01, 7.99, 8.0, 100.0])
    assert quantize_motion(values, 2, 8.0).tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert quantize_motion(values, 9, 8.0).tolist() == [np_bin(v, 9, 8.0) for v in values.tolist()]
    assert quantize_motion(torch.tensor([0.0]), 9, 8.0).item() == 4  # zero motion is the middle bin


def test_losses_give_finite_gradients_and_run_in_fp32_under_autocast():
    x, z = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    pred, target = torch.randn(4, 3, 8, requires_grad=True), torch.randn(4, 3, 8, requires_grad=True)
    neg = torch.randn(4, 2, 3, 8, requires_grad=True)
    logits = torch.randn(4, 3, 2, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = [cmd_context_loss(x.bfloat16(), z.bfloat16()), cmd_pointwise_loss(pred, target, neg),
                  cmd_motion_mse_loss(pred[..., :2], target[..., :2]), cmd_motion_ce_loss(logits, target[..., :2], 1.0)]
        losses.append(cmd_joint_loss(losses[0], losses[1]))
    assert all(loss.dtype == torch.float32 for loss in losses)
    sum(losses).backward()
    for grad in (x.grad, z.grad, pred.grad, target.grad, neg.grad, logits.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="cmd_context_loss"):
        cmd_context_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="cmd_pointwise_loss"):
        cmd_pointwise_loss(torch.randn(2, 4, 3), torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="hard negatives"):
        cmd_pointwise_loss(torch.randn(2, 4, 3), torch.randn(2, 4, 3), torch.randn(2, 4, 2))
    with pytest.raises(ValueError, match="temperature"):
        cmd_context_loss(torch.randn(4, 3), torch.randn(4, 3), 0.0)
    with pytest.raises(ValueError, match="alpha"):
        cmd_joint_loss(torch.tensor(1.0), torch.tensor(1.0), 1.5)
    with pytest.raises(ValueError, match="cmd_motion_mse_loss"):
        cmd_motion_mse_loss(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="cmd_motion_ce_loss"):
        cmd_motion_ce_loss(torch.randn(2, 3, 2), torch.randn(2, 3, 2), 1.0)
