"""Heads that sit on a backbone's pooled feature: projection MLPs and linear classifiers.

- MoCo-v2 / MCL projection: ``MLPHead([D, 2048, 128], l2_normalize=True, bn=False)``
  (MCL Sec. 4.2: 2048x2048 and 2048x128 fully connected layers, L2-normalised output).
- CMD heads: ``MLPHead([D, 2048, 128], norm_last=True, l2_normalize=True)`` (their code ends
  every MLP head with BN then L2 normalisation).
- DSM head: ``MLPHead([D, 128], l2_normalize=True)`` (GAP -> Linear 128 -> L2).
- Pace / supervised fine-tuning classifier: ``LinearHead(D, num_classes, dropout=0.5)``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["L2Normalize", "MLPHead", "LinearHead"]


class L2Normalize(nn.Module):
    """Unit L2 norm along dim 1, computed in fp32 (bf16 has ~3 significant digits, too few for
    the cosine similarities divided by a 0.07-0.1 temperature that contrastive losses take)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=1)


class MLPHead(nn.Sequential):
    """Linear -> BN -> ReLU between consecutive ``dims``; the last Linear optionally -> BN -> L2.

    Args:
        dims: feature sizes ``[in, hidden..., out]``, at least two (one Linear).
        norm_last: add BatchNorm1d after the last Linear (CMD).
        l2_normalize: L2-normalise the output (in fp32, so the output is fp32 under autocast).
        bn: BatchNorm1d after each hidden Linear; with ``bn=False`` the hidden layers are
            Linear -> ReLU (MoCo-v2's head). A Linear followed by BN has no bias.

    Layers keep PyTorch's default init (Kaiming-uniform Linear), which MoCo and SimCLR heads
    train with. Input [N, dims[0]] -> output [N, dims[-1]]. With ``bn`` or ``norm_last`` in
    training mode a batch needs at least 2 samples (BatchNorm statistics).
    """

    def __init__(
        self, dims: Sequence[int], norm_last: bool = False, l2_normalize: bool = False, bn: bool = True
    ) -> None:
        dims = [int(d) for d in dims]
        if len(dims) < 2 or min(dims) < 1:
            raise ValueError(f"MLPHead dims must be at least two positive sizes [in, ..., out], got {dims}")
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-2], dims[1:-1]):
            layers.append(nn.Linear(d_in, d_out, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm1d(d_out))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(dims[-2], dims[-1], bias=not norm_last))
        if norm_last:
            layers.append(nn.BatchNorm1d(dims[-1]))
        if l2_normalize:
            layers.append(L2Normalize())
        super().__init__(*layers)
        self.in_dim, self.out_dim = dims[0], dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"MLPHead expects [N, {self.in_dim}], got shape {tuple(x.shape)}")
        return super().forward(x)


class LinearHead(nn.Module):
    """Dropout -> Linear classifier on a pooled feature (fine-tuning, supervised baseline).

    Weights start at N(0, 0.01) and bias at 0, as torchvision's video ResNet classifier.
    """

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if in_dim < 1 or num_classes < 1:
            raise ValueError(f"LinearHead needs in_dim >= 1 and num_classes >= 1, got {in_dim}, {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LinearHead dropout must be in [0, 1), got {dropout}")
        self.in_dim, self.num_classes = in_dim, num_classes
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_dim, num_classes)
        nn.init.normal_(self.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"LinearHead expects [N, {self.in_dim}], got shape {tuple(x.shape)}")
        return self.fc(self.dropout(x))
