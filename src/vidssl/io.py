"""Atomic file writes: nothing vidssl writes is ever seen half-written.

Everything goes to a temporary file in the destination's folder (same file system, so the final
``os.replace`` is atomic) and is renamed over the destination only when complete. An interrupted
job leaves either the old file or the new one, never a truncated one that a later run would
mistake for finished work. The temporary name keeps the extension, so libraries that pick a
format from the file name (PyAV, safetensors) write the right thing; it starts with ``.tmp-``,
so every reader that skips hidden files skips it (:func:`is_temporary`), and
:func:`remove_stale_temporaries` deletes those a killed process left behind.

A full disk while writing raises :class:`DiskFullError` naming the file (the previous version
stays as it was). Every file gets the mode a plain ``open()`` would give it under the current
umask (0644 under umask 022), whatever the writer used for its temporary file: safetensors
creates its files 0600.
"""
from __future__ import annotations

import errno
import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_path", "atomic_file", "write_bytes_atomic", "write_text_atomic", "write_json_atomic",
           "DiskFullError", "is_temporary", "remove_stale_temporaries", "file_mode"]

_TEMP_PREFIX = ".tmp-"
_TEMP_NAME = re.compile(r"^\.tmp-(\d+)-")
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# The one place atomic writes open their temporary file; tests replace it with a writer that
# fails part-way (a full disk cannot be simulated otherwise without mounting a file system).
_open = open


class DiskFullError(OSError):
    """No space left (or quota exceeded) while writing ``filename``; its previous version is intact."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(errno.ENOSPC, f"{path}: disk full (no space left on device) while writing it; any "
                                       f"previous version of the file is unchanged. Free some space and rerun.")
        self.filename = str(path)

    def __str__(self) -> str:
        return self.strerror


def file_mode() -> int:
    """The mode ``open()`` gives a new file under this process's umask (0o644 under 0o022)."""
    try:
        with open("/proc/self/status") as f:  # Linux: the umask without changing it
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def is_temporary(path: str | os.PathLike) -> bool:
    """True for the temporary name of a file still being written (or left by a killed process)."""
    return Path(path).name.startswith(_TEMP_PREFIX)


def remove_stale_temporaries(folder: str | os.PathLike, pattern: str = "*", *, live_writers: bool = True,
                             min_age: float = 0.0) -> list[Path]:
    """Delete the temporary files (matching ``pattern``) a killed process left in ``folder``.

    A temporary file carries the id of the process writing it: with ``live_writers`` one whose
    process still runs on this machine is kept (another job may be writing into the folder);
    ``live_writers=False`` for a folder only one job writes at a time. ``min_age``: keep files
    modified less than that many seconds ago, for folders shared between machines, where a
    process id says nothing about a writer elsewhere.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in folder.glob(f"{_TEMP_PREFIX}{pattern}"):
        match = _TEMP_NAME.match(path.name)
        if not match or (live_writers and _process_alive(int(match.group(1)))):
            continue
        try:
            if now - path.stat().st_mtime >= min_age and path.is_file():
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            pass
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _disk_full(err: BaseException) -> bool:
    """``err``, or an exception it was raised from, is a full disk (libraries re-wrap OSErrors)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _DISK_FULL:
            return True
        err = err.__cause__ or err.__context__
    return False


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    A full disk, whoever hit it (our write, PyAV, torch), becomes :class:`DiskFullError`.
    """
    path = Path(path)
    tmp = path.with_name(f"{_TEMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except DiskFullError:
        raise
    except BaseException as err:
        if _disk_full(err):
            raise DiskFullError(path) from err
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = True, **open_kwargs: Any) -> Iterator[IO]:
    """An open temporary file that replaces ``path`` once the block completes (flushed and, with
    ``fsync``, on disk before the rename)."""
    with atomic_path(path) as tmp:
        with _open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_file(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, newline: str | None = None) -> Path:
    """``newline=""`` writes the text's line endings as they are (e.g. CRLF split files)."""
    with atomic_file(path, "w", encoding="utf-8", newline=newline) as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, **kwargs: Any) -> Path:
    kwargs.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(obj, **kwargs) + "\n")
