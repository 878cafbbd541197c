"""``vidssl demo``: every method on the embedded benchmark, one table.

What it shows: on the *biased* test list (scene predicts the class, like UCF101) a representation
that only recognises backgrounds looks good; on the *decorrelated* list (scene independent of the
class) only a representation of motion does. Rows:

- ``scene-only`` / ``motion-only``: calibration with no training (texture statistics of frames;
  statistics of DIS optical flow). They bound what the benchmark rewards.
- ``random``: the backbone at initialisation (the lower reference).
- ``supervised``: labels, biased train list: learns the scene shortcut.
- ``supervised-unbiased``: labels, split 3's unbiased train list: the motion upper bound.
- every self-supervised method with a ``configs/demo/<name>.yaml``.

All rows are scored the same way: split 1's test list is "decorrelated", split 2's is "biased", and
each is scored against the train list of its own split (the gallery and the linear probe's training
set). The benchmark writes the same biased list as trainlist01 and trainlist02, so both columns
share one gallery: one feature extraction, one probe fit.

The demo is :func:`vidssl.eval.compare.compare` with the embedded benchmark's defaults (its
recipes ``configs/demo/*.yaml``, the two columns above, the calibration rows): it generates the
benchmark when absent, and compare does the rest, so a finished row is reused by the next run and
an interrupted demo continues where it stopped. The report is ``<out>/report.html``.
"""
from __future__ import annotations

import os
from pathlib import Path

from vidssl.eval.compare import UNTRAINED

__all__ = ["run_demo", "DEMO_ROWS", "demo_config_dir"]

SPLITS = {"decorrelated": 1, "biased": 2}
# Rows in table order; self-supervised methods follow in the order their configs are listed.
DEMO_ROWS = ["scene-only", "motion-only", "random", "supervised", "supervised-unbiased", "moco", "pace",
             "dsm", "mcl", "cmd"]
QUICK_STEPS = 20
QUICK_LABEL = ("QUICK SMOKE RUN ({steps} steps per trained row): it checks that every row runs; "
               "its numbers are not the benchmark's.")
_CORES = os.cpu_count() or 1  # benchmark generation runs alone: every core

EXPLANATION = """\
The embedded benchmark: 8 motion classes (bounce, orbit, zigzag, spin, ...) drawn over 8 procedural
scene families. In the training list a video's scene matches its class 90% of the time, as scenes
predict actions in UCF101. **decorrelated** queries draw the scene independently of the class, so only
motion finds same-class neighbours; **biased** queries keep the training bias, so the scene alone scores
well. A method that learned motion scores high on both; one that learned the scene collapses on
decorrelated. scene-only / motion-only are training-free calibration rows; random is an untrained
backbone; supervised (biased labels) shows the scene shortcut; supervised-unbiased is the motion upper
bound."""


def demo_config_dir() -> Path:
    return Path(__file__).resolve().parent / "configs" / "demo"


def run_demo(out_dir: str | os.PathLike = "runs/demo", data_root: str | os.PathLike = "data/demo-benchmark",
             steps: int | None = None, methods: list[str] | None = None, preset: str = "demo",
             extra_overrides: list[str] | None = None, seed: int = 0, train_seed: int | None = None,
             quick: bool = False) -> dict:
    """Generate the benchmark if absent, then compare every row on it; returns ``split -> row -> metrics``.

    ``steps`` replaces every trained row's step budget (the configs' ``trainer.max_steps``);
    ``seed`` is the benchmark's generation seed, ``train_seed`` the rows' ``trainer.seed``;
    ``quick`` is a smoke run: ``QUICK_STEPS`` steps per trained row, and the table says so.
    """
    from vidssl.data.synthetic import generate_benchmark
    from vidssl.eval.compare import compare

    out_dir, data_root = Path(out_dir), Path(data_root)
    unknown = sorted(set(methods or []) - set(DEMO_ROWS))
    if unknown:
        raise ValueError(f"--methods: unknown row(s) {', '.join(unknown)}; available: {', '.join(DEMO_ROWS)}")
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise ValueError(f"--steps must be a positive integer, got {steps!r}")
    if quick and steps is None:
        steps = QUICK_STEPS
    rows = [r for r in DEMO_ROWS if (methods is None or r in methods) and _row_available(r)]
    generate_benchmark(data_root, preset=preset, seed=seed, workers=_CORES)
    # Every row reads the same videos: decoding each once into a frame cache keeps the loader
    # from competing with training for the two cores (see vidssl.video.frame_cache).
    overrides = [f"data.root={data_root}", f"data.frame_cache={out_dir / 'frame-cache'}"] + list(extra_overrides or [])
    if steps is not None:
        overrides.append(f"trainer.max_steps={int(steps)}")
    if train_seed is not None:
        overrides.append(f"trainer.seed={int(train_seed)}")
    return compare(rows, out_dir, overrides=overrides, recipes=demo_config_dir(), splits=SPLITS,
                   title="vidssl demo: motion versus scene on the embedded benchmark", explanation=EXPLANATION,
                   notice=QUICK_LABEL.format(steps=steps) if quick else None,
                   run_info={"quick": bool(quick), "benchmark": {"preset": preset, "seed": int(seed)}})


def _row_available(row: str) -> bool:
    if row in UNTRAINED:
        return True
    return (demo_config_dir() / f"{row}.yaml").is_file()
