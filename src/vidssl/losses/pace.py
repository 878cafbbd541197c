"""Pace prediction losses: Wang, Jiao, Liu, "Self-supervised Video Representation Learning by
Pace Prediction", ECCV 2020, section 3 (eq. 1-3).

Pure functions of tensors, computed in fp32 with autocast disabled (the trainer runs bf16).

Similarity. The paper defines ``sim(z_i, z_j)`` as the plain dot product ``z_i^T z_j`` and gives
no temperature. These functions compute ``z_i^T z_j / temperature``: ``temperature=1`` is the
paper's formula literally; whether ``z`` is L2-normalised first is the caller's choice (the pace
method normalises by default and uses temperature 0.1, see ``vidssl.methods.pace``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pace_cls_loss", "pace_same_context_loss", "pace_same_pace_loss"]


def pace_cls_loss(logits: torch.Tensor, pace: torch.Tensor) -> torch.Tensor:
    """Pace classification, eq. (1): cross-entropy over the M pace candidates.

    logits: [N, M] scores ``h = f(g_pac(x | p))``; pace: int64 [N] class index of each clip's pace.
    Returns the mean over the N clips (eq. 1 is written for one clip).
    """
    if logits.dim() != 2 or pace.shape != logits.shape[:1]:
        raise ValueError(f"pace_cls_loss: expected logits [N, M] and pace [N], got {tuple(logits.shape)} "
                         f"and {tuple(pace.shape)}")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.cross_entropy(logits.float(), pace.long())


def pace_same_context_loss(z: torch.Tensor, z_prime: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Same-context contrastive loss, eq. (2).

    z, z_prime: [N, D], row i of each embeds one of two clips of video i sampled at different
    paces. Each of the 2N clips is an anchor; its positive is the other clip of its video and its
    negatives are all 2N-2 clips of the other videos (both clips of each, as the paper's
    denominator sums over every clip of a different video):

        L = -1/(2N) sum_a log( exp(s(a, a')) / sum_{b != a} exp(s(a, b)) ),  s(a, b) = z_a^T z_b / t.
    """
    if z.dim() != 2 or z.shape != z_prime.shape:
        raise ValueError(f"pace_same_context_loss: expected two [N, D] tensors of one shape, got "
                         f"{tuple(z.shape)} and {tuple(z_prime.shape)}")
    _check_temperature(temperature)
    n = z.shape[0]
    if n < 2:
        raise ValueError("pace_same_context_loss: needs at least 2 videos (negatives come from other videos)")
    with torch.autocast(device_type=z.device.type, enabled=False):
        feats = torch.cat([z, z_prime]).float()
        sim = feats @ feats.T / temperature
        # A clip is never its own positive or negative.
        sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), float("-inf"))
        partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sim.device)
        # -log softmax at the partner's column == cross-entropy with the partner as target.
        return F.cross_entropy(sim, partner)


def pace_same_pace_loss(z: torch.Tensor, pace: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Same-pace contrastive loss, eq. (3).

    z: [N, D] clip embeddings; pace: int [N] pace class of each clip. For anchor i the positives
    are the other clips with the same pace, whatever their video (j != i, p_j = p_i) and the
    negatives the clips of other paces (p_k != p_i). The denominator of eq. (3) sums over both,
    i.e. over every other clip:

        L = -1/|A| sum_{i in A} 1/|P(i)| sum_{j in P(i)} log( exp(s_ij) / sum_{b != i} exp(s_ib) )

    The paper's normalisation (1/N over a triple sum) is ambiguous; this averages over each
    anchor's positives and then over the anchors A that have at least one positive (a pace that
    appears once in the batch has nothing to pull towards). Returns 0 (still attached to ``z``'s
    graph) when no anchor has a positive.
    """
    if z.dim() != 2 or pace.shape != z.shape[:1]:
        raise ValueError(f"pace_same_pace_loss: expected z [N, D] and pace [N], got {tuple(z.shape)} "
                         f"and {tuple(pace.shape)}")
    _check_temperature(temperature)
    n = z.shape[0]
    with torch.autocast(device_type=z.device.type, enabled=False):
        feats = z.float()
        sim = feats @ feats.T / temperature
        self_mask = torch.eye(n, dtype=torch.bool, device=sim.device)
        log_prob = torch.log_softmax(sim.masked_fill(self_mask, float("-inf")), dim=1)
        positive = (pace[:, None] == pace[None, :]) & ~self_mask
        num_pos = positive.sum(dim=1)
        has_pos = num_pos > 0
        if not bool(has_pos.any()):
            return feats.sum() * 0.0
        # masked_fill, not multiplication: the diagonal of log_prob is -inf and -inf * 0 is nan.
        pos_log_prob = log_prob.masked_fill(~positive, 0.0).sum(dim=1)
        return -(pos_log_prob[has_pos] / num_pos[has_pos]).mean()


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
