"""Contrastive losses shared by the instance-discrimination methods."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["info_nce", "info_nce_logits", "queue_logits"]


def info_nce_logits(query: torch.Tensor, positive_key: torch.Tensor,
                    negatives: torch.Tensor | None = None,
                    negative_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine logits with the positive in column 0: [N, 1 + K] (or [N, N] in-batch).

    With ``negatives`` [K, D] (a MoCo queue) row i is ``[q_i.k_i, q_i.n_1, ..., q_i.n_K]``.
    Without, the other rows' keys are the negatives and the positive sits on the diagonal,
    so the target of row i is i (SimCLR / CPC in-batch form).

    ``negative_mask`` (bool [N, K], with ``negatives`` only): True where negative j is no
    negative of query i (e.g. a queued key of i's own video); its logit is -inf, so it drops
    out of the softmax as if it were not in the queue.
    """
    q = F.normalize(query.float(), dim=1)
    k = F.normalize(positive_key.float(), dim=1)
    if negatives is None:
        if negative_mask is not None:
            raise ValueError("negative_mask needs explicit negatives (a queue)")
        return q @ k.t()
    l_pos = (q * k).sum(dim=1, keepdim=True)
    return torch.cat([l_pos, queue_logits(q, negatives, negative_mask)], dim=1)


def queue_logits(query: torch.Tensor, negatives: torch.Tensor,
                 negative_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine logits [N, K] of ``query`` [N, D] (already L2-normalised, fp32) against a queue
    ``negatives`` [K, D]; entries where ``negative_mask`` (bool [N, K]) is True are -inf."""
    l_neg = query @ F.normalize(negatives.float(), dim=1).t()
    if negative_mask is not None:
        if negative_mask.shape != l_neg.shape:
            raise ValueError(f"negative_mask must be [N, K] = {tuple(l_neg.shape)}, "
                             f"got {tuple(negative_mask.shape)}")
        l_neg = l_neg.masked_fill(negative_mask.to(device=l_neg.device, dtype=torch.bool), float("-inf"))
    return l_neg


def info_nce(query: torch.Tensor, positive_key: torch.Tensor, negatives: torch.Tensor | None = None,
             temperature: float = 0.07, negative_mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""InfoNCE (van den Oord et al. 2018, eq. 4; MoCo, He et al. CVPR 2020, eq. 1).

    .. math:: \mathcal{L}_q = -\log \frac{\exp(q\cdot k_+/\tau)}{\exp(q\cdot k_+/\tau) + \sum_{k_-}\exp(q\cdot k_-/\tau)}

    averaged over the batch. ``query`` and ``positive_key`` are [N, D] (L2-normalised here, in
    fp32, so the loss is the same under bf16 autocast); ``negatives`` is [K, D] or ``None`` for
    in-batch negatives (the other keys of the batch). ``negative_mask`` (bool [N, K]) leaves
    negative j out of query i's sum where it is True (a key of the query's own video).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = info_nce_logits(query, positive_key, negatives, negative_mask) / temperature
    if negatives is None:
        target = torch.arange(logits.shape[0], device=logits.device)
    else:
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)
