"""C3D (Tran et al., "Learning Spatiotemporal Features with 3D Convolutional Networks", ICCV 2015).

Eight 3x3x3 convolutions, 64-128-256-256-512-512-512-512 channels at width 64, with
max pooling 1x2x2 after conv1 and 2x2x2 after conv2, conv3b and conv4b. This is the
self-supervised variant used by VCOP, Pace Prediction (Wang et al. 2020, Sec. 3.3), DSM and
CMD: BatchNorm after every convolution, no fc6/fc7, and pool5 replaced by global average
pooling. Conv layers have no bias (the BN shift replaces it), so at width 64 the backbone has
27,658,688 parameters (27,653,184 conv weights + 5,504 BN), the "27.7M" of Pace's Table 3.

Stages (pooling at the end of a stage, so ``p4`` is Pace's "pool4" feature, Sec. 4.3):
    p1 = conv1 + pool1(1,2,2)          -> [64w,  T,    H/2,  W/2]
    p2 = conv2 + pool2(2,2,2)          -> [128w, T/2,  H/4,  W/4]
    p3 = conv3a, conv3b + pool3        -> [256w, T/4,  H/8,  W/8]
    p4 = conv4a, conv4b + pool4        -> [512w, T/8,  H/16, W/16]
    p5 = conv5a, conv5b                -> [512w, T/8,  H/16, W/16]
(w = width / 64). Pools use ceil_mode, so a size halves as ceil(n / 2) and never reaches 0:
T=16 -> 16, 8, 4, 2, 2; T=8 -> 8, 4, 2, 1, 1; T=4 -> 4, 2, 1, 1, 1.
"""
from __future__ import annotations

from torch import nn

from .base import Backbone, init_weights, scale_channels
from .layers import ConvBNReLU3d

__all__ = ["build_c3d"]

# (channels at width 64 of each conv in the stage, pool kernel/stride after the stage or None)
_C3D_STAGES = (
    ("p1", (64,), (1, 2, 2)),
    ("p2", (128,), (2, 2, 2)),
    ("p3", (256, 256), (2, 2, 2)),
    ("p4", (512, 512), (2, 2, 2)),
    ("p5", (512, 512), None),
)


def build_c3d(*, width: int = 64, in_channels: int = 3) -> Backbone:
    """C3D with channels scaled by ``width / 64``; see the module docstring for shapes."""
    stages: dict[str, nn.Module] = {}
    dims: dict[str, int] = {}
    ch = in_channels
    for name, convs, pool in _C3D_STAGES:
        layers: list[nn.Module] = []
        for c in convs:
            out = scale_channels(c, width)
            layers.append(ConvBNReLU3d(ch, out, 3, padding=1))
            ch = out
        if pool is not None:
            layers.append(nn.MaxPool3d(pool, stride=pool, ceil_mode=True))
        stages[name] = nn.Sequential(*layers)
        dims[name] = ch
    model = Backbone("c3d", stages, dims, in_channels=in_channels)
    init_weights(model)
    return model
