"""Atomic file writes: nothing vidssl writes is ever seen half-written.

Everything goes to a temporary file in the destination's folder (same file system, so the final
``os.replace`` is atomic) and is renamed over the destination only when complete. An interrupted
job leaves either the old file or the new one, never a truncated one that a later run would
mistake for finished work. The temporary name keeps the extension, so libraries that pick a
format from the file name (PyAV, safetensors) write the right thing.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic", "write_json_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, newline: str | None = None) -> Path:
    """``newline=""`` writes the text's line endings as they are (e.g. CRLF split files)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, **kwargs: Any) -> Path:
    kwargs.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(obj, **kwargs) + "\n")
