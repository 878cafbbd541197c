"""Planning the benchmark: which videos exist, in which list, with which scene and parameters.

Four lists of distinct videos, all in the same class folders:

==================  =====================================  =============================
list                scene family                           used as
==================  =====================================  =============================
train_biased        equals the class with probability rho  trainlist01, trainlist02
test_decorrelated   independent of the class               testlist01, testlist03
test_biased         equals the class with probability rho  testlist02
train_unbiased      independent of the class               trainlist03 (supervised upper
                                                           bound only)
==================  =====================================  =============================

The bias is stratified: in a biased list exactly ``round(rho * n)`` of a class's ``n`` videos
take the class's own scene and the rest are spread evenly over the other scenes; in an
unbiased list every scene appears equally often (up to one) in every class. So the empirical
statistics equal the intended ones instead of scattering around them.

Everything random about a video is drawn from its own generator seeded by (seed, list,
class, index), so a video never changes when the size of another list does, and planning is
cheap enough to redo on every run (the plan is the source of truth for resuming).

File names follow UCF101: ``<Class>/v_<Class>_g<GG>_c<CC>.avi``. UCF101 has 25 groups of
4-7 clips; here each list of a class fills its own consecutive groups of ``CLIPS_PER_GROUP``
clips, test lists first (as UCF101's split 1 tests on groups 1-7), so no group spans two
lists. The group number has as many digits as the largest group needs, at least two.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .motions import CLASSES, PULSE_AMPLITUDE, TEMPO_RANGE, natural_speed, sample_motion
from .objects import sample_object
from .presets import Preset
from .scenes import SCENES, sample_palette, sample_scene

__all__ = ["VideoSpec", "LISTS", "SPLIT_FILES", "CLIPS_PER_GROUP", "plan_benchmark", "assign_scenes",
           "video_summary"]

LISTS: tuple[str, ...] = ("test_decorrelated", "test_biased", "train_biased", "train_unbiased")
# Every test list is scored against the train list of its own split, as on UCF101: testlist01
# (decorrelated) and testlist02 (biased) both against train_biased, so the demo's two columns share
# one gallery; testlist03 against train_unbiased. No test list shares a video with its train list.
SPLIT_FILES: dict[str, str] = {
    "trainlist01.txt": "train_biased", "testlist01.txt": "test_decorrelated",
    "trainlist02.txt": "train_biased", "testlist02.txt": "test_biased",
    "trainlist03.txt": "train_unbiased", "testlist03.txt": "test_decorrelated",
}
CLIPS_PER_GROUP = 5
_BIASED = frozenset({"train_biased", "test_biased"})
_PAN_TRAVEL = (0.08, 0.15)  # total camera travel over a video, fraction of the frame size
_DISTRACTOR_RADIUS = (6.0, 9.0)
_SHAPE_REACH = 1.25  # the largest unit polygon (star, triangle) reaches 1.25 radii from the centre


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video (all JSON-friendly values).

    ``pan`` is the camera's world shift in px/frame (x, y) or None; ``distractor`` an object
    dict plus its world position ``x``, ``y`` and ``angle``, or None.
    """

    relpath: str
    list_name: str
    label: int
    motion: str
    scene: str
    tempo: float
    size: int
    num_frames: int
    fps: float
    motion_params: dict
    scene_params: dict
    palette: list
    obj: dict
    distractor: dict | None
    pan: list | None


def plan_benchmark(preset: Preset, seed: int, rho: float) -> list[VideoSpec]:
    """All videos of the benchmark, in list order, then class order, then index."""
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    counts = {"test_decorrelated": preset.test_per_class, "test_biased": preset.test_per_class,
              "train_biased": preset.train_per_class, "train_unbiased": preset.unbiased_train_per_class}
    groups_per_list = {name: math.ceil(n / CLIPS_PER_GROUP) for name, n in counts.items()}
    group_digits = max(2, len(str(sum(groups_per_list.values()))))
    specs: list[VideoSpec] = []
    first_group = 1
    for code, list_name in enumerate(LISTS):
        bias = rho if list_name in _BIASED else None
        for label, motion in enumerate(CLASSES):
            scenes = assign_scenes(label, counts[list_name], bias,
                                   np.random.default_rng([seed, 1, code, label]))
            for i, scene in enumerate(scenes):
                group, clip = first_group + i // CLIPS_PER_GROUP, i % CLIPS_PER_GROUP + 1
                relpath = f"{motion}/v_{motion}_g{group:0{group_digits}d}_c{clip:02d}.avi"
                rng = np.random.default_rng([seed, 2, code, label, i])
                specs.append(_sample_video(rng, preset, relpath, list_name, label, SCENES[scene]))
        first_group += groups_per_list[list_name]
    return specs


def assign_scenes(label: int, n: int, bias: float | None, rng: np.random.Generator) -> np.ndarray:
    """Scene indices of ``n`` videos of class ``label``: biased towards the class's own scene
    (exactly ``round(bias * n)`` of them) or, with ``bias=None``, balanced over all scenes."""
    k = len(SCENES)
    if bias is None:
        scenes = _balanced(np.arange(k), n, rng)
    else:
        matching = int(round(bias * n))
        others = np.array([s for s in range(k) if s != label])
        scenes = np.concatenate([np.full(matching, label), _balanced(others, n - matching, rng)])
    return rng.permutation(scenes).astype(np.int64)


def _balanced(choices: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` items covering ``choices`` as evenly as possible; the remainder picked at random."""
    full, rest = divmod(n, len(choices))
    return np.concatenate([np.tile(choices, full), rng.permutation(choices)[:rest]]).astype(np.int64)


def _sample_video(rng: np.random.Generator, preset: Preset, relpath: str, list_name: str, label: int,
                  scene: str) -> VideoSpec:
    size, unit, num_frames = preset.size, preset.unit, preset.num_frames
    motion = CLASSES[label]
    tempo = float(rng.uniform(*TEMPO_RANGE))
    obj = sample_object(rng, unit=unit, radius_range=tuple(preset.object_radius))
    pan = None
    if rng.random() < preset.pan_prob:
        travel = float(rng.uniform(*_PAN_TRAVEL)) * size
        heading = float(rng.uniform(0, 2 * math.pi))
        pan = [travel * math.cos(heading) / (num_frames - 1), travel * math.sin(heading) / (num_frames - 1)]
    box = _centre_box(size, obj["radius"], motion, pan, num_frames)
    motion_params = sample_motion(motion, rng, box=box, unit=unit, tempo=tempo)
    scene_params = sample_scene(scene, rng, size=size, unit=unit)
    palette = sample_palette(rng, preset.background_contrast)
    distractor = None
    if rng.random() < preset.distractor_prob:
        distractor = sample_object(rng, unit=unit, radius_range=_DISTRACTOR_RADIUS)
        reach = distractor["radius"] * _SHAPE_REACH
        distractor.update(x=float(rng.uniform(reach, size - reach)), y=float(rng.uniform(reach, size - reach)),
                          angle=float(rng.uniform(0, 2 * math.pi)))
    return VideoSpec(relpath=relpath, list_name=list_name, label=label, motion=motion, scene=scene, tempo=tempo,
                     size=size, num_frames=num_frames, fps=preset.fps, motion_params=motion_params,
                     scene_params=scene_params, palette=palette, obj=obj, distractor=distractor, pan=pan)


def _centre_box(size: int, radius: float, motion: str, pan: list | None, num_frames: int):
    """Where the object's centre may go (before the pan) so the whole object stays in every frame."""
    reach = radius * _SHAPE_REACH * (1 + PULSE_AMPLITUDE if motion == "ScalePulse" else 1) + 1.0
    travel = np.zeros(2) if pan is None else np.asarray(pan) * (num_frames - 1)
    box = []
    for d in travel:
        lo, hi = reach - min(0.0, d), size - 1 - reach - max(0.0, d)
        if lo > hi:  # too little room: stay central (the object may touch the border)
            lo = hi = (lo + hi) / 2
        box += [float(lo), float(hi)]
    return tuple(box)


def video_summary(spec: VideoSpec, unit: float) -> dict:
    """The manifest entry of one video: what an analysis needs without re-rendering."""
    return {
        "path": spec.relpath, "list": spec.list_name, "class": spec.motion, "label": spec.label,
        "scene": spec.scene, "scene_matches_class": SCENES.index(spec.scene) == spec.label,
        "tempo": round(spec.tempo, 4), "speed_px_per_frame": round(natural_speed(spec.motion, spec.tempo, unit), 4),
        "pan_px_per_frame": None if spec.pan is None else [round(v, 4) for v in spec.pan],
        "distractor": spec.distractor is not None,
        "shape": spec.obj["shape"], "radius_px": round(spec.obj["radius"], 3),
    }
