"""Supervised training with cross-entropy on the catalog's labels.

Not self-supervised: it is the reference row. Trained on the benchmark's biased train list it
shows the scene shortcut (high on the biased test list, low on the decorrelated one); trained on
the unbiased list (split 3) it is the motion upper bound.

``motion_weight > 0`` adds CMD's motion prediction as an auxiliary regulariser (Huang et al.,
CVPR 2021, Table 6: the pointwise InfoNCE of eq. 2 at weight 0.2): an R3D-10 M-network on the
motion vectors of the frames after the clip (exported as ``motion``), the encoder-decoder and
heads of :class:`vidssl.methods.cmd.MotionPrediction`, whose settings ``motion`` takes (any key
of the cmd method's config, e.g. ``{predictor: convgru, future: 8}``). Off (the default), the
method is exactly the plain supervised one: same modules, sampler and forward.
"""
from __future__ import annotations

from dataclasses import dataclass, field
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
        motion_weight: float = 0.0      # CMD Table 6: 0.2; 0 = no auxiliary motion prediction
        motion: dict[str, Any] = field(default_factory=dict)  # cmd's motion-prediction keys

        def __post_init__(self) -> None:
            if self.motion_weight < 0:
                from vidssl.config import ConfigError

                raise ConfigError(f"method.motion_weight: must be >= 0, got {self.motion_weight}")
            if self.motion:  # checked even while off, so a typo does not wait for the day it is switched on
                from vidssl.methods.cmd import motion_config

                motion_config(self)

    def __init__(self, backbone, cfg: "Supervised.Config", num_classes, augment, channels_last=False):
        super().__init__(backbone, cfg, num_classes, augment, channels_last)
        if num_classes < 2:
            raise ValueError("supervised training needs a catalog with at least 2 classes")
        self.classifier = LinearHead(backbone.out_dim, num_classes, dropout=cfg.dropout)
        if cfg.motion_weight > 0:
            self._build_motion_prediction(backbone, cfg, augment, channels_last)

    def view_sampler(self):
        if getattr(self, "motion", None) is not None:
            return self.motion.views()
        # Requests "clips": rgb [1, clip_len] at stride; the labels are the catalog's.
        return RandomClips(num_views=1, clip_len=self.cfg.clip_len, stride=self.cfg.stride)

    def signals(self) -> tuple:
        return self.motion.signals() if getattr(self, "motion", None) is not None else ()

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if getattr(self, "motion", None) is not None:
            return self._forward_with_motion(batch)
        x = self.augment_views(batch["clips"], batch.get("generator"))
        logits = self.classifier(self.backbone(x)).float()
        labels = batch["label"]
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(1) == labels).float().mean() * 100
        return {"loss": loss, "train_acc": acc}

    # -- CMD's motion prediction as a regulariser (Table 6) ------------------------------------
    def _build_motion_prediction(self, backbone, cfg, augment, channels_last) -> None:
        from vidssl.methods.cmd import MotionPrediction, motion_config, motion_network

        self.networks["motion"] = motion_network(backbone)
        self.motion = MotionPrediction(backbone, self.networks["motion"], motion_config(cfg), augment, channels_last)

    def _forward_with_motion(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        generator = batch.get("generator")
        clips = batch["clips"].flatten(0, 1)
        params = self.augment.sample_params(clips.shape[0], *clips.shape[2:4], generator, num_frames=clips.shape[1])
        maps = self.backbone.forward_features(self.to_backbone_format(self.augment.apply(clips, params)), "p5")
        logits = self.classifier(maps["pooled"]).float()
        labels = batch["label"]
        out = {"loss_cls": F.cross_entropy(logits, labels),
               "train_acc": (logits.argmax(1) == labels).float().mean() * 100}
        out.update(self.motion(maps["p5"], batch, params.geometry, self.networks["motion"], generator))
        out["loss"] = out["loss_cls"] + self.cfg.motion_weight * out["loss_motion"]
        return out
