"""Find the videos of a collection that vidssl cannot read, before a long job trips on them.

``check_videos`` decodes every frame of every file (in ``workers`` processes, see
:func:`vidssl.parallel.map_videos`) and lists the unreadable ones with the reason, so a user can re-encode or
drop them up front instead of discovering them as skips during training. It backs the
``vidssl check-videos`` command.
"""
from __future__ import annotations

from vidssl.io import write_json_atomic

import os
import re
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Iterable, Sequence

from vidssl.parallel import map_videos
from vidssl.video.reader import VideoReader, VideoReadError

__all__ = ["VIDEO_EXTENSIONS", "CheckReport", "check_videos", "collect_video_paths"]

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


@dataclass
class CheckReport:
    """Outcome of ``check_videos``: how many files read fine, and why the others did not."""

    total: int
    ok: int
    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), sorted by path
    # Readable but damaged (path, what is wrong): frames whose packets exist do not decode,
    # frames decode with errors, or the file holds fewer frames than its header promises.
    damaged: list[tuple[str, str]] = field(default_factory=list)
    total_frames: int = 0  # frames that decode, summed over the readable files
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bad"] = [{"path": p, "reason": r} for p, r in self.bad]
        d["damaged"] = [{"path": p, "reason": r} for p, r in self.damaged]
        return d

    def write_json(self, path: str | os.PathLike) -> None:
        """Write the report as JSON atomically (temp file in the same folder, then rename)."""
        write_json_atomic(path, self.to_dict())

    def summary(self) -> str:
        lines = [f"{self.ok}/{self.total} videos readable, {len(self.bad)} unreadable, {len(self.damaged)} "
                 f"damaged ({self.total_frames} frames, {self.seconds:.1f} s)"]
        lines += [f"  unreadable {p}: {r}" for p, r in self.bad]
        lines += [f"  damaged {p}: {r}" for p, r in self.damaged]
        return "\n".join(lines)


def collect_video_paths(
    source: str | os.PathLike | Sequence[str | os.PathLike], *, root: str | os.PathLike | None = None
) -> list[str]:
    """Video paths from a folder, a list file, a single video, or a sequence of paths.

    - folder: every file below it (recursively) whose extension is in ``VIDEO_EXTENSIONS``
      (any case), sorted; hidden files and folders (".name", e.g. macOS "._clip.avi"
      resource forks that look like broken videos) are skipped.
    - text file: one path per line; blank lines and "#" comments are skipped, and a trailing
      integer label after whitespace (the UCF101 ``trainlist01.txt`` style) is dropped.
      Relative paths are taken relative to ``root`` (default: the list file's folder).
    - a file with a video extension: that file alone.
    - a ``.csv`` file: read as training reads it, by the same catalog code: a ``path,label``
      CSV (``data.dataset=csv``), or the Kinetics CSV (``label,youtube_id,time_start,time_end``
      columns, every row whatever its split); ``root`` is ``data.root`` (default: the CSV's
      folder). Rows whose video is missing are dropped with the catalog's warning.
    """
    if not isinstance(source, (str, os.PathLike)):
        return [str(p) for p in source]
    src = Path(source)
    if src.is_dir():
        return _videos_below(src)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such folder, video or list file")
    if src.suffix.lower() in VIDEO_EXTENSIONS:
        return [str(src)]
    if src.suffix.lower() == ".csv":
        return _videos_of_csv(src, Path(root) if root is not None else src.parent)
    base = Path(root) if root is not None else src.parent
    paths = []
    for line in src.read_text(errors="replace").splitlines():
        entry = _strip_label(line.strip())
        if not entry or entry.startswith("#"):
            continue
        p = Path(entry)
        paths.append(str(p if p.is_absolute() else base / p))
    return paths


def check_videos(
    paths: Iterable[str | os.PathLike], *, workers: int = 2, progress: bool = True, stream: int | None = None
) -> CheckReport:
    """Decode every frame of every video in ``paths``; returns a ``CheckReport``.

    A file counts as readable when it opens, has a video stream and at least one frame
    decodes (damaged tails are fine: the reader serves what decodes). A readable file is also
    listed in ``damaged`` when packets that hold a picture do not decode, when frames decode
    with errors (concealed damage, e.g. a raw stream cut inside its last frame), or when its
    header promises more frames than the file holds (a cut-off AVI or MP4). Placeholder
    packets that hold no picture by design (MPEG-4 "not coded" VOPs, Xvid's 1-byte packets
    for dropped frames) are not damage. ``stream`` picks the video stream as
    ``VideoReader(stream=...)`` does (default: the best one). Nothing raised by one file stops
    the scan; unexpected errors are reported as that file's reason. Duplicate paths are checked
    once.
    """
    paths = list(dict.fromkeys(str(p) for p in paths))
    start = time.perf_counter()
    results: dict[str, _Outcome] = {}
    # Worker processes (vidssl.parallel): a decoder that crashes on a damaged file takes down its
    # worker, not the scan; that file is reported with the reason.
    for path, error, outcome in map_videos(partial(_check_one, stream=stream), paths, workers,
                                           desc="check-videos", progress=progress, initializer=None):
        results[path] = outcome if error is None else _Outcome(error=error)
    bad = sorted((p, o.error) for p, o in results.items() if o.error is not None)
    damaged = sorted((p, o.damage()) for p, o in results.items() if o.error is None and o.damage())
    frames = sum(o.frames for o in results.values())
    return CheckReport(total=len(paths), ok=len(paths) - len(bad), bad=bad, damaged=damaged,
                       total_frames=frames, seconds=time.perf_counter() - start)


@dataclass
class _Outcome:
    frames: int = 0  # frames that decode
    expected: int = 0  # frames the packets promise
    error: str | None = None
    corrupt: int = 0  # frames that decode with errors
    header: int = 0  # frames the container header promises (0: no such header)
    packets: int = 0  # video packets in the file, placeholders included
    cut_off: bool = False  # fewer packets than the header and the container's index promise

    def damage(self) -> str:
        """What is wrong with a readable file ("" when nothing)."""
        found = []
        if self.frames < self.expected:
            found.append(f"{self.expected - self.frames} of {self.expected} frames do not decode")
        if self.corrupt:
            found.append(f"{self.corrupt} of {self.frames} frames decode with errors")
        if self.cut_off:
            found.append(f"cut off: the header promises {self.header} frames, the file holds {self.packets}")
        return "; ".join(found)


def _check_one(path: str, stream: int | None = None) -> _Outcome:
    try:
        with VideoReader(path, stream=stream) as reader:
            frames = reader.count_decodable()
            return _Outcome(frames=frames, expected=reader.expected_frames, corrupt=reader.corrupt_frames,
                            header=reader.header_frames, packets=reader.packets_in_file, cut_off=reader.cut_off)
    except VideoReadError as e:
        return _Outcome(error=e.reason)
    except Exception as e:  # a scan over thousands of files must report, not crash
        return _Outcome(error=f"unexpected {type(e).__name__}: {e}")


def _videos_of_csv(csv_path: Path, root: Path) -> list[str]:
    from vidssl.data.catalogs import load_catalog

    with open(csv_path, newline="", errors="replace") as f:
        header = {name.strip() for name in (f.readline().split(","))}
    if "youtube_id" in header:
        catalog = load_catalog("kinetics400", root=root, csv_path=csv_path, subset=None)
    else:
        catalog = load_catalog("csv", csv_path=csv_path, root=root)
    return list(dict.fromkeys(r.path for r in catalog.records))


def _videos_below(folder: Path) -> list[str]:
    from vidssl.data.catalogs import files_below  # a folder that cannot be listed is an error, not a gap

    return [str(p) for p in files_below(folder) if p.suffix.lower() in VIDEO_EXTENSIONS]


_LABELLED = re.compile(r"^(.*\S)\s+-?\d+$")


def _strip_label(entry: str) -> str:
    match = _LABELLED.match(entry)
    if match and os.path.splitext(match.group(1))[1]:
        return match.group(1)
    return entry
