"""Inception-v1 video networks: I3D and S3D-G.

I3D (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017): Inception-v1 with
every kernel inflated to 3D (stem 7x7x7 stride 2, 3x3x3 inside the blocks). Used by DSM.
S3D-G (Xie et al., "Rethinking Spatiotemporal Feature Learning", ECCV 2018, Sec. 4.2-4.3):
the same network with each 3x3x3 conv from Conv2c on made separable (1x3x3 then 3x1x1) and
a feature gate after Conv2c and after every branch of every Inception block,
y = sigmoid(W mean_{t,h,w}(x)) * x (the paper's self-gating; W has no bias, as in the
TensorFlow reference ``s3dg.py``). Its stem is a full 3x7x7 conv with stride 2, the reference's
default ``first_temporal_kernel_size=3``. Used by MCL, Pace and CoCLR-style baselines.

All channel counts (64, 192, and the Inception table below) scale by ``width / 64``.

Stages (Inception-v1 endpoint names in brackets):
    p1 = [Conv_1a] stride 2 in T, H, W                 -> [64w,   T/2, H/2,  W/2]
    p2 = [MaxPool_2a 1x3x3/1x2x2, Conv_2b, Conv_2c]     -> [192w,  T/2, H/4,  W/4]
    p3 = [MaxPool_3a 1x3x3/1x2x2, Mixed_3b, 3c]         -> [480w,  T/2, H/8,  W/8]
    p4 = [MaxPool_4a 3x3x3/2, Mixed_4b .. 4f]           -> [832w,  T/4, H/16, W/16]
    p5 = [MaxPool_5a 2x2x2/2, Mixed_5b, 5c]             -> [1024w, T/8, H/32, W/32]
Every downsampling maps n to ceil(n / 2) (padding, or ceil_mode for the 2x2x2 pool, matching
TensorFlow's SAME padding), so time never reaches 0: T=16 -> 8, 8, 8, 4, 2; T=8 -> 4, 4, 4,
2, 1; T=4 -> 2, 2, 2, 1, 1. For 112x112 input p5 is 4x4, for 56x56 it is 2x2.
"""
from __future__ import annotations

import torch
from torch import nn, Tensor

from .base import Backbone, init_weights, scale_channels
from .layers import ConvBNReLU3d, SepConvBNReLU3d

__all__ = ["SelfGating", "InceptionBlock3d", "build_inception"]

# Inception-v1 blocks (Szegedy et al. 2015, Table 1): branch widths at width 64 as
# (1x1, 3x3-reduce, 3x3, "5x5"-reduce, "5x5" (3x3 in I3D/S3D), pool-proj).
_BLOCKS: dict[str, tuple[int, int, int, int, int, int]] = {
    "3b": (64, 96, 128, 16, 32, 32),
    "3c": (128, 128, 192, 32, 96, 64),
    "4b": (192, 96, 208, 16, 48, 64),
    "4c": (160, 112, 224, 24, 64, 64),
    "4d": (128, 128, 256, 24, 64, 64),
    "4e": (112, 144, 288, 32, 64, 64),
    "4f": (256, 160, 320, 32, 128, 128),
    "5b": (256, 160, 320, 32, 128, 128),
    "5c": (384, 192, 384, 48, 128, 128),
}


class SelfGating(nn.Module):
    """S3D-G feature gating (Xie et al. 2018, Sec. 4.3): channel weights from the clip average."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return x * gate[:, :, None, None, None]


class InceptionBlock3d(nn.Module):
    """Four parallel branches (1x1; 1x1 -> 3x3; 1x1 -> 3x3; max pool -> 1x1), concatenated."""

    def __init__(self, in_ch: int, widths: tuple[int, ...], *, separable: bool, gating: bool):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3b = widths
        conv3 = SepConvBNReLU3d if separable else ConvBNReLU3d
        self.branch0 = ConvBNReLU3d(in_ch, b0, 1)
        self.branch1 = nn.Sequential(ConvBNReLU3d(in_ch, b1a, 1), conv3(b1a, b1b, 3, padding=1))
        self.branch2 = nn.Sequential(ConvBNReLU3d(in_ch, b2a, 1), conv3(b2a, b2b, 3, padding=1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), ConvBNReLU3d(in_ch, b3b, 1))
        branch_out = (b0, b1b, b2b, b3b)
        self.gates = nn.ModuleList(SelfGating(c) for c in branch_out) if gating else None
        self.out_channels = sum(branch_out)

    def forward(self, x: Tensor) -> Tensor:
        outs = [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)]
        if self.gates is not None:
            outs = [gate(o) for gate, o in zip(self.gates, outs)]
        return torch.cat(outs, dim=1)


def build_inception(kind: str, *, width: int = 64, in_channels: int = 3) -> Backbone:
    """``kind`` "i3d" or "s3d" (S3D-G); see the module docstring for the stage shapes."""
    if kind not in ("i3d", "s3d"):
        raise ValueError(f"unknown Inception backbone {kind!r}; choose 'i3d' or 's3d'")
    s3d = kind == "s3d"
    c64, c192 = scale_channels(64, width), scale_channels(192, width)

    if s3d:
        stem = ConvBNReLU3d(in_channels, c64, (3, 7, 7), stride=2, padding=(1, 3, 3))
        conv2c: list[nn.Module] = [SepConvBNReLU3d(c64, c192, 3, padding=1), SelfGating(c192)]
    else:
        stem = ConvBNReLU3d(in_channels, c64, 7, stride=2, padding=3)
        conv2c = [ConvBNReLU3d(c64, c192, 3, padding=1)]

    ch = c192

    def blocks(names: str) -> list[nn.Module]:
        nonlocal ch
        out = []
        for name in names.split():
            widths = tuple(scale_channels(c, width) for c in _BLOCKS[name])
            block = InceptionBlock3d(ch, widths, separable=s3d, gating=s3d)
            ch = block.out_channels
            out.append(block)
        return out

    stages: dict[str, nn.Module] = {
        "p1": stem,
        "p2": nn.Sequential(
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), ConvBNReLU3d(c64, c64, 1), *conv2c
        ),
    }
    dims = {"p1": c64, "p2": c192}
    stages["p3"] = nn.Sequential(nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), *blocks("3b 3c"))
    dims["p3"] = ch
    stages["p4"] = nn.Sequential(nn.MaxPool3d(3, stride=2, padding=1), *blocks("4b 4c 4d 4e 4f"))
    dims["p4"] = ch
    stages["p5"] = nn.Sequential(nn.MaxPool3d(2, stride=2, ceil_mode=True), *blocks("5b 5c"))
    dims["p5"] = ch
    model = Backbone(kind, stages, dims, in_channels=in_channels)
    init_weights(model)
    return model
