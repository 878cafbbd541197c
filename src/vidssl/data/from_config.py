"""The data objects a config's ``data:`` section names: the catalog and the frame cache.

Kept apart from ``vidssl.train`` so that evaluation and the demo's scoring build them without
importing Lightning (about 7 s on this machine, most of it torchmetrics' version checks).
"""
from __future__ import annotations

from typing import Any

from vidssl.config import ConfigError
from vidssl.data.catalogs import load_catalog
from vidssl.video.frame_cache import FrameCache

__all__ = ["catalog_from_config", "frame_cache_from_config"]


def catalog_from_config(data, subset: str = "train"):
    """The ``subset`` ("train" or "test") catalog of ``data.dataset`` at ``data.root`` / ``data.split``."""
    kind = data.dataset
    kwargs: dict[str, Any] = {}
    if kind in ("ucf101", "hmdb51"):
        kwargs = dict(root=data.root, split=data.split, subset=subset, split_dir=data.split_dir)
    elif kind == "kinetics400":
        kwargs = dict(root=data.root, csv_path=data.csv, subset=subset)
    elif kind == "folder":
        kwargs = dict(root=data.root)
    elif kind == "csv":
        kwargs = dict(csv_path=data.csv, root=data.root)
    else:
        raise ConfigError(f"data.dataset: unknown dataset {kind!r} (ucf101 | hmdb51 | kinetics400 | folder | csv)")
    return load_catalog(kind, **kwargs)


def frame_cache_from_config(data) -> FrameCache | None:
    """The ``FrameCache`` that ``data.frame_cache`` names, at ``data.frame_size``; None when unset."""
    if not data.frame_cache:
        return None
    return FrameCache(data.frame_cache, tuple(data.frame_size) if data.frame_size else None)
