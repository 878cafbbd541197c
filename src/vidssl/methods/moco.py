"""Clip-level MoCo v2 on RGB (He et al., CVPR 2020; Chen et al., 2020): the context-biased baseline.

Two random clips of the same video, each with its own augmentation, form the positive pair;
keys of other videos held in a queue are the negatives. The queue tags each key with its video
index, and keys of the query's own video are masked out of its negatives (the queue may be
larger than the dataset, and after an epoch it holds older keys of every video). This is the baseline the motion-aware
papers compare against (DSM Table 1, MCL Table 5, CMD Table 4): with nothing forcing it to look at
motion, it happily matches clips by their shared background.

Hyper-parameters (MoCo v2 defaults unless the config says otherwise): queue 65536, momentum
0.999, temperature 0.2, projection MLP out_dim -> hidden -> 128.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from vidssl.data.views import RandomClips
from vidssl.losses import info_nce
from vidssl.losses.contrastive import info_nce_logits
from vidssl.methods.base import Method, register
from vidssl.methods.momentum import FeatureQueue, MomentumEncoder, shuffled_forward
from vidssl.models.heads import MLPHead


@register
class MoCo(Method):
    name = "moco"

    @dataclass
    class Config:
        name: str = "moco"
        clip_len: int = 8
        stride: int = 2
        queue_size: int = 65536
        momentum: float = 0.999
        temperature: float = 0.2
        proj_hidden: int = 2048
        proj_dim: int = 128
        shuffle_bn_splits: int = 2  # single-process SplitBN groups for the key encoder

    def __init__(self, backbone, cfg: "MoCo.Config", num_classes, augment, channels_last=False):
        super().__init__(backbone, cfg, num_classes, augment, channels_last)
        self.head = MLPHead([backbone.out_dim, cfg.proj_hidden, cfg.proj_dim], l2_normalize=True)
        self.key_encoder = MomentumEncoder(self.backbone, self.head)
        self.queue = FeatureQueue(cfg.queue_size, cfg.proj_dim)

    def view_sampler(self):
        # Requests "clips": rgb [2, clip_len], two independent random clips of the video (query, key).
        return RandomClips(num_views=2, clip_len=self.cfg.clip_len, stride=self.cfg.stride)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if "index" not in batch:
            raise KeyError("moco needs batch['index'], the video each clip pair comes from, to keep a "
                           "video's own queued keys out of its negatives")
        video = torch.as_tensor(batch["index"], dtype=torch.long).to(self.queue.tags.device).reshape(-1)
        generator = batch.get("generator")
        x = self.augment_views(batch["clips"], generator)           # [B*2, 3, T, H, W]
        x_q, x_k = x.unflatten(0, (-1, 2)).unbind(1)
        q = self.head(self.backbone(x_q))
        with torch.no_grad():
            self.key_encoder.update(self.cfg.momentum)
            k = shuffled_forward(self.key_encoder, x_k, generator, self.cfg.shuffle_bn_splits)
        # A queue larger than the dataset (or a few epochs in) holds keys of the query's own video:
        # they are positives, not negatives, so they are left out of its sum.
        own_video = self.queue.tags.unsqueeze(0) == video.unsqueeze(1)      # [B, K]
        negatives = self.queue.features.clone().detach()
        loss = info_nce(q, k, negatives, self.cfg.temperature, negative_mask=own_video)
        with torch.no_grad():
            acc = (info_nce_logits(q, k, negatives, own_video).argmax(1) == 0).float().mean() * 100
        self.queue.dequeue_and_enqueue(k, video)  # tags gathered with the keys under DDP
        return {"loss": loss, "pretext_acc": acc, "masked_negatives": own_video.sum(1).float().mean()}
