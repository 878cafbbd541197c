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

All rows are scored the same way: split 1's train list is the gallery and the linear probe's
training set; split 1's test list is "decorrelated", split 2's is "biased".
A finished row is kept in ``<out>/<row>/eval.json`` and reused by the next run, so an
interrupted demo continues where it stopped and nothing already computed is lost.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from vidssl.config import load_config, to_yaml
from vidssl.io import write_json_atomic

__all__ = ["run_demo", "DEMO_ROWS", "demo_config_dir"]

log = logging.getLogger(__name__)

SPLITS = {"decorrelated": 1, "biased": 2}
# Rows in table order; self-supervised methods follow in the order their configs are listed.
DEMO_ROWS = ["scene-only", "motion-only", "random", "supervised", "supervised-unbiased", "moco", "pace",
             "dsm", "mcl", "cmd"]
CALIBRATION = ("scene-only", "motion-only")
_CORES = os.cpu_count() or 1  # for the stages no training runs beside: generation, calibration, scoring

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
             budget: float | None = None, methods: list[str] | None = None, preset: str = "demo",
             extra_overrides: list[str] | None = None) -> dict:
    """Generate the benchmark if absent, train and score every row, write the results files."""
    from vidssl.data.synthetic import generate_benchmark
    from vidssl.eval.report import format_table, write_results

    started = time.perf_counter()
    out_dir, data_root = Path(out_dir), Path(data_root)
    unknown = sorted(set(methods or []) - set(DEMO_ROWS))
    if unknown:
        raise ValueError(f"--methods: unknown row(s) {', '.join(unknown)}; available: {', '.join(DEMO_ROWS)}")
    rows = [r for r in DEMO_ROWS if (methods is None or r in methods) and _row_available(r)]
    generate_benchmark(data_root, preset=preset, seed=0, workers=_CORES)
    # Every row reads the same videos: decoding each once into a frame cache keeps the loader
    # from competing with training for the two cores (see vidssl.video.frame_cache).
    overrides = [f"data.root={data_root}", f"data.frame_cache={out_dir / 'frame-cache'}"] + list(extra_overrides or [])
    if budget is not None:
        overrides.append(f"trainer.max_time_seconds={budget}")

    results: dict[str, dict[str, dict[str, float]]] = {split: {} for split in SPLITS}
    for row in rows:
        t0 = time.perf_counter()
        metrics = _run_row(row, out_dir / row, overrides)
        for split in SPLITS:
            results[split][row] = metrics[split]
        print(f"[demo] {row}: " + "  ".join(f"{s} R@1 {metrics[s]['R@1']:.1f}" for s in SPLITS)
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)

    wall = time.perf_counter() - started
    write_results(results, out_dir, wall, explanation=EXPLANATION)
    print()
    print(format_table(results))
    print(f"\nwall time {wall:.0f} s; results in {out_dir}/results.md, results.json, results.png")
    return results


def _row_available(row: str) -> bool:
    if row in CALIBRATION or row == "random":
        return True
    return (demo_config_dir() / f"{row}.yaml").is_file()


def _row_config(row: str, overrides: list[str]):
    name = "base" if row in CALIBRATION or row == "random" else row
    return load_config([demo_config_dir() / f"{name}.yaml"], overrides)


def _run_row(row: str, row_dir: Path, overrides: list[str]) -> dict[str, dict[str, float]]:
    cfg = _row_config(row, overrides + [f"run_dir={row_dir}"])
    done = row_dir / "eval.json"
    signature = to_yaml(cfg)
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("config") == signature:
            return saved["metrics"]
        log.warning("%s: config changed since the last demo; recomputing this row", row)
        shutil.rmtree(row_dir)
    if row in CALIBRATION:
        metrics = _calibration_row(row, cfg)
    else:
        metrics = _backbone_row(row, cfg, row_dir)
    write_json_atomic(done, {"config": signature, "metrics": metrics})
    return metrics


def _catalogs(cfg):
    from vidssl.train.run import catalog_from_config

    data = cfg.data.copy()
    data.split = 1
    train = catalog_from_config(data, "train")
    tests = {}
    for name, split in SPLITS.items():
        data.split = split
        tests[name] = catalog_from_config(data, "test")
    return train, tests


def _backbone_row(row: str, cfg, row_dir: Path) -> dict[str, dict[str, float]]:
    from vidssl.eval.protocol import evaluate_backbone
    from vidssl.models import build_backbone
    from vidssl.train.export import load_backbone
    from vidssl.train.run import frame_cache_from_config

    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    if row == "random":
        torch.manual_seed(cfg.trainer.seed)
        backbone = build_backbone(cfg.model.backbone, width=cfg.model.width, depth=cfg.model.depth)
    else:
        last = row_dir / "checkpoints" / "last.ckpt"
        if not (row_dir / "backbone.safetensors").is_file():
            _pretrain_in_fresh_process(row, cfg, resume=last.is_file())
        backbone = build_backbone(cfg.model.backbone, width=cfg.model.width, depth=cfg.model.depth)
        load_backbone(backbone, row_dir / "backbone.safetensors")
    train, tests = _catalogs(cfg)
    # Decoding workers for scoring: the first row to score fills the frame cache, and no
    # training step competes for the cores, so as many as there are cores.
    return evaluate_backbone(backbone, train, tests, cfg.eval, frame_size=cfg.data.frame_size,
                             crop_size=cfg.augment.crop_size, num_workers=max(cfg.data.num_workers, _CORES),
                             frame_cache=frame_cache_from_config(cfg.data), progress=cfg.trainer.progress)


def _pretrain_in_fresh_process(row: str, cfg, resume: bool) -> None:
    """``vidssl.train.run.pretrain(cfg, resume=resume)`` in a new interpreter.

    By the time the trained rows run, this process has imported OpenCV (the benchmark renderer,
    the optical-flow calibration row), and a training step in a process that has imported cv2
    measured 12-18% slower here (0.26 vs 0.22 s per step of the demo's R3D, same config, same
    data; cv2.setNumThreads(1) and OPENBLAS_NUM_THREADS=1 did not help). A spawned process
    imports only what training needs, and its memory goes back when the row ends.
    """
    import multiprocessing

    from vidssl.train.run import pretrain

    process = multiprocessing.get_context("spawn").Process(target=pretrain, args=(cfg,), kwargs={"resume": resume},
                                                           name=f"pretrain-{row}")
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"demo row {row!r}: pretraining failed (exit code {process.exitcode}); its error is "
                           f"printed above. Re-running the demo resumes it from {cfg.run_dir}/checkpoints")


def _calibration_row(row: str, cfg) -> dict[str, dict[str, float]]:
    from vidssl.eval.calibration import calibration_feature_sets
    from vidssl.eval.protocol import evaluate_features

    train, tests = _catalogs(cfg)
    # The flow statistics look at the frames one evaluation clip spans (clip_len x stride), the
    # same window the networks see, rather than the whole video.
    kwargs = {"max_frames": cfg.eval.clip_len * cfg.eval.stride} if row == "motion-only" else {}
    # No training runs beside it, so the feature computation gets every core.
    gallery, queries = calibration_feature_sets(row, train, tests, workers=_CORES,
                                                progress=cfg.trainer.progress, **kwargs)
    return {name: evaluate_features(gallery, q, ks=cfg.eval.ks, linear=cfg.eval.linear) for name, q in queries.items()}
