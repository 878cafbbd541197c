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

Every architecture takes ``in_channels`` (3 for RGB, 2 for optical flow or motion vectors, 1
for motion maps). A :class:`NetworkSpec` (backbone, width, depth, in_channels) is all it takes
to rebuild a network; every built backbone carries its own as ``.spec``, which is what a run
directory's ``networks.json`` records for each exported network.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

from .base import STAGES, Backbone, scale_channels
from .c3d import build_c3d
from .inception import build_inception
from .resnet3d import RESNET_DEPTHS, build_video_resnet

__all__ = ["BACKBONES", "STAGES", "Backbone", "NetworkSpec", "build_backbone", "scale_channels"]


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., Backbone]
    depths: tuple[int, ...] = ()  # empty: the architecture has one fixed depth
    options: frozenset[str] = field(default_factory=frozenset)  # extra keyword arguments
    default_depth: int | None = None


_RESNET_OPTIONS = frozenset({"zero_init_residual"})
_RESNET_DEPTHS = tuple(sorted(RESNET_DEPTHS))

BACKBONES: dict[str, _Entry] = {
    "c3d": _Entry(build_c3d),
    "r3d": _Entry(lambda **kw: build_video_resnet("r3d", **kw), _RESNET_DEPTHS, _RESNET_OPTIONS, 18),
    "r2plus1d": _Entry(lambda **kw: build_video_resnet("r2plus1d", **kw), _RESNET_DEPTHS, _RESNET_OPTIONS, 18),
    "r2d": _Entry(lambda **kw: build_video_resnet("r2d", **kw), _RESNET_DEPTHS, _RESNET_OPTIONS, 10),
    "s3d": _Entry(lambda **kw: build_inception("s3d", **kw)),
    "i3d": _Entry(lambda **kw: build_inception("i3d", **kw)),
}


@dataclass(frozen=True)
class NetworkSpec:
    """How to rebuild a backbone: ``build_backbone(backbone, width=, depth=, in_channels=)``.

    ``depth`` is None for the fixed-depth architectures (c3d, s3d, i3d). ``spec.build()`` gives a
    freshly initialised network; ``to_dict`` / ``from_dict`` are what ``networks.json`` stores.
    """
    backbone: str
    width: int = 64
    depth: int | None = None
    in_channels: int = 3

    def build(self, **kw: Any) -> "Backbone":
        return build_backbone(self.backbone, width=self.width, depth=self.depth, in_channels=self.in_channels, **kw)

    def validate(self) -> "NetworkSpec":
        """Raise ``build_backbone``'s ValueError for a spec it would refuse, without building;
        returns the spec with the depth resolved (e.g. r3d's default 18)."""
        _, depth = _check(self.backbone, self.width, self.depth, self.in_channels, {})
        return NetworkSpec(self.backbone, self.width, depth, self.in_channels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "network") -> "NetworkSpec":
        """The spec in ``data`` (extra keys, such as ``file``, are ignored); ``where`` names it in errors."""
        if not isinstance(data, Mapping) or not isinstance(data.get("backbone"), str):
            raise ValueError(f"{where}: expected a mapping with a 'backbone' name, got {data!r}")
        return cls(**{k: data[k] for k in ("backbone", "width", "depth", "in_channels") if k in data})

    def describe(self) -> str:
        """E.g. ``r3d-10 (width 64, 2 input channels)``."""
        name = self.backbone if self.depth is None else f"{self.backbone}-{self.depth}"
        return f"{name} (width {self.width}, {self.in_channels} input channels)"


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
    entry, depth = _check(name, width, depth, in_channels, kw)
    if entry.depths:
        kw["depth"] = depth
    model = entry.build(width=width, in_channels=in_channels, **kw)
    # A plain attribute, not state: what networks.json records to rebuild this network.
    model.spec = NetworkSpec(name, width=width, depth=depth, in_channels=in_channels)
    return model


def _check(name: str, width: Any, depth: Any, in_channels: Any, kw: Mapping[str, Any]) -> tuple[_Entry, int | None]:
    """Validate ``build_backbone``'s arguments without building; returns the entry and the depth."""
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
        if depth is None:
            depth = entry.default_depth
        if depth not in entry.depths:
            raise ValueError(f"backbone {name!r}: depth must be one of {list(entry.depths)}, got {depth!r}")
    elif depth is not None:
        raise ValueError(f"backbone {name!r} has a fixed depth; leave depth unset (got {depth!r})")
    return entry, depth
