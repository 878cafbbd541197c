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
UNTRAINED = (*CALIBRATION, "random")
QUICK_STEPS = 20
QUICK_LABEL = (f"QUICK SMOKE RUN ({QUICK_STEPS} steps per trained row): it checks that every row runs; "
               "its numbers are not the benchmark's.")
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
             steps: int | None = None, methods: list[str] | None = None, preset: str = "demo",
             extra_overrides: list[str] | None = None, seed: int = 0, train_seed: int | None = None,
             quick: bool = False) -> dict:
    """Generate the benchmark if absent, train and score every row, write the results files.

    ``steps`` replaces every trained row's step budget (the configs' ``trainer.max_steps``);
    ``seed`` is the benchmark's generation seed, ``train_seed`` the rows' ``trainer.seed``;
    ``quick`` is a smoke run: ``QUICK_STEPS`` steps per trained row, and the table says so.
    """
    from vidssl.data.synthetic import generate_benchmark
    from vidssl.eval.report import format_table, write_results

    started = time.perf_counter()
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

    configs = {row: _row_config(row, overrides + [f"run_dir={out_dir / row}"]) for row in rows}
    finished = {row: metrics for row in rows if (metrics := _finished_metrics(row, configs[row])) is not None}
    results: dict[str, dict[str, dict[str, float]]] = {split: {} for split in SPLITS}

    def score(row: str) -> None:
        t0 = time.perf_counter()
        metrics = finished.get(row) or _score_row(row, configs[row])
        for split in SPLITS:
            results[split][row] = metrics[split]
        print(f"[demo] {row}: " + "  ".join(f"{s} R@1 {metrics[s]['R@1']:.1f}" for s in SPLITS)
              + f"  (scored in {time.perf_counter() - t0:.0f} s)", flush=True)

    # Untrained rows first: scoring the random backbone fills the frame cache of the train and
    # test lists with every core before any training reads them with one loader worker.
    trained = [row for row in rows if row not in UNTRAINED]
    for row in rows:
        if row in UNTRAINED:
            score(row)
    to_train = [row for row in trained if row not in finished and not (out_dir / row / "backbone.safetensors").is_file()]
    if to_train:
        _pretrain_in_fresh_process([(row, configs[row]) for row in to_train])
    for row in trained:
        score(row)

    wall = time.perf_counter() - started
    run = _run_record(configs, trained, preset=preset, seed=seed, quick=quick)
    write_results(results, out_dir, wall, explanation=_explanation(run), run=run)
    print()
    if quick:
        print(QUICK_LABEL)
    print(_budget_line(run))
    print(format_table(results))
    print(f"\nwall time {wall:.0f} s; results in {out_dir}/results.md, results.json, results.png")
    return results


def _run_record(configs: dict, trained: list[str], *, preset: str, seed: int, quick: bool) -> dict:
    """What the table depends on, for results.json: machine, benchmark, and per trained row its
    steps, precision and seed (the steps its run actually took, from pretrain_summary.json)."""
    from vidssl.methods.base import backbone_spec

    rows = {}
    for row in trained:
        cfg = configs[row]
        summary_path = Path(cfg.run_dir) / "pretrain_summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        rows[row] = {"steps": summary.get("steps"), "budget_steps": cfg.trainer.max_steps,
                     "precision": cfg.trainer.precision, "seed": cfg.trainer.seed,
                     "backbone": backbone_spec(cfg.model).describe(),
                     "train_seconds": summary.get("wall_seconds")}
    return {"quick": bool(quick), "benchmark": {"preset": preset, "seed": int(seed)}, "rows": rows,
            "machine": _machine()}


def _machine() -> dict:
    import platform

    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform()}


def _budget_line(run: dict) -> str:
    """The table header's budget: the self-supervised rows' shared step budget and the others'."""
    budgets = {row: info["budget_steps"] for row, info in run["rows"].items()}
    ssl = sorted({b for row, b in budgets.items() if not row.startswith("supervised")})
    parts = [f"self-supervised rows {'/'.join(map(str, ssl))} steps"] if ssl else []
    parts += [f"{row} {b} steps" for row, b in budgets.items() if row.startswith("supervised")]
    precisions = sorted({info["precision"] for info in run["rows"].values()})
    return ("Budget: " + ", ".join(parts) + (f"; precision {'/'.join(precisions)}" if precisions else "")
            + f"; benchmark {run['benchmark']['preset']} seed {run['benchmark']['seed']}") if parts else ""


def _explanation(run: dict) -> str:
    lines = [QUICK_LABEL, ""] if run["quick"] else []
    budget = _budget_line(run)
    return "\n".join(lines + ([budget, ""] if budget else []) + [EXPLANATION])


def _row_available(row: str) -> bool:
    if row in UNTRAINED:
        return True
    return (demo_config_dir() / f"{row}.yaml").is_file()


def _row_config(row: str, overrides: list[str]):
    name = "base" if row in UNTRAINED else row
    return load_config([demo_config_dir() / f"{name}.yaml"], overrides)


def _finished_metrics(row: str, cfg) -> dict | None:
    """The metrics a previous demo saved for ``row`` with this very config, else None.

    A row whose config changed is removed whole (weights included), so it is trained again.
    """
    row_dir = Path(cfg.run_dir)
    done = row_dir / "eval.json"
    if not done.is_file():
        return None
    saved = json.loads(done.read_text())
    if saved.get("config") == to_yaml(cfg):
        return saved["metrics"]
    log.warning("%s: config changed since the last demo; recomputing this row", row)
    shutil.rmtree(row_dir)
    return None


def _score_row(row: str, cfg) -> dict[str, dict[str, float]]:
    metrics = _calibration_row(row, cfg) if row in CALIBRATION else _backbone_row(row, cfg)
    write_json_atomic(Path(cfg.run_dir) / "eval.json", {"config": to_yaml(cfg), "metrics": metrics})
    return metrics


def _catalogs(cfg) -> dict:
    """``{column: (train list, test list)}`` of the scored splits, each test list with its own split's train list."""
    from vidssl.data.from_config import catalog_from_config

    lists = {}
    for name, split in SPLITS.items():
        data = cfg.data.copy()
        data.split = split
        lists[name] = (catalog_from_config(data, "train"), catalog_from_config(data, "test"))
    return lists


def _backbone_row(row: str, cfg) -> dict[str, dict[str, float]]:
    from vidssl.data.from_config import frame_cache_from_config
    from vidssl.eval.protocol import evaluate_splits
    from vidssl.methods.base import backbone_spec
    from vidssl.train.export import backbone_from_run

    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    if row == "random":
        torch.manual_seed(cfg.trainer.seed)
        backbone = backbone_spec(cfg.model).build()
    else:
        backbone = backbone_from_run(cfg.run_dir)
    # Decoding workers for scoring: the first row to score fills the frame cache, and no
    # training step competes for the cores, so as many as there are cores.
    return evaluate_splits(backbone, _catalogs(cfg), cfg.eval, frame_size=cfg.data.frame_size,
                           crop_size=cfg.augment.crop_size, num_workers=max(cfg.data.num_workers, _CORES),
                           frame_cache=frame_cache_from_config(cfg.data), progress=cfg.trainer.progress)


def _pretrain_in_fresh_process(jobs: list[tuple[str, object]]) -> None:
    """``vidssl.train.run.pretrain`` of each (row, config) in ``jobs``, in one new interpreter.

    By the time the trained rows run, this process has imported OpenCV (the benchmark renderer,
    the optical-flow calibration row), and a training step in a process that has imported cv2
    measured 12-18% slower here (0.26 vs 0.22 s per step of the demo's R3D, same config, same
    data; cv2.setNumThreads(1) and OPENBLAS_NUM_THREADS=1 did not help). A spawned process
    imports only what training needs. One process for all rows because importing Lightning
    costs about 7 s here; a row interrupted earlier resumes from its last checkpoint.
    """
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(target=_pretrain_rows, args=(jobs,), name="demo-pretrain")
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"demo: pretraining failed (exit code {process.exitcode}); the error is printed above. "
                           f"Re-running the demo resumes each unfinished row from <row>/checkpoints/last.ckpt")


def _pretrain_rows(jobs: list[tuple[str, object]]) -> None:
    from vidssl.train.run import pretrain

    for row, cfg in jobs:
        t0 = time.perf_counter()
        pretrain(cfg, resume=(Path(cfg.run_dir) / "checkpoints" / "last.ckpt").is_file())
        print(f"[demo] {row}: trained in {time.perf_counter() - t0:.0f} s", flush=True)


def _calibration_row(row: str, cfg) -> dict[str, dict[str, float]]:
    from vidssl.eval.calibration import calibration_feature_sets
    from vidssl.eval.protocol import evaluate_feature_sets, group_by_gallery

    lists = _catalogs(cfg)
    # The flow statistics look at the frames one evaluation clip spans (clip_len x stride), the
    # same window the networks see, rather than the whole video.
    kwargs = {"max_frames": cfg.eval.clip_len * cfg.eval.stride} if row == "motion-only" else {}
    metrics = {}
    for train, tests in group_by_gallery(lists):
        # No training runs beside it, so the feature computation gets every core.
        gallery, queries = calibration_feature_sets(row, train, tests, workers=_CORES,
                                                    progress=cfg.trainer.progress, **kwargs)
        metrics.update(evaluate_feature_sets(gallery, queries, ks=cfg.eval.ks, linear=cfg.eval.linear))
    return {name: metrics[name] for name in lists}
