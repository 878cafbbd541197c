"""Losses as pure functions of tensors, one per paper equation.

Each function's docstring names its paper and equation; every one is checked in tests against an
independent NumPy computation. Under bf16 autocast they compute in fp32.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "info_nce": "contrastive",
    "pace_cls_loss": "pace", "pace_same_context_loss": "pace", "pace_same_pace_loss": "pace",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
