"""Backbone registry: ``build_backbone(name, width=, depth=, in_channels=)``.

==========  =====================  ============  =========================  ==================
name        paper                  depths        p5 map for 8x56x56 input   params at width 64
==========  =====================  ============  =========================  ==================
c3d         Tran et al. 2015       (fixed)       512w x 1 x 4 x 4           27,658,688
r3d         Tran et al. 2018       10 18 26 34   512w x 1 x 4 x 4           33,166,272 (18)
r2plus1d    Tran et al. 2018       10 18 26 34   512w x 1 x 4 x 4           31,300,125 (18)
r2d         He et al. 2016         10 18 26 34   512w x 8 x 2 x 2           4,905,792 (10)
s3d         Xie et al. 2018 S3D-G  (fixed)       1024w x 1 x 2 x 2          9,119,392
i3d         Carreira & Zisserman   (fixed)       1024w x 1 x 2 x 2          12,287,264
==========  =====================  ============  =========================  ==================

(w = width / 64.) Every backbone is a :class:`Backbone`; each module's docstring lists its
stage shapes and what happens to short clips (no temporal size ever reaches 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .base import STAGES, Backbone, scale_channels
from .c3d import build_c3d
from .inception import build_inception
from .resnet3d import RESNET_DEPTHS, build_video_resnet

__all__ = ["BACKBONES", "STAGES", "Backbone", "build_backbone", "scale_channels"]


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., Backbone]
    depths: tuple[int, ...] = ()  # empty: the architecture has one fixed depth
    options: frozenset[str] = field(default_factory=frozenset)  # extra keyword arguments


_RESNET_OPTIONS = frozenset({"zero_init_residual"})
_RESNET_DEPTHS = tuple(sorted(RESNET_DEPTHS))

BACKBONES: dict[str, _Entry] = {
    "c3d": _Entry(build_c3d),
    "r3d": _Entry(lambda **kw: build_video_resnet("r3d", **kw), _RESNET_DEPTHS, _RESNET_OPTIONS),
    "r2plus1d": _Entry(lambda **kw: build_video_resnet("r2plus1d", **kw), _RESNET_DEPTHS, _RESNET_OPTIONS),
    "r2d": _Entry(lambda **kw: build_video_resnet("r2d", **kw), _RESNET_DEPTHS, _RESNET_OPTIONS),
    "s3d": _Entry(lambda **kw: build_inception("s3d", **kw)),
    "i3d": _Entry(lambda **kw: build_inception("i3d", **kw)),
}


def build_backbone(
    name: str, *, width: int = 64, depth: int | None = None, in_channels: int = 3, **kw: Any
) -> Backbone:
    """Build backbone ``name`` with base width ``width`` (64 = the papers' size).

    Args:
        name: one of ``BACKBONES`` ("c3d", "r3d", "r2plus1d", "r2d", "s3d", "i3d").
        width: channels of the first stage at width 64 scale; every layer scales with it.
        depth: ResNets only: 10, 18, 26 or 34 (default 18; 10 for "r2d"). Must be None for
            the fixed-depth networks.
        in_channels: 3 for RGB; 2 for optical flow or motion vectors, 1 for motion maps.
        **kw: ResNets accept ``zero_init_residual=True``.

    Raises:
        ValueError: unknown name, a depth the architecture lacks, a width or in_channels < 1,
            or an option the architecture does not take; the message names the key.
    """
    entry = BACKBONES.get(name)
    if entry is None:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    for key, value in (("width", width), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"backbone {name!r}: {key} must be a positive integer, got {value!r}")
    unknown = sorted(set(kw) - entry.options)
    if unknown:
        allowed = sorted(entry.options) or "none"
        raise ValueError(f"backbone {name!r}: unknown option(s) {unknown}; allowed: {allowed}")
    if entry.depths:
        if depth is not None and depth not in entry.depths:
            raise ValueError(f"backbone {name!r}: depth must be one of {list(entry.depths)}, got {depth!r}")
        kw["depth"] = depth
    elif depth is not None:
        raise ValueError(f"backbone {name!r} has a fixed depth; leave depth unset (got {depth!r})")
    return entry.build(width=width, in_channels=in_channels, **kw)
