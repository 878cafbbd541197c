"""A test method with cmd's shape: a backbone plus two named extra networks, one RGB, one 2-channel.

Importing this module registers ``two-networks``. It trains like ``supervised`` (same config keys
and view sampler) and adds a classifier on each extra network: the ``iframe`` one (an R2D-10)
sees the augmented RGB views, the ``motion`` one (an R3D-10 with 2 input channels) their frame
differences in the first two channels, a stand-in for a 2-channel motion stream. Every batch's
``step`` and ``epoch`` are recorded in ``seen``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from vidssl.methods.base import Method, register
from vidssl.methods.supervised import Supervised
from vidssl.models.heads import LinearHead

NAME = "two-networks"


@register
class TwoNetworks(Method):
    name = NAME
    extra_networks = {"iframe": {"backbone": "r2d", "depth": 10},
                      "motion": {"backbone": "r3d", "depth": 10, "in_channels": 2}}

    @dataclass
    class Config(Supervised.Config):
        name: str = NAME

    view_sampler = Supervised.view_sampler

    def __init__(self, backbone, cfg, num_classes, augment, channels_last=False, networks=None):
        super().__init__(backbone, cfg, num_classes, augment, channels_last, networks)
        self.classifier = LinearHead(backbone.out_dim, num_classes)
        self.heads = nn.ModuleDict({name: LinearHead(net.out_dim, num_classes) for name, net in self.networks.items()})
        self.seen: list[tuple[int, float]] = []
        self._views = None

    def augment_views(self, clips, generator=None):
        self._views = super().augment_views(clips, generator)  # the RGB views supervised's forward makes
        return self._views

    def forward(self, batch):
        self.seen.append((batch.get("step"), batch.get("epoch")))
        out = Supervised.forward(self, batch)
        x = self._views
        inputs = {"iframe": x, "motion": x[:, :2, 1:] - x[:, :2, :-1]}
        for name, net in self.networks.items():
            out[f"loss_{name}"] = F.cross_entropy(self.heads[name](net(inputs[name])).float(), batch["label"])
            out["loss"] = out["loss"] + out[f"loss_{name}"]
        return out
