"""The Method interface every pretext task implements.

A method is a small ``nn.Module`` that owns its heads (and momentum encoder or queue, if any)
and turns one batch into losses. The trainer knows nothing else about it:

- ``Config``: a dataclass of the method's own keys. ``build_method`` validates the user's
  ``method:`` section against it, so an unknown or mistyped key is one clear error.
- ``view_sampler()``: what the loader must produce per video (how many clips, their length,
  stride or pace, and per-view labels such as the pace class).
- ``forward(batch) -> dict``: ``"loss"`` is optimised, every other entry is logged. A
  second-order term (MCL) calls ``torch.autograd.grad(..., create_graph=True)`` in here.

Batches come straight from the collate function: ``batch["clips"]`` is uint8
[B, V, T, H, W, 3] on the device, augmented here on the device (DESIGN.md data flow), and
``batch["generator"]`` is a ``torch.Generator`` seeded from (seed, global step) by the trainer
so augmentation and shuffles reproduce exactly, also after a resume.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from vidssl.data.augment import ClipAugment

__all__ = ["Method", "METHODS", "register", "build_method", "method_config"]

METHODS: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
    """Class decorator: make a method available by its ``name`` in configs and the CLI."""
    METHODS[cls.name] = cls
    return cls


class Method(nn.Module):
    name: ClassVar[str] = ""

    @dataclasses.dataclass
    class Config:
        pass

    def __init__(self, backbone: nn.Module, cfg: Any, num_classes: int, augment: ClipAugment,
                 channels_last: bool = False):
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self.num_classes = num_classes
        self.augment = augment
        self.channels_last = channels_last

    def view_sampler(self):
        raise NotImplementedError

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # -- shared helpers ---------------------------------------------------------------
    def augment_views(self, clips: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 [B, V, T, H, W, 3] -> float [B*V, 3, T, crop, crop], view-major within a video.

        Every view gets its own crop/flip/colour (MoCo's two augmentations); a clip's frames share
        them unless the augmentation is per-frame. Output is in the backbone's memory format.
        """
        x = self.augment(clips.flatten(0, 1), generator=generator)
        return self.to_backbone_format(x)

    def to_backbone_format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last and x.dim() == 5 else x


def method_config(name: str, section: Mapping[str, Any] | None) -> Any:
    """Validate a ``method:`` config section against the method's ``Config`` dataclass."""
    from vidssl.config import validate_section

    if name not in METHODS:
        _import_builtin_methods()
    if name not in METHODS:
        raise KeyError(f"method.name: unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return validate_section(METHODS[name].Config, section or {}, prefix="method")


def build_method(name: str, backbone: nn.Module, cfg: Any, num_classes: int, augment: ClipAugment,
                 channels_last: bool = False) -> Method:
    if name not in METHODS:
        _import_builtin_methods()
    return METHODS[name](backbone, cfg, num_classes, augment, channels_last=channels_last)


def _import_builtin_methods() -> None:
    # Importing a method module registers it; optional ones may not exist yet in a checkout.
    import importlib

    for module in ("supervised", "moco", "pace", "dsm", "mcl", "cmd"):
        try:
            importlib.import_module(f"vidssl.methods.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"vidssl.methods.{module}":
                raise
