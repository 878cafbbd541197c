"""Dataset-scale extraction: motion signals into the cache, and CoViAR re-encoding.

``vidssl extract flow|motion-vectors|motion-map`` calls :func:`extract_signals`,
``vidssl extract reencode`` calls :func:`reencode_dataset`. Both

- are resumable: a video whose output exists is skipped (outputs are written atomically, so
  an existing file is a complete one);
- run in parallel over videos (``workers`` processes, one OpenCV/decoder thread each) with a
  progress bar;
- never stop on a bad video: it is skipped, listed in the returned report and in a
  ``failures`` JSON file next to the outputs, and the others complete;
- split the work across processes started by torchrun or any launcher that sets ``RANK`` and
  ``WORLD_SIZE``: process R takes the videos i (in sorted order) with ``i % WORLD_SIZE == R``,
  so extraction over Kinetics can run on many machines into one shared folder.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence


__all__ = ["ExtractionReport", "extract_signals", "reencode_dataset", "shard", "distributed_rank"]


@dataclass
class ExtractionReport:
    """What one process did: counts, failures (relative path -> reason), where the outputs are."""

    kind: str
    out_dir: str
    total: int  # videos in this process's share
    done: int = 0  # computed now
    skipped: int = 0  # already there (resumed)
    failed: dict[str, str] = field(default_factory=dict)
    # relative path -> why some of its frames have no per-frame motion vectors (B-frames, ...)
    motion_vector_warnings: dict[str, str] = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1
    seconds: float = 0.0
    failures_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def distributed_rank() -> tuple[int, int]:
    """(rank, world_size) from the environment torchrun (or SLURM via a launcher) sets; (0, 1) alone."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad RANK={rank} / WORLD_SIZE={world} in the environment")
    return rank, world


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """This process's share: items i with ``i % world_size == rank``."""
    return [item for i, item in enumerate(items) if i % world_size == rank]


# -- motion signals -----------------------------------------------------------------------------


def extract_signals(catalog_or_paths, kind: str, cache_dir: str | os.PathLike, *, root: str | os.PathLike | None = None,
                    workers: int = 1, flow_method: str = "dis", frame_size: tuple[int, int] | None = None,
                    flow_dtype: str = "uint8", mv_downsample: int = 4, overwrite: bool = False,
                    rank: int | None = None, world_size: int | None = None, progress: bool = True,
                    ) -> ExtractionReport:
    """Compute ``kind`` ("flow", "motion-vectors" or "motion-map") for every video into the cache.

    Args:
        catalog_or_paths: a :class:`vidssl.data.catalogs.Catalog` or video paths.
        cache_dir: the cache folder (files go to ``cache_dir/<kind>/<path relative to root>.npz``).
        root: the dataset root the cache keys are relative to (default: the videos' common folder).
        workers: parallel processes.
        flow_method: "dis" or "tvl1" for flow and motion maps.
        frame_size: (H, W) frames are resized to before flow, as the dataset will read them
            (its ``frame_size``); None keeps the native size. Motion vectors are always stored
            at the native size (the dataset resamples them).
        flow_dtype: "uint8" (+-20 px bound, the TV-L1 convention) or "float16".
        mv_downsample: grid step of stored motion vectors (default 4: 1/4 resolution).
        overwrite: recompute videos whose file exists (and accept a different spec).
        rank, world_size: this process's share (default: ``RANK`` / ``WORLD_SIZE`` or 0 / 1).
    """
    from vidssl.data.signals import SignalSpec
    from vidssl.video.cache import SignalCache, spec_difference

    kind = kind.replace("_", "-")
    spec = SignalSpec(kind, flow_method=flow_method, flow_dtype=flow_dtype, size=frame_size,
                      mv_downsample=mv_downsample)
    paths = _paths_of(catalog_or_paths)
    root = Path(root) if root is not None else _common_root(paths)
    cache = SignalCache(cache_dir, kind, root)
    found = cache.read_spec()
    if found is not None and found != spec.to_json() and not overwrite:
        raise ValueError(f"{cache.spec_path}: this cache holds {kind} computed with other settings "
                         f"({spec_difference(found, spec.to_json())}). Use another cache folder, or "
                         f"overwrite=True to recompute all.")
    cache.write_spec(spec.to_json())
    if rank is None or world_size is None:
        rank, world_size = distributed_rank()
    mine = shard(sorted(paths), rank, world_size)
    relative = {p: cache.relative(p) for p in mine}  # raises early for a path outside root
    _remove_stale_temporaries({cache.path_for(p).parent for p in mine})
    todo = [p for p in mine if overwrite or not cache.has(p)]
    report = ExtractionReport(kind=kind, out_dir=str(cache.dir), total=len(mine), skipped=len(mine) - len(todo),
                              rank=rank, world_size=world_size)
    started = time.perf_counter()
    args = [(p, spec, str(cache_dir), str(root)) for p in todo]
    succeeded = []
    for (path, *_), error, note in _run(_extract_one, args, workers, f"extract {kind}", progress):
        if error is None:
            report.done += 1
            succeeded.append(relative[path])
            if note:
                report.motion_vector_warnings[relative[path]] = note
        else:
            report.failed[relative[path]] = error
    report.seconds = round(time.perf_counter() - started, 2)
    failures_rank = rank if world_size > 1 else None
    cache.record_failures(report.failed, succeeded, rank=failures_rank)
    if report.failed:
        report.failures_file = str(cache.failures_path(failures_rank))
    return report


def _extract_one(path: str, spec, cache_dir: str, root: str) -> str | None:
    """Compute and save one video's signal; returns its motion-vector warning, if any."""
    import warnings

    from vidssl.data.signals import compute_video_signal
    from vidssl.video.cache import SignalCache
    from vidssl.video.compressed import MotionVectorWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MotionVectorWarning)
        SignalCache(cache_dir, spec.kind, root).save(path, compute_video_signal(path, spec))
    notes = []
    for w in caught:
        if issubclass(w.category, MotionVectorWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return " ".join(notes) or None


# -- re-encoding --------------------------------------------------------------------------------


def reencode_dataset(src_root: str | os.PathLike, dst_root: str | os.PathLike, *,
                     size: tuple[int, int] | None = None, gop: int = 12, qscale: int = 1, workers: int = 1,
                     paths: Iterable[str | os.PathLike] | None = None, overwrite: bool = False,
                     copy_lists: bool = True, rank: int | None = None, world_size: int | None = None,
                     progress: bool = True) -> ExtractionReport:
    """Re-encode every video under ``src_root`` into ``dst_root`` with the same layout (CoViAR convention).

    Args:
        size: (height, width) of the output, e.g. (256, 340) as CoViAR; None keeps each video's size.
        gop, qscale: see :func:`vidssl.video.reencode.reencode_video` (defaults: 12, and 1 as CoViAR's -q:v 1).
        paths: the videos to do (default: every file with a video extension under ``src_root``).
        copy_lists: copy the small annotation files under ``src_root`` (.txt, .csv, .json: split
            lists, class indexes) so catalogs built on ``dst_root`` find them where they were.
    """
    from vidssl.data.catalogs import VIDEO_EXTENSIONS, files_below
    from vidssl.video.reencode import reencoded_name

    src_root, dst_root = Path(src_root).resolve(), Path(dst_root)
    if not src_root.is_dir():
        raise FileNotFoundError(f"{src_root}: re-encode source folder does not exist")
    if paths is None:
        # Hidden files are not videos of the dataset: macOS "._clip.avi", or the ".tmp-*" file of a
        # video still being written (an interrupted `make-benchmark` or re-encode into this folder).
        paths = [p for p in files_below(src_root) if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
                 and not _hidden(p, src_root)]
    if rank is None or world_size is None:
        rank, world_size = distributed_rank()
    relative = sorted({_relative_to(Path(p), src_root) for p in paths})
    if not relative:  # an empty or wrong folder: a report of nothing done would read as success
        raise FileNotFoundError(f"{src_root}: no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) found below it; "
                                f"check --root")
    mine = shard(relative, rank, world_size)
    if copy_lists and rank == 0:
        _copy_lists(src_root, dst_root)
    targets = {rel: dst_root / reencoded_name(rel) for rel in mine}
    _remove_stale_temporaries({t.parent for t in targets.values()})
    todo = [rel for rel in mine if overwrite or not targets[rel].is_file()]
    report = ExtractionReport(kind="reencode", out_dir=str(dst_root), total=len(mine), skipped=len(mine) - len(todo),
                              rank=rank, world_size=world_size)
    started = time.perf_counter()
    args = [(str(src_root / rel), str(targets[rel]), size, gop, qscale) for rel in todo]
    for (src, *_), error, _ in _run(_reencode_one, args, workers, "re-encode", progress):
        rel = _relative_to(Path(src), src_root)
        if error is None:
            report.done += 1
        else:
            report.failed[rel] = error
    report.seconds = round(time.perf_counter() - started, 2)
    if report.failed:
        from vidssl.video.cache import atomic_write_json

        name = "reencode_failures.json" if world_size == 1 else f"reencode_failures.rank{rank}.json"
        report.failures_file = str(dst_root / name)
        atomic_write_json(report.failures_file, report.failed)
    return report


def _reencode_one(src: str, dst: str, size, gop: int, qscale: int) -> None:
    from vidssl.video.reencode import reencode_video

    reencode_video(src, dst, size=size, gop=gop, qscale=qscale)


def _copy_lists(src_root: Path, dst_root: Path, max_bytes: int = 50 << 20) -> None:
    from vidssl.video.cache import atomic_write_bytes

    for path in src_root.rglob("*"):
        if path.suffix.lower() in (".txt", ".csv", ".json") and path.is_file() and not _hidden(path, src_root) \
                and path.stat().st_size <= max_bytes:
            target = dst_root / path.relative_to(src_root)
            if not target.exists():
                atomic_write_bytes(target, path.read_bytes())


# -- shared -------------------------------------------------------------------------------------


def _hidden(path: Path, root: Path) -> bool:
    """A hidden file or one in a hidden folder below ``root`` (temporary files are hidden)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _remove_stale_temporaries(folders: Iterable[Path]) -> None:
    """Delete the half-written outputs a killed extraction left (never read: they are hidden).

    Processes on other machines may be writing into a shared output folder, so only files no
    process here writes and untouched for ten minutes count as abandoned.
    """
    from vidssl.io import remove_stale_temporaries

    for folder in sorted(folders):
        remove_stale_temporaries(folder, min_age=600.0)


def _run(fn: Callable, args: list[tuple], workers: int, desc: str, progress: bool):
    """Yield (args, error message or None, return value) for each call ``fn(*args)``, in completion
    order, with a progress bar (:func:`vidssl.parallel.map_videos`: forkserver/spawn workers).

    Any exception a video raises becomes its error message; the others go on.
    """
    from vidssl.parallel import map_videos

    yield from map_videos(partial(_apply, fn), args, workers, desc=desc, progress=progress)


def _apply(fn: Callable, a: tuple) -> Any:
    return fn(*a)


def _paths_of(catalog_or_paths) -> list[str]:
    records = getattr(catalog_or_paths, "records", None)
    items = [r.path for r in records] if records is not None else [str(p) for p in catalog_or_paths]
    if not items:
        raise ValueError("no videos to extract")
    return sorted(set(items))


def _common_root(paths: list[str]) -> Path:
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    return Path(os.path.commonpath(folders))


def _relative_to(path: Path, root: Path) -> str:
    path = path if path.is_absolute() else root / path
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        raise ValueError(f"{path}: not under the re-encode source folder {root}") from None
