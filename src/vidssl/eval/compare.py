"""``vidssl compare``: several methods pretrained and scored under one budget and one backbone, one report.

Rows (``methods``), in the order given:

- a recipe name (``moco``: ``<recipes>/moco.yaml``, the packaged ``configs/demo`` by default) or
  a YAML file (row name: its stem); pretrained with :func:`vidssl.train.run.pretrain`;
- ``random``: the backbone at initialisation, the lower reference;
- ``scene-only`` / ``motion-only``: training-free calibration features (``vidssl.eval.calibration``).

Each row's config is its recipe (for the untrained rows: ``base.yaml`` beside the first trained
row's recipe, else that recipe; ``<recipes>/base.yaml`` when no row is trained), then the shared
``configs`` and ``overrides`` (dataset, backbone, budget: the same for every row),
then ``run_dir=<out>/<row>``. Every row is scored by the same protocol (``vidssl.eval.protocol``):
each test list against the train list of its own split, retrieval R@k and a linear probe, plus
the probe's per-class accuracy and Grad-CAM of the probe's score of the true class on the same
few test videos for every network row (``vidssl.viz.saliency``).

Resuming: ``<out>/<row>/compare_config.yaml`` records the config a row was made with; a row whose
config changed is removed whole (weights included) and made again. A scored row keeps its numbers
in ``<out>/<row>/compare_row.json`` and is reused; a trained but unscored row is scored without
training again; an interrupted pretraining resumes from its last checkpoint.

Outputs in ``<out>``: ``report.json`` (every number, setting and picture path of the page),
``report.html`` (self-contained: tables in the papers' layout, training-loss curves, R@k bars,
per-class accuracy, saliency strips), and ``results.json`` / ``results.md`` / ``results.png``
(``vidssl.eval.report``: split -> row -> metric, ``wall_seconds`` and the ``run`` record).
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf

from vidssl.config import ConfigError, PretrainConfig, load_config, to_yaml
from vidssl.io import write_bytes_atomic, write_json_atomic, write_text_atomic

__all__ = ["compare", "resolve_rows", "row_config", "evaluation_lists", "budget_line", "machine", "Row", "CALIBRATION", "UNTRAINED", "ROW_FILE",
           "CONFIG_STAMP"]

log = logging.getLogger(__name__)

CALIBRATION = ("scene-only", "motion-only")
UNTRAINED = (*CALIBRATION, "random")
ROW_FILE = "compare_row.json"          # a scored row: its metrics, per-class accuracy, pictures
CONFIG_STAMP = "compare_config.yaml"   # the config a row was made with
SALIENCY_DIR = "saliency"
_CORES = os.cpu_count() or 1  # for the stages no training runs beside: calibration, scoring
_CALIBRATION_BACKBONE = {"scene-only": "none (texture statistics of frames)",
                         "motion-only": "none (statistics of DIS optical flow)"}


@dataclass(frozen=True)
class Row:
    """One row of the comparison: ``kind`` is "trained", "random" or "calibration"; ``recipe`` the
    YAML file its config starts from (None: only the shared configs)."""

    name: str
    kind: str
    recipe: Path | None


def resolve_rows(methods: Sequence[str], recipes: str | os.PathLike | None = None) -> list[Row]:
    """The rows ``methods`` name, checked before anything runs (unknown recipe, duplicate name)."""
    recipes = Path(recipes) if recipes is not None else _default_recipes()
    if not methods:
        raise ValueError("--methods: name at least one row (e.g. moco,pace or random,moco)")
    rows: list[Row] = []
    for entry in methods:
        entry = str(entry).strip()
        if entry in UNTRAINED:
            rows.append(Row(entry, "random" if entry == "random" else "calibration", None))
            continue
        path = Path(entry) if entry.endswith((".yaml", ".yml")) else recipes / f"{entry}.yaml"
        if not path.is_file():
            available = sorted(p.stem for p in recipes.glob("*.yaml") if p.stem != "base") if recipes.is_dir() else []
            raise ValueError(f"--methods: no recipe for {entry!r} ({path} not found); recipes in {recipes}: "
                             f"{', '.join(available) or 'none'}; also random, scene-only, motion-only")
        rows.append(Row(path.stem, "trained", path))
    names = [r.name for r in rows]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"--methods: row name(s) given twice: {', '.join(duplicated)}")
    # The untrained rows get the settings (backbone, input, evaluation) of the trained rows:
    # base.yaml beside the first trained row's recipe, else that recipe itself.
    first = next((r.recipe for r in rows if r.kind == "trained"), None)
    base = (first.parent if first is not None else recipes) / "base.yaml"
    shared = base if base.is_file() else first
    return [r if r.kind == "trained" else Row(r.name, r.kind, shared) for r in rows]


def row_config(row: Row, out_dir: str | os.PathLike, configs: Sequence = (), overrides: Sequence[str] = ()):
    """The config of ``row``: its recipe, then ``configs``, then ``overrides``, then ``run_dir=<out_dir>/<row>``."""
    return load_config(([row.recipe] if row.recipe else []) + list(configs),
                       list(overrides) + [f"run_dir={Path(out_dir) / row.name}"])


def evaluation_lists(cfg, splits: Mapping[str, int] | None = None, *, split_file=None) -> dict:
    """``{column: (train list, test list)}`` of a row's config: ``splits`` names UCF101 / HMDB51
    split numbers (``{"decorrelated": 1, "biased": 2}``); default the dataset's own test lists
    (``vidssl.data.from_config.evaluation_catalogs``)."""
    from vidssl.data.from_config import evaluation_catalogs

    if not splits:
        return evaluation_catalogs(cfg.data, None, split_file=split_file)
    lists = evaluation_catalogs(cfg.data, list(splits.values()), split_file=split_file)
    return {name: lists[f"split{number}"] for name, number in splits.items()}


def compare(methods: Sequence[str], out_dir: str | os.PathLike = "runs/compare", *,
            configs: Sequence[str | os.PathLike] = (), overrides: Sequence[str] = (),
            recipes: str | os.PathLike | None = None, splits: Mapping[str, int] | None = None,
            saliency_videos: int = 3, saliency_method: str = "grad-cam", saliency_layer: str | None = None,
            title: str = "vidssl compare", explanation: str = "", notice: str | None = None,
            run_info: Mapping | None = None, device: str = "auto") -> dict:
    """Pretrain, score and report every row; returns ``split -> row -> metrics`` (as results.json).

    ``saliency_videos`` test videos (the first of each class of the first test list) get
    ``saliency_method`` ("grad-cam" or "cam") pictures for every network row, Grad-CAM taken at
    ``saliency_layer`` (a backbone module name; default the evaluated stage). ``notice`` heads the
    printed table and results.md (e.g. a smoke run's label); ``run_info`` joins results.json's
    ``run`` record (e.g. the benchmark a demo generated).
    """
    from vidssl.eval.report import format_table, write_results

    started = time.perf_counter()
    out_dir = Path(out_dir)
    rows = resolve_rows(methods, recipes)
    if isinstance(saliency_videos, bool) or not isinstance(saliency_videos, int) or saliency_videos < 0:
        raise ValueError(f"saliency videos must be a non-negative integer, got {saliency_videos!r}")
    if saliency_method not in ("grad-cam", "cam"):
        raise ValueError(f"saliency method must be 'grad-cam' or 'cam', got {saliency_method!r}")
    cfgs = {row.name: row_config(row, out_dir, configs, overrides) for row in rows}
    _warn_unless_one_backbone(rows, cfgs)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    lists = {row.name: _row_lists(row, cfgs[row.name], splits) for row in rows}
    first = next(iter(lists[rows[0].name]))
    first_test = lists[rows[0].name][first][1]
    videos = _pick_saliency_videos(first_test, saliency_videos)
    classes = list(first_test.classes)
    request = {"videos": [r.path for r in videos], "method": saliency_method, "layer": saliency_layer}
    # A calibration row draws no saliency, so another saliency request leaves it as it is.
    requests = {row.name: request if row.kind != "calibration" else None for row in rows}
    for row in rows:
        _claim_row_dir(row, cfgs[row.name])
    done = {row.name: saved for row in rows
            if (saved := _finished(cfgs[row.name], requests[row.name], list(lists[row.name]))) is not None}
    scored: dict[str, dict] = {}

    def score(row: Row) -> None:
        t0 = time.perf_counter()
        scored[row.name] = done.get(row.name) or _score_row(row, cfgs[row.name], lists[row.name], videos, classes,
                                                           requests[row.name], out_dir, device)
        metrics = scored[row.name]["metrics"]
        print(f"[compare] {row.name}: " + "  ".join(f"{s} R@1 {m['R@1']:.1f}" for s, m in metrics.items())
              + f"  (scored in {time.perf_counter() - t0:.0f} s)", flush=True)

    # Untrained rows first: scoring the random backbone fills the frame cache of the train and
    # test lists with every core before any training reads them with few loader workers.
    for row in rows:
        if row.kind != "trained":
            score(row)
    trained = [row for row in rows if row.kind == "trained"]
    to_train = [row for row in trained if row.name not in done
                # pretrain writes its summary last: a run killed after the weights but before it is unfinished
                and not (Path(cfgs[row.name].run_dir) / "pretrain_summary.json").is_file()]
    if to_train:
        _pretrain_in_fresh_process([(row.name, cfgs[row.name]) for row in to_train])
    for row in trained:
        score(row)

    results = {split: {row.name: scored[row.name]["metrics"][split] for row in rows}
               for split in scored[rows[0].name]["metrics"]}
    run = _run_record(cfgs, trained, run_info)
    budget = budget_line(run)
    wall = time.perf_counter() - started
    write_results(results, out_dir, wall, explanation="\n\n".join(p for p in (notice, budget, explanation) if p),
                  run=run)
    report = _report(rows, cfgs, scored, videos, request, results, run, wall, title=title, budget=budget,
                     classes=classes,
                     explanation="\n\n".join(p for p in (notice, explanation) if p), out_dir=out_dir)
    write_json_atomic(out_dir / "report.json", report, allow_nan=False)
    write_text_atomic(out_dir / "report.html", _render_html(report, out_dir))
    print()
    if notice:
        print(notice)
    if budget:
        print(budget)
    print(format_table(results))
    print(f"\nwall time {wall:.0f} s; report: {out_dir / 'report.html'} (numbers in report.json, results.json)")
    return results


# --------------------------------------------------------------------------------------------
# rows: configs, resuming, pretraining

def _default_recipes() -> Path:
    return Path(__file__).resolve().parent.parent / "configs" / "demo"


def _row_lists(row: Row, cfg, splits) -> dict:
    from vidssl.data.from_config import SPLIT_FILE

    # A trained row is scored on the held-out list its pretraining recorded (folder / csv with
    # data.test_fraction); the untrained rows make the same deterministic split without a file.
    split_file = Path(cfg.run_dir) / SPLIT_FILE if row.kind == "trained" else None
    try:
        return evaluation_lists(cfg, splits, split_file=split_file)
    except ConfigError as err:
        raise ConfigError(f"row {row.name}: {err}") from None


def _claim_row_dir(row: Row, cfg) -> None:
    """Remove a row made with another config (weights included), then stamp the current one."""
    row_dir = Path(cfg.run_dir)
    text = to_yaml(cfg)
    stamp = row_dir / CONFIG_STAMP
    legacy = row_dir / "eval.json"  # what `vidssl demo` kept before it became compare
    previous = None
    if stamp.is_file():
        previous = stamp.read_text()
    elif legacy.is_file():
        try:
            previous = json.loads(legacy.read_text()).get("config")
        except (json.JSONDecodeError, AttributeError):
            previous = None
    if previous is not None and not same_config(previous, cfg):
        log.warning("%s: config changed since this row was made; removing %s and making it again", row.name, row_dir)
        shutil.rmtree(row_dir)
    write_text_atomic(stamp, text)


def same_config(previous: str | None, cfg) -> bool:
    """Whether a row stamped with config text ``previous`` was made with ``cfg``.

    Settings a later vidssl added hold their schema default in ``cfg`` and are absent from an older
    stamp; a new setting's default keeps the old behaviour, so such a row is the same row and is
    kept (else every upgrade would retrain every row). Any other difference is a change."""
    if previous is None:
        return False
    text = to_yaml(cfg)
    if previous == text:
        return True
    try:
        old = OmegaConf.to_container(OmegaConf.create(previous), resolve=True)
    except Exception:  # an unreadable stamp: not the same
        return False
    new = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
    defaults = OmegaConf.to_container(OmegaConf.structured(PretrainConfig), resolve=True)

    def fill(old_part, new_part, default_part) -> None:  # copy into old the added keys at their defaults
        if not isinstance(old_part, dict) or not isinstance(new_part, dict):
            return
        for key, value in new_part.items():
            if key not in old_part:
                if isinstance(default_part, dict) and key in default_part and default_part[key] == value:
                    old_part[key] = value
            else:
                fill(old_part[key], value, default_part.get(key) if isinstance(default_part, dict) else None)

    fill(old, new, defaults)
    return old == new


def _finished(cfg, request: dict | None, columns: list[str]) -> dict | None:
    """The saved scores of a row made with this config, these test lists and this saliency request, else None."""
    path = Path(cfg.run_dir) / ROW_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if not same_config(saved.get("config"), cfg) or saved.get("saliency") != request \
            or list(saved.get("metrics", {})) != columns:
        return None
    return saved


def _warn_unless_one_backbone(rows: list[Row], cfgs: dict) -> None:
    from vidssl.methods.base import backbone_spec

    specs = {row.name: backbone_spec(cfgs[row.name].model).describe() for row in rows if row.kind != "calibration"}
    if len(set(specs.values())) > 1:
        log.warning("the rows do not share one backbone (%s); model.* overrides give them one",
                    "; ".join(f"{name}: {spec}" for name, spec in specs.items()))


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

    process = multiprocessing.get_context("spawn").Process(target=_pretrain_rows, args=(jobs,),
                                                           name="compare-pretrain")
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"compare: pretraining failed (exit code {process.exitcode}); the error is printed "
                           f"above. Running the same command again resumes each unfinished row from "
                           f"<row>/checkpoints/last.ckpt")


def _pretrain_rows(jobs: list[tuple[str, object]]) -> None:
    from vidssl.train.run import pretrain

    for row, cfg in jobs:
        t0 = time.perf_counter()
        pretrain(cfg, resume=(Path(cfg.run_dir) / "checkpoints" / "last.ckpt").is_file())
        print(f"[compare] {row}: trained in {time.perf_counter() - t0:.0f} s", flush=True)


# --------------------------------------------------------------------------------------------
# scoring one row

def _score_row(row: Row, cfg, lists: dict, videos: list, classes: list[str], request: dict | None, out_dir: Path,
               device: str) -> dict:
    from vidssl.eval.protocol import group_by_gallery, score_feature_sets

    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    backbone = None if row.kind == "calibration" else _row_backbone(row, cfg)
    metrics, per_class, pictures = {}, {}, []
    for train, tests in group_by_gallery(lists):
        gallery, queries = _feature_sets(row, cfg, backbone, train, tests, device)
        found, probe = score_feature_sets(gallery, queries, ks=cfg.eval.ks, linear=cfg.eval.linear)
        metrics.update(found)
        for name, features in queries.items():
            per_class[name] = _per_class_accuracy(probe, features, train.classes)
        first_split = next(iter(lists))
        if backbone is not None and first_split in tests and videos:
            pictures = _saliency_pictures(row, cfg, backbone, probe, videos, classes, request, out_dir, device)
    saved = {"config": to_yaml(cfg), "saliency": request, "metrics": {n: metrics[n] for n in lists},
             "per_class": {n: per_class[n] for n in lists}, "pictures": pictures}
    write_json_atomic(Path(cfg.run_dir) / ROW_FILE, saved, allow_nan=False)
    return saved


def _row_backbone(row: Row, cfg):
    from vidssl.methods.base import backbone_spec
    from vidssl.train.export import backbone_from_run

    if row.kind == "random":
        torch.manual_seed(cfg.trainer.seed)  # before building: the random reference reproduces
        return backbone_spec(cfg.model).build()
    return backbone_from_run(cfg.run_dir)


def _feature_sets(row: Row, cfg, backbone, train, tests: dict, device: str):
    if row.kind == "calibration":
        from vidssl.eval.calibration import calibration_feature_sets

        # The flow statistics look at the frames one evaluation clip spans (clip_len x stride),
        # the same window the networks see, rather than the whole video.
        kwargs = {"max_frames": cfg.eval.clip_len * cfg.eval.stride} if row.name == "motion-only" else {}
        # No training runs beside it, so the feature computation gets every core.
        return calibration_feature_sets(row.name, train, tests, workers=_CORES, progress=cfg.trainer.progress,
                                        **kwargs)
    from vidssl.data.from_config import frame_cache_from_config
    from vidssl.eval.protocol import backbone_feature_sets

    # Decoding workers for scoring: no training step competes for the cores, so as many as there are.
    return backbone_feature_sets(backbone, train, tests, cfg.eval, frame_size=cfg.data.frame_size,
                                 crop_size=cfg.augment.crop_size, num_workers=max(cfg.data.num_workers, _CORES),
                                 device=device, frame_cache=frame_cache_from_config(cfg.data),
                                 progress=cfg.trainer.progress)


def _per_class_accuracy(probe, features, classes: Sequence[str]) -> dict[str, float]:
    """Linear-probe top-1 (%) per class present in ``features``, in class order."""
    predicted = probe.predict(features.features)
    out = {}
    for label, name in enumerate(classes):
        mine = features.labels == label
        if mine.any():
            out[name] = float(100.0 * np.mean(predicted[mine] == label))
    return out


# --------------------------------------------------------------------------------------------
# saliency pictures

def _pick_saliency_videos(test_catalog, count: int) -> list:
    """The first test video of each class in class order, then the second of each, ... (``count`` in all)."""
    by_class: dict[int, list] = {}
    for record in test_catalog.records:
        by_class.setdefault(record.label, []).append(record)
    picked, rank = [], 0
    while len(picked) < count and any(rank < len(v) for v in by_class.values()):
        picked += [records[rank] for _, records in sorted(by_class.items()) if rank < len(records)]
        rank += 1
    return picked[:count]


def _saliency_clips(cfg, videos: list, classes: list[str]) -> tuple[torch.Tensor, np.ndarray, list]:
    """The evaluation's centre clip of each readable video: (network input [N, 3, T, c, c], uint8
    frames [N, T, c, c, 3] of exactly that input, for drawing; the N videos' records). An
    unreadable video is left out with a warning (the same one for every row)."""
    from vidssl.data.augment import eval_transform
    from vidssl.data.catalogs import Catalog
    from vidssl.data.dataset import VideoDataset
    from vidssl.data.from_config import frame_cache_from_config
    from vidssl.data.views import UniformClips

    catalog = Catalog(list(videos), list(classes), "saliency")
    dataset = VideoDataset(catalog, UniformClips(num_clips=1, clip_len=cfg.eval.clip_len, stride=cfg.eval.stride),
                           frame_size=tuple(cfg.data.frame_size) if cfg.data.frame_size else None,
                           frame_cache=frame_cache_from_config(cfg.data), max_bad_fraction=1.0)
    items = [dataset[i] for i in range(len(dataset))]
    # The dataset serves another video in place of an unreadable one: such an item is not this video.
    kept = [i for i, item in enumerate(items) if int(item["index"]) == i]
    for i in sorted(set(range(len(items))) - set(kept)):
        log.warning("saliency: %s is unreadable; it is left out of the pictures", videos[i].path)
    if not kept:
        return torch.zeros(0), np.zeros((0,), np.uint8), []
    clips = torch.stack([items[i]["clips"][0] for i in kept])  # [N, T, H, W, 3]
    mean, std = 0.45, 0.225  # stated, so the drawing below undoes exactly this normalisation
    x = eval_transform(clips, cfg.augment.crop_size, mean=(mean,) * 3, std=(std,) * 3)
    # The drawn frames are the network's input with the normalisation undone (same crop, same resize).
    frames = (x * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()
    return x, frames, [videos[i] for i in kept]


def _saliency_pictures(row: Row, cfg, backbone, probe, videos: list, classes: list[str], request: dict,
                       out_dir: Path, device: str) -> list[dict]:
    """Grad-CAM (or CAM) strip and GIF of each saliency video for this row; returns their report entries."""
    from vidssl.viz import pictures as pic
    from vidssl.viz.saliency import LinearOnStage, saliency

    clips, frames, videos = _saliency_clips(cfg, videos, classes)
    if not videos:
        return []
    head = LinearOnStage(backbone.to(device), probe.weight, probe.bias, stage=cfg.eval.stage).to(device)
    rows_of = {int(c): i for i, c in enumerate(probe.classes)}
    if any(r.label not in rows_of for r in videos):
        missing = sorted({r.label for r in videos} - set(rows_of))
        raise ValueError(f"row {row.name}: the linear probe saw no training video of class(es) {missing}")
    maps = saliency(head, clips.to(device), [rows_of[r.label] for r in videos], method=request["method"],
                    layer=request["layer"])
    scale = _picture_scale(frames.shape[2])
    entries = []
    folder = Path(cfg.run_dir) / SALIENCY_DIR
    for i, record in enumerate(videos):
        shown = pic.overlay(frames[i], maps.frames[i])
        pooled = pic.overlay(frames[i][len(frames[i]) // 2][None], maps.pooled[i][None])
        stem = _video_stem(record.path, i)
        strip_path, gif_path = folder / f"{stem}.png", folder / f"{stem}.gif"
        write_bytes_atomic(strip_path, pic.png_bytes(pic.strip(np.concatenate([shown, pooled]), scale=scale)))
        write_bytes_atomic(gif_path, pic.gif_bytes(shown, scale=scale, fps=4))
        entries.append({"video": stem, "strip": strip_path.relative_to(out_dir).as_posix(),
                        "gif": gif_path.relative_to(out_dir).as_posix()})
    return entries


def _video_pictures(cfg, videos: list, classes: Sequence[str], out_dir: Path) -> list[dict]:
    """Per saliency video: its clip, motion map and flow strips (the same frames the networks saw)."""
    from vidssl.video.flow import motion_map, optical_flow, s_motion
    from vidssl.viz import pictures as pic

    _, frames, videos = _saliency_clips(cfg, videos, classes)
    if not videos:
        return []
    scale = _picture_scale(frames.shape[2])
    folder = out_dir / SALIENCY_DIR
    out = []
    for i, record in enumerate(videos):
        clip = frames[i]
        middle = clip[len(clip) // 2][None]
        flow = optical_flow(clip)
        motion = motion_map(flow)
        strips = {
            # Last panel of each strip: the middle frame; S-motion (MCL eq. 2, the temporal average);
            # the flow colour wheel (the strips line up with the saliency strips' pooled panel).
            "clip": np.concatenate([clip, middle]),
            "motion": np.concatenate([pic.motion_overlay(clip, motion),
                                      pic.motion_overlay(middle, s_motion(motion)[None])]),
            "flow": np.concatenate([pic.flow_to_rgb(flow), pic.color_wheel(clip.shape[1])[None]]),
        }
        stem = _video_stem(record.path, i)
        entry = {"name": stem, "title": Path(record.path).name, "path": record.path, "class": classes[record.label]}
        for key, images in strips.items():
            path = folder / f"{stem}-{key}.png"
            write_bytes_atomic(path, pic.png_bytes(pic.strip(images, scale=scale)))
            entry[key] = path.relative_to(out_dir).as_posix()
        gif = folder / f"{stem}-clip.gif"
        write_bytes_atomic(gif, pic.gif_bytes(clip, scale=scale, fps=4))
        entry["clip_gif"] = gif.relative_to(out_dir).as_posix()
        out.append(entry)
    return out


def _picture_scale(side: int) -> int:
    """Whole-pixel enlargement that shows each frame at least 84 px wide."""
    return max(1, math.ceil(84 / max(1, side)))


def _video_stem(path: str, index: int) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(path).stem)
    return f"{index:02d}-{stem}"


# --------------------------------------------------------------------------------------------
# the run record, the report

def _run_record(cfgs: dict, trained: list[Row], run_info: Mapping | None) -> dict:
    """What the table depends on, for results.json: per trained row its steps (those its run took,
    from pretrain_summary.json), precision and seed; the machine; ``run_info``."""
    from vidssl.methods.base import backbone_spec

    rows = {}
    for row in trained:
        cfg = cfgs[row.name]
        summary_path = Path(cfg.run_dir) / "pretrain_summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        rows[row.name] = {"steps": summary.get("steps"), "budget_steps": cfg.trainer.max_steps,
                          "precision": cfg.trainer.precision, "seed": cfg.trainer.seed,
                          "backbone": backbone_spec(cfg.model).describe(),
                          "train_seconds": summary.get("wall_seconds")}
    return {**dict(run_info or {}), "rows": rows, "machine": machine()}


def machine() -> dict:
    """The CPU, core count and versions a table was measured with."""
    import platform

    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform()}


def budget_line(run: dict) -> str:
    """The table header's budget: the self-supervised rows' shared step budget and the others'."""
    budgets = {row: info["budget_steps"] for row, info in run["rows"].items()}
    ssl = sorted({b for row, b in budgets.items() if not row.startswith("supervised")}, key=str)
    parts = [f"self-supervised rows {'/'.join(map(str, ssl))} steps"] if ssl else []
    parts += [f"{row} {b} steps" for row, b in budgets.items() if row.startswith("supervised")]
    if not parts:
        return ""
    precisions = sorted({str(info["precision"]) for info in run["rows"].values()})
    benchmark = run.get("benchmark")
    return ("Budget: " + ", ".join(parts) + (f"; precision {'/'.join(precisions)}" if precisions else "")
            + (f"; benchmark {benchmark['preset']} seed {benchmark['seed']}" if benchmark else ""))


def _report(rows: list[Row], cfgs: dict, scored: dict, videos: list, request: dict, results: dict, run: dict,
            wall: float, *, classes: list[str], title: str, budget: str, explanation: str, out_dir: Path) -> dict:
    """report.json: what report.html shows, as numbers and paths relative to ``out_dir``."""
    from vidssl.methods.base import backbone_spec

    first = cfgs[rows[0].name]
    network_rows = [r for r in rows if r.kind != "calibration"]
    report_rows = []
    for row in rows:
        cfg = cfgs[row.name]
        summary_path = Path(cfg.run_dir) / "pretrain_summary.json"
        steps = json.loads(summary_path.read_text()).get("steps") if summary_path.is_file() else None
        report_rows.append({
            "name": row.name, "kind": row.kind,
            "method": cfg.method.get("name") if row.kind == "trained" else None,
            "backbone": _CALIBRATION_BACKBONE.get(row.name) or backbone_spec(cfg.model).describe(),
            "input": f"{cfg.eval.clip_len}x{cfg.augment.crop_size}x{cfg.augment.crop_size}",
            "pretrain_steps": steps if row.kind == "trained" else (0 if row.kind == "random" else None),
            "metrics": scored[row.name]["metrics"], "per_class": scored[row.name]["per_class"],
            "curve": _loss_curve(Path(cfg.run_dir) / "metrics.jsonl") if row.kind == "trained" else None,
            "saliency": scored[row.name]["pictures"],
        })
    shown = _video_pictures(cfgs[network_rows[0].name], videos, classes, out_dir) if videos and network_rows else []
    layer = request["layer"] or f"stages.{first.eval.stage}"
    what = ("Grad-CAM (Selvaraju et al. 2017) at " + layer if request["method"] == "grad-cam" else "CAM (Zhou et al. 2016)")
    description = (f"{what} of the linear probe's score for the video's true class, on the evaluation's centre clip "
                   f"({first.eval.clip_len} frames every {first.eval.stride}, {first.augment.crop_size} px crop); the "
                   f"last panel is the map averaged over time on the middle frame.")
    return {"title": title, "budget": budget, "explanation": explanation, "splits": list(results),
            "ks": [k for k in first.eval.ks if k <= 20], "classes": classes, "rows": report_rows,
            "saliency_videos": shown, "saliency": {**request, "layer": layer, "description": description},
            "results": results, "run": run, "wall_seconds": round(wall, 2)}


def _loss_curve(path: Path) -> dict | None:
    """``{"step": [...], "loss": [...]}`` from a run's metrics.jsonl (after a resume the later line of a step wins)."""
    if not path.is_file():
        return None
    by_step = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        loss = record.get("loss")
        if isinstance(loss, (int, float)) and math.isfinite(loss) and "step" in record:
            by_step[int(record["step"])] = float(loss)
    steps = sorted(by_step)
    return {"step": steps, "loss": [by_step[s] for s in steps]} if steps else None


def _render_html(report: dict, out_dir: Path) -> str:
    from vidssl.viz import charts
    from vidssl.viz.html import render_report_html

    images = {"recall_bars": charts.recall_bars_png(report["results"], report["ks"])}
    curves = {r["name"]: r["curve"] for r in report["rows"] if r.get("curve")}
    if curves:
        images["loss_curves"] = charts.loss_curves_png(curves)
    for split in report["splits"]:
        per_class = {r["name"]: r["per_class"][split] for r in report["rows"] if r["per_class"].get(split)}
        if per_class:
            images[f"per_class/{split}"] = charts.per_class_png(per_class, report["classes"],
                                                                f"linear-probe accuracy per class, {split}")
    return render_report_html(report, out_dir, images)
