"""Supervised training with cross-entropy on the catalog's labels.

Not self-supervised: it is the reference row. Trained on the benchmark's biased train list it
shows the scene shortcut (high on the biased test list, low on the decorrelated one); trained on
the unbiased list (split 3) it is the motion upper bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from vidssl.data.views import RandomClips
from vidssl.methods.base import Method, register
from vidssl.models.heads import LinearHead


@register
class Supervised(Method):
    name = "supervised"

    @dataclass
    class Config:
        name: str = "supervised"
        clip_len: int = 8
        stride: int = 2
        dropout: float = 0.0

    def __init__(self, backbone, cfg: "Supervised.Config", num_classes, augment, channels_last=False):
        super().__init__(backbone, cfg, num_classes, augment, channels_last)
        if num_classes < 2:
            raise ValueError("supervised training needs a catalog with at least 2 classes")
        self.classifier = LinearHead(backbone.out_dim, num_classes, dropout=cfg.dropout)

    def view_sampler(self):
        # Requests "clips": rgb [1, clip_len] at stride; the labels are the catalog's.
        return RandomClips(num_views=1, clip_len=self.cfg.clip_len, stride=self.cfg.stride)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        x = self.augment_views(batch["clips"], batch.get("generator"))
        logits = self.classifier(self.backbone(x)).float()
        labels = batch["label"]
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(1) == labels).float().mean() * 100
        return {"loss": loss, "train_acc": acc}
