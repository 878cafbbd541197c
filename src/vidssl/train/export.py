"""Backbone weights in and out: ``backbone.safetensors`` with plain state-dict names."""
from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import load_file, save_file

from vidssl.io import atomic_path
from torch import nn

__all__ = ["save_backbone", "load_backbone", "backbone_from_run"]


def save_backbone(backbone: nn.Module, path: str | os.PathLike) -> Path:
    """Write the backbone's state dict atomically (temp file + rename)."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return path


def load_backbone(backbone: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    backbone.load_state_dict(load_file(str(path)), strict=strict)
    return backbone


def backbone_from_run(run_dir: str | os.PathLike) -> nn.Module:
    """Rebuild a run's backbone from its ``config.yaml`` and load ``backbone.safetensors``."""
    from vidssl.config import load_config
    from vidssl.models import build_backbone

    run_dir = Path(run_dir)
    cfg = load_config([run_dir / "config.yaml"])
    backbone = build_backbone(cfg.model.backbone, width=cfg.model.width, depth=cfg.model.depth)
    return load_backbone(backbone, run_dir / "backbone.safetensors")

