"""The embedded benchmark: does a representation capture motion, or just the scene?

Eight classes of motion patterns (:mod:`.motions`) of one random foreground object
(:mod:`.objects`) on eight procedural scene families (:mod:`.scenes`). In the train list a
video's scene family equals its class with probability ``rho`` (default 0.9), which gives a
network a scene shortcut; the test lists either decorrelate scene and class (split 1) or keep
the bias (split 2), so the gap between the two measures how much a representation relies on
the scene. Split 3 pairs an unbiased train list with split 1's test list, for the supervised
upper bound only (:mod:`.plan` documents the lists).

The output is a real UCF101-layout dataset of MPEG-4 Part 2 AVI files (:mod:`.layout`,
:mod:`.generate`), read by the same catalog, reader and compressed-domain code as UCF101::

    from vidssl.data.synthetic import generate_benchmark
    root = generate_benchmark("data/synthetic-demo", preset="demo", seed=0)
    train = vidssl.data.catalogs.ucf101(root, split=1, subset="train")

``vidssl.eval.calibration`` holds the training-free rows (scene-only, motion-only) that show
the benchmark discriminates.
"""
from __future__ import annotations

from .generate import generate_benchmark
from .layout import MANIFEST_NAME, SPLIT_DIR, read_manifest
from .motions import CLASSES, Trajectory, trajectory
from .plan import LISTS, SPLIT_FILES, VideoSpec, plan_benchmark
from .presets import PRESETS, Preset, resolve_preset
from .render import render_video
from .scenes import SCENES

__all__ = [
    "generate_benchmark", "PRESETS", "Preset", "resolve_preset", "CLASSES", "SCENES", "LISTS", "SPLIT_FILES",
    "VideoSpec", "plan_benchmark", "render_video", "trajectory", "Trajectory", "read_manifest",
    "MANIFEST_NAME", "SPLIT_DIR",
]
