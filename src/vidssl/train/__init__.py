"""Training: one LightningModule for every method, a resumable data module, atomic checkpoints."""
from __future__ import annotations

import importlib

_EXPORTS = {"pretrain": "run", "MethodModule": "module", "VideoDataModule": "data",
            "load_backbone": "export", "save_backbone": "export"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
