"""DSM losses: Wang, Jiao, Bao, He, Liu, Wang, "Enhancing Unsupervised Video Representation
Learning by Decoupling the Scene and the Motion", AAAI 2021, "Objective Function" (eq. 5-7).

Pure functions of tensors, computed in fp32 with autocast disabled (the trainer runs bf16).
Embeddings are L2-normalised here (a no-op for the method's already normalised heads), as the
paper's embedding space is "followed by L2 normalization".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vidssl.losses.contrastive import queue_logits

__all__ = ["dsm_triplet_loss", "dsm_contrastive_loss", "dsm_contrastive_logits"]


def dsm_triplet_loss(z_a: torch.Tensor, z_p: torch.Tensor, z_n: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Intra-video triplet loss, eq. (5).

    z_a, z_p, z_n: [N, D] embeddings of anchor, positive (spatial local disturbance) and
    negative (temporal local disturbance) of the same N videos:

        L_t = 1/N sum_i max(||z_a - z_p||_2 - ||z_a - z_n||_2 + margin, 0)

    Eq. (5) sums over the N videos; the mean keeps the loss's scale independent of the batch.
    """
    _check_same(z_a, z_p, z_n, "dsm_triplet_loss")
    if margin < 0:
        raise ValueError(f"dsm_triplet_loss: margin must be >= 0, got {margin}")
    with torch.autocast(device_type=z_a.device.type, enabled=False):
        a, p, n = (F.normalize(z.float(), dim=1) for z in (z_a, z_p, z_n))
        d_ap = (a - p).norm(dim=1)
        d_an = (a - n).norm(dim=1)
        return F.relu(d_ap - d_an + margin).mean()


def dsm_contrastive_logits(z_a: torch.Tensor, z_p: torch.Tensor, z_n: torch.Tensor | None,
                           queue: torch.Tensor, negative_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine logits of eq. (7) with the positive in column 0: [N, 1 (+ 1) + K].

    Row i is ``[a_i.p_i, a_i.n_i, a_i.q_1, ..., a_i.q_K]`` (``a_i.n_i`` left out when ``z_n`` is
    None); ``negative_mask`` (bool [N, K]) sets ``a_i.q_j`` to -inf where True (a queued anchor of
    video i itself, which is no negative of it).
    """
    _check_same(z_a, z_p, z_a if z_n is None else z_n, "dsm_contrastive_loss")
    if queue.dim() != 2 or queue.shape[1] != z_a.shape[1]:
        raise ValueError(f"dsm_contrastive_loss: queue must be [K, {z_a.shape[1]}], got {tuple(queue.shape)}")
    with torch.autocast(device_type=z_a.device.type, enabled=False):
        a, p = (F.normalize(z.float(), dim=1) for z in (z_a, z_p))
        columns = [(a * p).sum(1, keepdim=True)]
        if z_n is not None:
            columns.append((a * F.normalize(z_n.float(), dim=1)).sum(1, keepdim=True))
        return torch.cat([*columns, queue_logits(a, queue, negative_mask)], dim=1)


def dsm_contrastive_loss(z_a: torch.Tensor, z_p: torch.Tensor, z_n: torch.Tensor | None, queue: torch.Tensor,
                         temperature: float = 1.0, negative_mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""DSM's contrastive objective, eq. (7): InfoNCE (eq. 6) with the intra-video negative added.

    .. math:: \mathcal{L}_c = -\frac{1}{N}\sum_i \log \frac{e^{a_i\cdot p_i/\tau}}
              {e^{a_i\cdot p_i/\tau} + e^{a_i\cdot n_i/\tau} + \sum_{j=1}^{K} e^{a_i\cdot q_j/\tau}}

    z_a, z_p, z_n: [N, D] anchor, positive and negative embeddings of N videos; queue: [K, D]
    anchor embeddings of other videos (the MoCo memory bank, "features of a"). The paper prints
    ``-log sum_i (...)``; read as the usual mean of per-anchor terms. ``temperature`` divides every
    similarity: 1 in the paper ("we set tau = 1"), 0.07 in the authors' scripts. ``z_n=None`` is
    eq. (6) alone (Table 4's rows without a temporal disturbance); ``negative_mask`` as in
    :func:`dsm_contrastive_logits`.
    """
    if not temperature > 0:
        raise ValueError(f"dsm_contrastive_loss: temperature must be > 0, got {temperature}")
    logits = dsm_contrastive_logits(z_a, z_p, z_n, queue, negative_mask) / temperature
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


def _check_same(z_a: torch.Tensor, z_p: torch.Tensor, z_n: torch.Tensor, where: str) -> None:
    if z_a.dim() != 2 or z_p.shape != z_a.shape or z_n.shape != z_a.shape:
        raise ValueError(f"{where}: expected [N, D] anchor, positive and negative of one shape, got "
                         f"{tuple(z_a.shape)}, {tuple(z_p.shape)}, {tuple(z_n.shape)}")
