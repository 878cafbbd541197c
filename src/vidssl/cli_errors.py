"""How the ``vidssl`` command reports a failure: one line naming the file or key, and an exit code.

A command that fails on its input prints ``vidssl CMD: error: ...`` on stderr and no traceback
(``-v`` re-raises for one). The exit code says what kind of failure it was:

- 2: the command line, a config or a path given is wrong; nothing ran (or nothing was changed).
- 1: the job ran and its input or the machine failed it: too many unreadable videos, a video that
  cannot be read, a full disk, a permission, or an unexpected error (a bug: rerun with ``-v``).
- 130: interrupted (Ctrl-C).

Errors raised far from the command come wrapped: Lightning re-raises what a training step raised,
sometimes as the context of its own exception, and a DataLoader worker's exception reaches the main
process as a new exception whose message holds the worker's whole traceback. ``explain`` unwraps
both to the error that says what is wrong.
"""
from __future__ import annotations

import errno
import re
import sys
from typing import Callable

__all__ = ["explain", "one_line", "warning_printer", "USAGE", "FAILED", "INTERRUPTED"]

USAGE, FAILED, INTERRUPTED = 2, 1, 130

# Exception names (a DataLoader worker's traceback gives only the name) of the user's mistakes ...
_USAGE_ERRORS = {"ConfigError", "ValueError", "KeyError", "FileNotFoundError", "FileExistsError",
                 "NotADirectoryError", "IsADirectoryError", "MisconfigurationException"}
# ... and of failures of the job's data or machine.
_DATA_ERRORS = {"TooManyBadVideos", "VideoReadError", "OSError", "PermissionError"}

# What to do about an OSError, by errno.
_OS_HINTS = {
    errno.ENOSPC: "the disk is full; free some space and rerun (a run continues with --resume)",
    errno.EDQUOT: "the disk quota is exhausted; free some space and rerun",
    errno.EACCES: "check its permissions: the user running vidssl must be able to read it, or write there",
    errno.EPERM: "check its permissions: the user running vidssl must be able to read it, or write there",
    errno.EROFS: "the file system is read-only; choose a writable path",
    errno.ENOTDIR: "a file stands where a folder is expected; move it or choose another path",
    errno.EISDIR: "a folder stands where a file is expected; choose a file",
    errno.EEXIST: "it already exists; choose another path or remove it",
    errno.ENOENT: "no such file or folder; check the path",
}

_WORKER_TRACEBACK = "Original Traceback (most recent call last):"
_RAISED_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*): (?P<message>.*)$", re.S)


def explain(err: BaseException) -> tuple[int, str]:
    """``(exit code, one-line message)`` for ``err``, unwrapped to the error that names the problem."""
    err = _cause(err)
    name, message = type(err).__name__, _message(err)
    worker = _from_worker_traceback(message)
    if worker is not None:  # re-raised from a DataLoader worker: the worker's own error decides
        name, message = worker
    if _kind(name, err) == "usage":
        return USAGE, message
    if _kind(name, err) == "data":
        return FAILED, message
    return FAILED, f"unexpected {name}: {message} (this may be a bug; rerun with -v for the traceback)"


def one_line(text: str) -> str:
    """``text`` with its lines joined: stderr gets one line per message."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def warning_printer(command: str) -> Callable:
    """A ``warnings.showwarning`` that prints ``vidssl COMMAND: warning: ...`` on one line (no source line)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        stream = file if file is not None else sys.stderr
        try:
            stream.write(f"vidssl {command}: warning: {one_line(message)}\n")
        except (OSError, ValueError):  # a closed or broken stream must not end the job
            pass

    return show


def _cause(err: BaseException) -> BaseException:
    """The first error of ``err``'s chain (raised ``from`` or while handling) that vidssl knows how to
    explain; ``err`` itself when none is."""
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if _kind(type(node).__name__, node) is not None:
            return node
        node = node.__cause__ or (None if node.__suppress_context__ else node.__context__)
    return err


def _kind(name: str, err: BaseException) -> str | None:
    mro = {cls.__name__ for cls in type(err).__mro__} if name == type(err).__name__ else {name}
    if mro & {"TooManyBadVideos", "VideoReadError"}:
        return "data"
    if mro & _USAGE_ERRORS:
        return "usage"
    if mro & _DATA_ERRORS:
        return "data"
    return None


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and err.args:
        return one_line(err.args[0])
    if (isinstance(err, OSError) and err.errno is not None and err.strerror
            and type(err).__str__ is OSError.__str__):  # a subclass with its own words keeps them
        # "[Errno 28] No space left on device: 'x'" says neither the path first nor what to do.
        # os.replace's error names the temporary file first; the destination is the one meant.
        target = err.filename2 or err.filename
        where = f"{target}: " if target else ""
        hint = _OS_HINTS.get(err.errno)
        return f"{where}{err.strerror}" + (f" ({hint})" if hint else "")
    text = str(err)
    if _WORKER_TRACEBACK in text:
        return text  # kept whole for _from_worker_traceback
    return one_line(text) or type(err).__name__


def _from_worker_traceback(message: str) -> tuple[str, str] | None:
    """``(error name, message)`` of the error a DataLoader worker raised, from the traceback text
    torch puts in the message of the exception it re-raises in the main process."""
    if _WORKER_TRACEBACK not in message:
        return None
    tail = message.split(_WORKER_TRACEBACK, 1)[1].rstrip().splitlines()
    # The raised line comes after the last indented (frame or source) line of the traceback.
    last_frame = max((i for i, line in enumerate(tail) if line.startswith(" ")), default=-1)
    match = _RAISED_LINE.match("\n".join(tail[last_frame + 1:]).strip())
    if match is None:
        return None
    return match["type"].rsplit(".", 1)[-1], one_line(match["message"])
