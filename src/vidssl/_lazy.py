"""Lazy re-exports for the subpackages' ``__init__`` files.

``import vidssl.video`` must stay cheap (a DataLoader worker that only decodes frames never
loads OpenCV, faiss or Lightning), so each subpackage maps its public names to the submodule
defining them and imports that submodule on first access (PEP 562 module ``__getattr__``).
"""
from __future__ import annotations

import importlib
from typing import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], list[str]]:
    """Return ``(__getattr__, __all__)`` for ``package`` given ``{public name: submodule}``."""

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(exports)
