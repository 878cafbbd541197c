"""Network weights in and out of a run directory.

``backbone.safetensors`` is the network a user evaluates (plain state-dict names). A method with
more networks (cmd's I- and M-networks) has each one beside it as ``NAME.safetensors``, and
``networks.json`` says how to rebuild every one of them::

    {"backbone": {"file": "backbone.safetensors", "backbone": "r3d", "width": 64, "depth": 26, "in_channels": 3},
     "motion":   {"file": "motion.safetensors",   "backbone": "r3d", "width": 64, "depth": 10, "in_channels": 2}}

``backbone_from_run(run_dir, network=NAME)`` rebuilds and loads any of them. A run directory
written before ``networks.json`` existed holds the backbone only, rebuilt from ``config.yaml``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from safetensors.torch import load_file, save
from torch import nn

from vidssl.io import write_bytes_atomic, write_json_atomic

__all__ = ["NETWORKS_FILE", "save_backbone", "load_backbone", "save_networks", "run_network_specs",
           "backbone_from_run", "check_run_dir"]

NETWORKS_FILE = "networks.json"


def save_backbone(backbone: nn.Module, path: str | os.PathLike) -> Path:
    """Write the backbone's state dict atomically (temp file + rename).

    Serialised in memory and written by vidssl.io, not by safetensors' own file writer: that one
    creates files 0600 (every other file of a run follows the umask) and reports a full disk
    without the file's name.
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    write_bytes_atomic(path, save(state))
    return path


def load_backbone(backbone: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError for a damaged file
        raise ValueError(f"{path}: cannot read the weights ({err}); the file is damaged or not "
                         f"safetensors") from None
    backbone.load_state_dict(state, strict=strict)
    return backbone


def save_networks(networks: Any, run_dir: str | os.PathLike) -> dict[str, Path]:
    """Export every network of a method (or a ``{name: module}`` mapping with a ``backbone``):
    ``NAME.safetensors`` each, then ``networks.json``. Returns name -> weights file.

    A network built by ``build_backbone`` carries its ``spec``; one assembled by hand is exported
    without one (its weights are there, ``backbone_from_run`` cannot rebuild it).
    """
    named: Mapping[str, nn.Module] = networks.named_networks() if hasattr(networks, "named_networks") else networks
    if "backbone" not in named:
        raise ValueError(f"save_networks: no 'backbone' among the networks {sorted(named)}")
    run_dir = Path(run_dir)
    files, index = {}, {}
    for name, module in named.items():
        files[name] = save_backbone(module, run_dir / f"{name}.safetensors")
        spec = getattr(module, "spec", None)
        index[name] = {"file": files[name].name, **(spec.to_dict() if spec is not None else {})}
    write_json_atomic(run_dir / NETWORKS_FILE, index)
    return files


def run_network_specs(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Name -> ``NetworkSpec`` (None where not recorded) of every network a run directory holds."""
    from vidssl.models.backbones import NetworkSpec

    run_dir = Path(run_dir)
    index_path = run_dir / NETWORKS_FILE
    if not index_path.is_file():  # a run from before networks.json: its backbone, as config.yaml says
        from vidssl.config import load_config
        from vidssl.methods.base import backbone_spec

        return {"backbone": backbone_spec(load_config([run_dir / "config.yaml"]).model)}
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{index_path}: cannot read: {err}") from None
    return {name: NetworkSpec.from_dict(entry, where=f"{index_path} {name}") if "backbone" in entry else None
            for name, entry in index.items()}


def backbone_from_run(run_dir: str | os.PathLike, network: str = "backbone") -> nn.Module:
    """Rebuild network ``network`` of a run (default: its backbone) and load its weights.

    Raises:
        KeyError: the run has no network of that name (the message lists those it has).
        FileNotFoundError: the run directory lacks its config or weights.
    """
    run_dir = Path(run_dir)
    specs = run_network_specs(run_dir)
    if network not in specs:
        raise KeyError(f"{run_dir}: no network {network!r}; this run has: {', '.join(specs)}")
    spec = specs[network]
    if spec is None:
        raise ValueError(f"{run_dir / NETWORKS_FILE}: network {network!r} was exported without a spec "
                         f"(a hand-assembled module); build it yourself and load_backbone() its weights")
    return load_backbone(spec.build(), run_dir / f"{network}.safetensors")


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """``run_dir`` if it is a folder ``vidssl pretrain`` wrote (it holds config.yaml), else
    ``FileNotFoundError`` saying which it is not, before anything reads from it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a run directory" if run_dir.exists() else "no such run directory"
        raise FileNotFoundError(f"{run_dir}: {what} (give the folder `vidssl pretrain` wrote)")
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: not a pretraining run directory (no config.yaml); give the folder "
                                f"`vidssl pretrain` wrote")
    return run_dir
