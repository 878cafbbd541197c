"""The UCF101 split files and the ``benchmark.json`` manifest of a generated benchmark.

Split files are written exactly as UCF101 distributes them (``ucfTrainTestlist/``, CRLF line
endings, 1-based labels): ``classInd.txt`` lines ``"1 HorizontalBounce"``, train lists
``"HorizontalBounce/v_HorizontalBounce_g11_c01.avi 1"``, test lists the path alone. So
``vidssl.data.catalogs.ucf101`` reads the benchmark through the same code as the real dataset.
"""
from __future__ import annotations

from vidssl.io import write_text_atomic

import json
import os
from dataclasses import asdict
from pathlib import Path

from .motions import CLASSES
from .plan import LISTS, SPLIT_FILES, VideoSpec, video_summary
from .presets import Preset
from .scenes import SCENES

__all__ = ["MANIFEST_NAME", "SPLIT_DIR", "MANIFEST_VERSION", "write_split_files", "manifest_header",
           "write_manifest", "read_manifest"]

MANIFEST_NAME = "benchmark.json"
SPLIT_DIR = "ucfTrainTestlist"
# Bump whenever rendering changes, so an old folder is never silently topped up with new videos.
MANIFEST_VERSION = 1


def write_split_files(root: Path, specs: list[VideoSpec]) -> None:
    """``classInd.txt`` and the six train/test lists under ``root/ucfTrainTestlist``."""
    split_dir = root / SPLIT_DIR
    split_dir.mkdir(parents=True, exist_ok=True)
    _write_text(split_dir / "classInd.txt", [f"{i + 1} {name}" for i, name in enumerate(CLASSES)])
    by_list = {name: [s for s in specs if s.list_name == name] for name in LISTS}
    for file_name, list_name in SPLIT_FILES.items():
        if file_name.startswith("train"):
            lines = [f"{s.relpath} {s.label + 1}" for s in by_list[list_name]]
        else:
            lines = [s.relpath for s in by_list[list_name]]
        _write_text(split_dir / file_name, lines)


def manifest_header(preset: Preset, seed: int, rho: float) -> dict:
    """What identifies a benchmark: two folders with equal headers hold identical videos."""
    return {"format": "vidssl-synthetic", "version": MANIFEST_VERSION, "preset": asdict(preset),
            "seed": int(seed), "rho": float(rho), "classes": list(CLASSES), "scenes": list(SCENES),
            "split_files": {f"{SPLIT_DIR}/{k}": v for k, v in SPLIT_FILES.items()}}


def write_manifest(root: Path, header: dict, specs: list[VideoSpec], unit: float, *, complete: bool) -> None:
    manifest = dict(header, status="complete" if complete else "generating",
                    videos=[video_summary(s, unit) for s in specs])
    write_text_atomic(root / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")


def read_manifest(root: str | os.PathLike) -> dict:
    """The parsed ``benchmark.json`` of a generated benchmark (error naming the file if unreadable)."""
    path = Path(root) / MANIFEST_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no benchmark manifest (not a generated benchmark?)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _write_text(path: Path, lines: list[str]) -> None:
    # UCF101's own list files use Windows line endings; match them byte for byte.
    write_text_atomic(path, "".join(line + "\r\n" for line in lines), newline="")


