"""Video ResNets: R3D, R(2+1)D and the frame-wise R2D, at any depth of BasicBlocks and any width.

Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR 2018
(R3D: full 3x3x3 convolutions; R(2+1)D: each one factorised as 1x3x3 then 3x1x1, eq. in Sec.
3.5), built the way torchvision's ``torchvision.models.video`` builds them, so at width 64 the
parameter counts are torchvision's without the classifier: R3D-18 33,166,272 and R(2+1)D-18
31,300,125. Used by Pace (R3D-18, R(2+1)D), CMD (R3D-26, R(2+1)D-26; R2D-10 as I-network,
R3D-10 as M-network) and DSM (R3D-34).

Depths (BasicBlocks per stage): 10 -> [1,1,1,1], 18 -> [2,2,2,2], 26 -> [2,3,4,3],
34 -> [3,4,6,3]. Widths per stage: width * [1, 2, 4, 8].

Stages (torchvision has no max pool in its video ResNets):
    p1 = stem, spatial stride 2              -> [w,  T,   H/2,  W/2]
    p2 = layer1                              -> [w,  T,   H/2,  W/2]
    p3 = layer2, stride 2 in time and space  -> [2w, T/2, H/4,  W/4]
    p4 = layer3, stride 2                    -> [4w, T/4, H/8,  W/8]
    p5 = layer4, stride 2                    -> [8w, T/8, H/16, W/16]
A stride-2 3x3x3 conv with padding 1 (and the stride-2 1x1x1 shortcut) maps n to ceil(n / 2),
so time never collapses to 0: T=16 -> 16, 16, 8, 4, 2; T=8 -> 8, 8, 4, 2, 1;
T=4 -> 4, 4, 2, 1, 1. For 112x112 input p5 is 7x7, for 56x56 it is 4x4.

R2D (He et al. 2016 ResNet with a max pool after the stem, as the I-network of CMD) keeps every
temporal kernel and stride at 1: it is a 2D ResNet applied to each frame independently. It is
written with Conv3d kernels 1xkxk rather than Conv2d on a [N*T, C, H, W] batch because that is
the same computation (BatchNorm3d over (N, T, H, W) equals BatchNorm2d over (N*T, H, W)) while
keeping every weight 5-D, so ``model.to(memory_format=torch.channels_last_3d)`` works on a
method that holds R2D next to a 3D network. Its stages: p1 H/2, p2 H/4 (max pool + layer1),
p3 H/8, p4 H/16, p5 H/32; T unchanged. A 4-D [N, C, H, W] input is a one-frame clip.
"""
from __future__ import annotations

from typing import Callable

from torch import nn, Tensor

from .base import Backbone, init_weights, scale_channels
from .layers import Conv3d

__all__ = ["RESNET_DEPTHS", "BasicBlock", "r2plus1d_mid_planes", "build_video_resnet"]

RESNET_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    26: (2, 3, 4, 3),
    34: (3, 4, 6, 3),
}

# ConvMaker(in_planes, out_planes, mid_planes, stride) -> module with a 3x3(x3) receptive field
ConvMaker = Callable[[int, int, int, int], nn.Module]


def r2plus1d_mid_planes(in_planes: int, out_planes: int) -> int:
    """Tran et al. 2018, Sec. 3.5: M = floor(t d^2 N_in N_out / (d^2 N_in + t N_out)), t=d=3.

    This is the width between the spatial and the temporal factor that gives a (2+1)D conv
    the parameter count of the full t x d x d conv it replaces.
    """
    return (in_planes * out_planes * 27) // (in_planes * 9 + 3 * out_planes)


def _conv3x3x3(in_planes: int, out_planes: int, mid_planes: int, stride: int) -> nn.Module:
    return Conv3d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv2plus1d(in_planes: int, out_planes: int, mid_planes: int, stride: int) -> nn.Module:
    return nn.Sequential(
        Conv3d(in_planes, mid_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(mid_planes),
        nn.ReLU(inplace=True),
        Conv3d(mid_planes, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
    )


def _conv1x3x3(in_planes: int, out_planes: int, mid_planes: int, stride: int) -> nn.Module:
    return Conv3d(in_planes, out_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)


class BasicBlock(nn.Module):
    """Two 3x3(x3) convolutions with BN, an identity (or 1x1x1 projection) shortcut, ReLU.

    For R(2+1)D both convolutions use the mid width computed from (in_planes, planes), exactly
    as torchvision does; that is what makes R(2+1)D-18 31,300,125 parameters. Computing it per
    conv ((planes, planes) for the second) would give 33,165,639, about R3D-18's 33,166,272;
    at depth 10 that per-conv variant has the size of the "14.4M R(2+1)D" in the VCOP / Pace tables
    (14,352,519 that way, 12,487,005 with the torchvision rule).
    """

    def __init__(
        self, in_planes: int, planes: int, conv: ConvMaker, stride: int, shortcut_stride: tuple[int, int, int]
    ):
        super().__init__()
        mid = r2plus1d_mid_planes(in_planes, planes)
        self.conv1 = nn.Sequential(conv(in_planes, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv(planes, planes, mid, 1), nn.BatchNorm3d(planes))
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                Conv3d(in_planes, planes, 1, stride=shortcut_stride, bias=False), nn.BatchNorm3d(planes)
            )
        self.relu = nn.ReLU(inplace=True)

    @property
    def last_norm(self) -> nn.BatchNorm3d:
        """The BN closing the residual branch; zeroed by ``zero_init_residual``."""
        return self.conv2[1]

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


def _stem(kind: str, in_channels: int, width: int) -> nn.Sequential:
    if kind == "r3d":
        return nn.Sequential(
            Conv3d(in_channels, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
    if kind == "r2plus1d":
        mid = scale_channels(45, width)  # torchvision's fixed 45 at width 64
        return nn.Sequential(
            Conv3d(in_channels, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            Conv3d(mid, width, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
    if kind == "r2d":
        return nn.Sequential(
            Conv3d(in_channels, width, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
    raise ValueError(f"unknown video ResNet kind {kind!r}")


_CONVS: dict[str, ConvMaker] = {"r3d": _conv3x3x3, "r2plus1d": _conv2plus1d, "r2d": _conv1x3x3}


def build_video_resnet(
    kind: str,
    *,
    depth: int | None = None,
    width: int = 64,
    in_channels: int = 3,
    zero_init_residual: bool = False,
) -> Backbone:
    """R3D / R(2+1)D / R2D (``kind``) of ``depth`` 10, 18, 26 or 34 (default 18; R2D 10)."""
    if kind not in _CONVS:
        raise ValueError(f"unknown video ResNet kind {kind!r}; choose from {sorted(_CONVS)}")
    if depth is None:
        depth = 10 if kind == "r2d" else 18
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"backbone {kind!r}: depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
    conv = _CONVS[kind]
    frame_wise = kind == "r2d"
    stages: dict[str, nn.Module] = {"p1": _stem(kind, in_channels, width)}
    dims = {"p1": width}
    in_planes = width
    for i, blocks in enumerate(RESNET_DEPTHS[depth]):
        planes = width * 2**i
        stride = 1 if i == 0 else 2
        shortcut_stride = (1, stride, stride) if frame_wise else (stride, stride, stride)
        layers: list[nn.Module] = []
        if frame_wise and i == 0:
            # ResNet's 3x3 max pool opens conv2_x (He et al. 2016, Table 1).
            layers.append(nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
        for b in range(blocks):
            layers.append(BasicBlock(in_planes, planes, conv, stride if b == 0 else 1, shortcut_stride))
            in_planes = planes
        stages[f"p{i + 2}"] = nn.Sequential(*layers)
        dims[f"p{i + 2}"] = planes
    model = Backbone(kind, stages, dims, in_channels=in_channels, accepts_images=frame_wise)
    init_weights(model, zero_init_residual=zero_init_residual)
    return model
