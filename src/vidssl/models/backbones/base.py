"""The one interface every video backbone in vidssl exposes.

A backbone is five named stages, ``p1`` (stem) .. ``p5`` (last stage), run in order. Methods
ask for the stage maps they need (MCL aligns gradients on ``p5``; Pace's retrieval uses ``p4``)
and for the global average of ``p5`` ("pooled"), which is also what ``forward`` returns. Every
architecture shares this class, so a method never branches on which backbone it was given.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

__all__ = ["STAGES", "Backbone", "scale_channels", "init_weights"]

STAGES = ("p1", "p2", "p3", "p4", "p5")


def scale_channels(channels: int, width: int) -> int:
    """Channel count of a layer that has ``channels`` at the paper width (64), at ``width``.

    Rounded to the nearest integer and never below 1, so the tiny widths the tests and the demo
    use (8, 16) give every layer of every architecture at least one channel.
    """
    return max(1, int(round(channels * width / 64)))


def init_weights(module: nn.Module, *, zero_init_residual: bool = False) -> None:
    """Kaiming-normal (fan_out, ReLU) convolutions, unit/zero norms, small linears.

    The same initialisation torchvision uses for its video ResNets (He et al. 2015). With
    ``zero_init_residual``, every module that marks a norm as ``last_norm`` (the BN closing a
    residual branch) starts at zero so each residual block begins as the identity (Goyal et al.
    2017), which helps large-batch pretraining.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm3d, nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in module.modules():
            last_norm = getattr(m, "last_norm", None)
            if isinstance(last_norm, nn.modules.batchnorm._BatchNorm):
                nn.init.zeros_(last_norm.weight)


class Backbone(nn.Module):
    """Five stages ``p1``..``p5`` plus a global average pool of ``p5``.

    Attributes:
        name: registry name ("r3d", "c3d", ...), used in error messages.
        in_channels: channels the input must have (3 for RGB, 2 for flow or motion vectors).
        stage_dims: channels of each stage's output map.
        out_dim: channels of ``p5``, the size of the pooled feature.
        accepts_images: True for frame-wise 2D networks (R2D): a 4-D input [N, C, H, W] is
            taken as a one-frame clip and stage maps come back 4-D.
        spec: the ``NetworkSpec`` (backbone, width, depth, in_channels) that rebuilds this
            network, set by ``build_backbone``; None for a backbone assembled by hand.

    Input is [N, C, T, H, W] in any memory format (contiguous or ``torch.channels_last_3d``);
    no op here forces a layout, so a model moved to channels_last_3d stays in it end to end.
    """

    def __init__(
        self,
        name: str,
        stages: Mapping[str, nn.Module],
        stage_dims: Mapping[str, int],
        *,
        in_channels: int,
        accepts_images: bool = False,
    ) -> None:
        super().__init__()
        if tuple(stages) != STAGES or tuple(stage_dims) != STAGES:
            raise ValueError(f"{name}: stages must be exactly {STAGES}, got {tuple(stages)}")
        self.name = name
        self.in_channels = in_channels
        self.accepts_images = accepts_images
        self.spec = None  # set by build_backbone
        self.stages = nn.ModuleDict(stages)
        self.stage_dims = dict(stage_dims)
        self.out_dim = self.stage_dims["p5"]

    def _check_input(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Validate ``x``; returns a 5-D tensor and whether the caller gave a 4-D image batch."""
        is_image = x.dim() == 4 and self.accepts_images
        if is_image:
            x = x.unsqueeze(2)  # [N, C, H, W] -> one-frame clip [N, C, 1, H, W]
        if x.dim() != 5:
            expected = "[N, C, T, H, W] or [N, C, H, W]" if self.accepts_images else "[N, C, T, H, W]"
            raise ValueError(f"backbone {self.name!r} expects {expected}, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"backbone {self.name!r} was built for {self.in_channels} input channels, "
                f"got shape {tuple(x.shape)} (channels are dim 1: [N, C, T, H, W])"
            )
        return x, is_image

    def _parse_stages(self, stages: str | Iterable[str]) -> tuple[str, ...]:
        wanted = (stages,) if isinstance(stages, str) else tuple(stages)
        unknown = [s for s in wanted if s not in STAGES]
        if unknown:
            raise ValueError(f"backbone {self.name!r}: unknown stage(s) {unknown}; choose from {STAGES}")
        return wanted

    def forward_features(
        self, x: torch.Tensor, stages: str | Iterable[str] = ("p5",)
    ) -> dict[str, torch.Tensor]:
        """Stage maps [N, C, t, h, w] for each name in ``stages`` plus "pooled" [N, out_dim].

        "pooled" is always the global (time and space) average of ``p5``, whatever stages are
        requested; pool an earlier stage yourself (e.g. ``maps["p4"].mean((2, 3, 4))``).
        The returned maps are the tensors the network computed, so gradients taken w.r.t. them
        (MCL's Grad-CAM style alignment) flow into "pooled".
        """
        wanted = self._parse_stages(stages)
        x, is_image = self._check_input(x)
        out: dict[str, torch.Tensor] = {}
        for name, stage in self.stages.items():
            x = stage(x)
            if name in wanted:
                out[name] = x.squeeze(2) if is_image else x
        out["pooled"] = x.mean(dim=(2, 3, 4))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Global average of the last stage: [N, out_dim]."""
        return self.forward_features(x, stages=())["pooled"]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, in_channels={self.in_channels}, out_dim={self.out_dim}"
