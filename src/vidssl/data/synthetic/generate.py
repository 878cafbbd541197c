"""Generating the benchmark on disk: parallel, deterministic, resumable.

Videos are encoded as MPEG-4 Part 2 in AVI with GOP 12 and no B-frames (the CoViAR
convention the compressed-domain methods rely on) through :func:`vidssl.video.writer.write_video`,
which writes each file atomically. A video file that exists is therefore complete, and a run
that is interrupted is resumed by running it again: the plan is rebuilt from the seed, the
manifest is checked against it (a folder of a different benchmark is an error, never topped
up), and only missing videos are rendered.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ...parallel import WorkerPoolError, map_videos
from ...video.writer import write_video
from .layout import MANIFEST_NAME, SPLIT_DIR, manifest_header, read_manifest, write_manifest, write_split_files
from .plan import VideoSpec, plan_benchmark
from .presets import Preset, resolve_preset
from .render import render_video

__all__ = ["generate_benchmark", "render_and_write"]


def generate_benchmark(root: str | os.PathLike, preset: str | Preset = "demo", seed: int = 0, workers: int = 2,
                       rho: float = 0.9, progress: bool = True, **overrides) -> Path:
    """Write the embedded benchmark to ``root`` in UCF101 layout and return ``root``.

    Args:
        root: output folder; created if missing. Class folders, ``ucfTrainTestlist/`` and
            ``benchmark.json`` go directly inside it.
        preset: "tiny", "demo", "standard" or a :class:`Preset`.
        seed: everything random derives from it; the same seed gives byte-identical files.
        workers: processes rendering and encoding in parallel (0 or 1: in this process).
        rho: probability that a video of the biased lists shows its class's own scene family.
        progress: show a tqdm bar.
        **overrides: preset fields to change, e.g. ``train_per_class=50``.

    Raises:
        ValueError: ``root`` holds a benchmark with another preset, seed, rho or version, or is a
            non-empty folder without ``benchmark.json``.
        RuntimeError: a worker process died (e.g. a script without a ``__main__`` guard).

    Files are byte-identical for the same seed with the same FFmpeg build, whatever ``workers``.
    """
    config = resolve_preset(preset, **overrides)
    root = Path(root)
    specs = plan_benchmark(config, seed, rho)
    header = manifest_header(config, seed, rho)
    root.mkdir(parents=True, exist_ok=True)
    _check_existing(root, header)
    write_manifest(root, header, specs, config.unit, complete=False)
    _remove_stale_temporaries(root, specs)

    todo = [s for s in specs if not (root / s.relpath).is_file()]
    jobs = [(str(root), s) for s in todo]
    serial = workers <= 1 or len(jobs) <= 1
    # Worker processes from vidssl.parallel (forkserver/spawn: the caller may hold threads, torch or
    # OpenCV, that make fork unsafe). A job that fails fails the run: a benchmark is all or nothing.
    try:
        for job, error, _ in map_videos(render_and_write, jobs, 0 if serial else workers,
                                        desc=f"benchmark {config.name}", progress=progress,
                                        initial=len(specs) - len(todo)):
            if error is not None:
                raise RuntimeError(f"{root / job[1].relpath}: {error}; rerun to resume")
    except WorkerPoolError as err:
        raise RuntimeError(f"{root}: a benchmark worker process died ({err}). Scripts that call "
                           f"generate_benchmark with workers > 1 must do so under "
                           f"`if __name__ == '__main__':`; rerun to resume") from err

    write_split_files(root, specs)
    write_manifest(root, header, specs, config.unit, complete=True)
    return root


def render_and_write(job: tuple[str, VideoSpec]) -> str:
    """Render one video and encode it to its place under the root; returns its path."""
    root, spec = job
    path = Path(root) / spec.relpath
    write_video(path, render_video(spec), fps=spec.fps, codec="mpeg4", gop=12, max_b_frames=0)
    return str(path)


def _check_existing(root: Path, header: dict) -> None:
    if not (root / MANIFEST_NAME).exists():
        stray = [p.name for p in root.iterdir() if not p.name.startswith(".")]
        if stray:
            raise ValueError(f"{root}: not empty and has no {MANIFEST_NAME} (found {sorted(stray)[:5]}); "
                             f"generate the benchmark into an empty or new folder")
        return
    existing = read_manifest(root)
    wanted = json.loads(json.dumps(header))  # the same value types as the file
    if isinstance(existing.get("preset"), dict):
        # A preset field added after a benchmark was written (object_radius) holds its default there.
        defaults = json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(Preset)
                                          if f.default is not dataclasses.MISSING}))
        existing["preset"] = {**{k: v for k, v in defaults.items() if k not in existing["preset"]},
                              **existing["preset"]}
    diffs = [key for key in wanted if existing.get(key) != wanted[key]]
    if diffs:
        detail = ", ".join(f"{k}: {existing.get(k)!r} on disk vs {wanted[k]!r} requested" for k in diffs
                           if k != "preset")
        if "preset" in diffs:
            changed = {k for k in wanted["preset"] if existing.get("preset", {}).get(k) != wanted["preset"][k]}
            detail = ", ".join(filter(None, [detail, f"preset fields {sorted(changed)} differ"]))
        raise ValueError(f"{root / MANIFEST_NAME}: the folder holds a different benchmark ({detail}); "
                         f"use another folder or delete this one")


def _remove_stale_temporaries(root: Path, specs: list[VideoSpec]) -> None:
    """Delete the half-written ``.tmp-<pid>-*`` files a killed run left: videos in the class folders,
    the manifest and the split files (readers never open them: they are hidden files). One
    generator writes a benchmark folder at a time, so whatever its process id, a temporary is stale."""
    from vidssl.io import remove_stale_temporaries

    for folder in sorted({root, root / SPLIT_DIR, *((root / s.relpath).parent for s in specs)}):
        remove_stale_temporaries(folder, live_writers=False)
