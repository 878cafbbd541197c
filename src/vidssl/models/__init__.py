"""Video backbones (C3D, R3D, R(2+1)D, R2D, S3D-G, I3D) and the heads methods put on them."""
from __future__ import annotations

import importlib

# Public name -> submodule, imported on first use like vidssl.video and vidssl.losses.
_EXPORTS = {
    "Backbone": "backbones",
    "BACKBONES": "backbones",
    "STAGES": "backbones",
    "build_backbone": "backbones",
    "MLPHead": "heads",
    "LinearHead": "heads",
    "L2Normalize": "heads",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
