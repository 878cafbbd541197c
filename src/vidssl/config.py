"""Configuration: YAML recipes plus ``key=value`` overrides, validated on load.

The schema is a tree of dataclasses read through OmegaConf, so an unknown key, a value of the
wrong type or a missing required value is one clear :class:`ConfigError` naming the full key.
The ``method:`` section is validated by the method itself (its ``Config`` dataclass), so each
method owns its keys and the shared schema does not grow with every paper.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vidssl.config_checks import KEY_CHECKS, SECTION_CHECKS, first_problem, format_value

__all__ = [
    "ConfigError", "DataConfig", "AugmentConfig", "ModelConfig", "NetworkConfig", "OptimConfig", "TrainerConfig",
    "EvalConfig", "PretrainConfig", "FinetuneConfig", "FinetuneRunConfig", "load_config", "validate_section",
    "to_yaml",
]


class ConfigError(ValueError):
    """A configuration problem; the message names the key or the file."""


@dataclass
class DataConfig:
    dataset: str = "ucf101"          # catalog kind: ucf101 | hmdb51 | kinetics400 | folder | csv
    root: str = "???"                # videos root (csv: what the CSV's paths are relative to; default its folder)
    split: int = 1
    split_dir: Optional[str] = None  # folder of official split files (default: inside root)
    csv: Optional[str] = None        # kinetics400 annotations / csv catalog file (required for csv)
    # Held-out test videos of a folder or csv dataset (ucf101 / hmdb51 / kinetics400 have their own):
    test_root: Optional[str] = None  # folder: a second folder of test videos, test_root/<class>/
    test_csv: Optional[str] = None   # csv: a second path,label CSV of test videos (paths relative to root)
    test_fraction: Optional[float] = None  # or hold out this fraction of every class (saved in the run dir)
    split_seed: int = 0              # seed of the test_fraction split
    group_column: Optional[str] = None  # csv: column naming each video's group (one group, one side);
                                        # default: UCF101's _gXX_ in the file name, else none
    frame_size: list[int] = field(default_factory=lambda: [64, 64])  # decoded frames resized to H, W
    num_workers: int = 2
    samples_per_epoch: Optional[int] = None  # enlarge (or shrink) an epoch, e.g. pace's 90k on UCF101
    max_bad_fraction: float = 0.05   # the run fails only above this fraction of unreadable videos
    # Legacy: extra float32 per-clip signals by name (flow, motion-map, motion-vectors, ...). Methods
    # declare what they read themselves (Method.signals()); this is only for a custom method that
    # reads batch[name] of the old interface.
    signals: list[str] = field(default_factory=list)
    cache_dir: Optional[str] = None  # where `vidssl extract` wrote signals; used where it matches a request
    video_stream: Optional[int] = None  # which video stream of each file (0-based); None: the best one
    frame_cache: Optional[str] = None  # folder where each video is decoded once (vidssl.video.frame_cache)


@dataclass
class AugmentConfig:
    crop_size: int = 56
    scale: list[float] = field(default_factory=lambda: [0.7, 1.0])
    ratio: list[float] = field(default_factory=lambda: [1.0, 1.0])
    hflip_p: float = 0.5
    jitter: list[float] = field(default_factory=lambda: [0.2, 0.2, 0.2, 0.05])
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    per_frame_jitter: bool = False


@dataclass
class NetworkConfig:
    """One of a method's extra networks (``model.networks.NAME``); unset keys keep the method's choice.

    Naming another ``backbone`` than the method's drops the method's depth (the new one's default).
    """
    backbone: Optional[str] = None
    width: Optional[int] = None      # default: the method's, else model.width
    depth: Optional[int] = None
    in_channels: Optional[int] = None


@dataclass
class ModelConfig:
    """The main backbone (the network ``backbone.safetensors`` holds and ``vidssl evaluate`` scores),
    and overrides of the extra networks a method declares (cmd's iframe and motion networks)."""
    backbone: str = "r3d"
    width: int = 64
    depth: Optional[int] = 18
    in_channels: int = 3
    networks: dict[str, NetworkConfig] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "sgd"                # sgd | adamw
    lr: float = 0.1                  # at base_batch; scaled linearly with the global batch
    base_batch: int = 256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"         # cosine | step | constant
    warmup_epochs: float = 0.0
    step_epochs: list[int] = field(default_factory=list)  # for "step": divide by 1/gamma at these
    gamma: float = 0.1
    grad_clip: Optional[float] = None


@dataclass
class TrainerConfig:
    batch_size: int = 32             # per device
    max_epochs: int = 100
    max_steps: Optional[int] = None  # overrides max_epochs when set
    max_time_seconds: Optional[float] = None  # a wall-clock budget; training stops cleanly at it
    precision: str = "auto"          # auto (bf16 where the hardware has it natively, else fp32) | 32-true | bf16-mixed | 16-mixed
    channels_last: bool = True
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"           # ddp for several devices
    sync_batchnorm: bool = False
    checkpoint_every_n_steps: int = 500
    log_every_n_steps: int = 10
    seed: int = 0
    progress: bool = True
    threads: Optional[int] = None    # torch CPU threads (default: torch's choice)


@dataclass
class EvalConfig:
    clip_len: int = 8
    stride: int = 2
    num_clips: int = 10
    stage: str = "p5"
    batch_size: int = 32
    linear: str = "logreg"           # logreg | svm
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 50])
    # video: one feature per video (num_clips averaged), R@k and the linear probe (Pace, MCL, CMD);
    # clips: DSM's clip-level retrieval (vidssl.eval.clip_retrieval): every clip_len-frame clip of a
    # test video queries every clip of the train videos, features max-pooled to clip_pool, R@k only.
    protocol: str = "video"
    clip_pool: Optional[list[int]] = field(default_factory=lambda: [2, 7, 7])  # null: global average


@dataclass
class PretrainConfig:
    run_dir: str = "runs/default"
    method: dict[str, Any] = field(default_factory=lambda: {"name": "moco"})
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class FinetuneConfig:
    """``vidssl finetune``: supervised fine-tuning of a pretrained backbone plus a new linear classifier.

    Defaults are CMD's UCF101 setting (Huang et al., CVPR 2021, "Finetuning settings"): SGD,
    lr = 0.0001 x B, weight decay 0.003, cosine annealing, 120 epochs, batch 8, dropout 0.3,
    10 uniformly spaced clips averaged at test. The clip length, frame size and crop default to
    the pretraining run's (method.clip_len / stride, data.frame_size, augment.crop_size); the
    trainer.* hardware keys (devices, strategy, precision, threads) are the run's too, while the
    budget and the optimiser are the keys here, so nothing of the pretraining schedule leaks in.
    """
    epochs: int = 120
    max_steps: Optional[int] = None     # optimiser steps; overrides epochs when set
    batch_size: int = 8                 # per process, like trainer.batch_size
    samples_per_epoch: Optional[int] = None  # default: the labelled train list's size (pace: 90k)
    optimizer: str = "sgd"              # sgd | adamw
    lr: float = 0.0008                  # at base_batch; see lr_scaling
    base_batch: int = 8
    lr_scaling: str = "linear"          # linear: lr x global batch / base_batch (CMD's 0.0001 x B) | none
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.003
    schedule: str = "cosine"            # cosine | step | constant
    warmup_epochs: float = 0.0
    step_epochs: list[int] = field(default_factory=list)  # for "step": multiply by gamma at these epochs
    gamma: float = 0.1
    grad_clip: Optional[float] = None
    dropout: float = 0.3                # before the classifier (CMD)
    clip_len: Optional[int] = None      # default: the run's method.clip_len (else eval.clip_len)
    stride: Optional[int] = None        # default: the run's method.stride (else eval.stride)
    num_clips: int = 10                 # uniformly spaced test clips per video, scores averaged
    spatial_crops: int = 1              # 1: centre crop; 3: both ends and the centre of the longer side
    test_batch_size: int = 16           # videos per test batch
    test_every_n_epochs: int = 1        # score the test list(s) every N epochs, and always at the end
    test_splits: list[int] = field(default_factory=list)  # ucf101 / hmdb51 test lists (default: data.split)
    label_fraction: Optional[float] = None  # limited labels: a class-balanced fraction of the train list
    label_seed: int = 0
    static: bool = False                # train on static clips (one frame repeated): the scene-bias diagnostic
    static_test: bool = False           # test on static clips too (DSM tests on normal clips)


@dataclass
class FinetuneRunConfig(PretrainConfig):
    """What ``vidssl finetune`` reads: the pretraining run's config plus the ``finetune:`` section."""
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


def load_config(paths: Sequence[str | Path] = (), overrides: Sequence[str] = (),
                schema: type = PretrainConfig) -> DictConfig:
    """Merge YAML files (later ones win) and ``key=value`` overrides onto the schema.

    A YAML file may name others under ``defaults: [relative/path.yaml, ...]``, merged first.
    """
    cfg = OmegaConf.structured(schema)
    sources: list[tuple[str, Any]] = []
    for path in paths:
        sources.extend(_read_yaml_with_defaults(Path(path)))
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"override {bad[0]!r} is not of the form key=value")
        sources.append(("command-line overrides", OmegaConf.from_dotlist(list(overrides))))
    defaults = cfg
    for origin, source in sources:
        try:
            cfg = OmegaConf.merge(cfg, source)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{origin}: {_describe(err, defaults)}") from None
    _default_csv_root(cfg)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"missing required config value(s): {', '.join(missing)}")
    problem = first_problem(cfg, KEY_CHECKS, defaults=defaults)
    if problem:
        raise ConfigError(problem)
    return cfg


def _default_csv_root(cfg: DictConfig) -> None:
    """``data.dataset=csv``: ``data.csv`` is required and ``data.root`` defaults to the CSV's folder."""
    data = cfg.get("data") if "data" in cfg else None
    if not isinstance(data, DictConfig) or "dataset" not in data or data.dataset != "csv":
        return
    if not data.get("csv"):
        raise ConfigError("data.csv: required when data.dataset=csv (a CSV file with header path,label)")
    if OmegaConf.is_missing(data, "root"):
        data.root = str(Path(data.csv).parent)


def validate_section(schema: type, section: Mapping[str, Any] | DictConfig, prefix: str) -> Any:
    """Validate a free-form section (e.g. ``method:``) against a dataclass; returns a typed object."""
    base = OmegaConf.structured(schema)
    section = OmegaConf.create(dict(section) if not isinstance(section, DictConfig) else section)
    try:
        merged = OmegaConf.merge(base, section)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{prefix}: {_describe(err, base)}") from None
    problem = first_problem(merged, SECTION_CHECKS.get(prefix, {}), defaults=base, prefix=prefix)
    if problem:
        raise ConfigError(problem)
    return OmegaConf.to_object(merged)


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def _read_yaml_with_defaults(path: Path, _seen: frozenset = frozenset()) -> list[tuple[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (check the path given with -c, or in 'defaults:')")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: circular 'defaults'")
    if path.stat().st_size == 0 or not path.read_bytes().strip():
        # Most likely a file cut short or not written yet; schema defaults alone are not a recipe.
        raise ConfigError(f"{path}: the config file is empty; give a YAML mapping of settings "
                          f"(e.g. a recipe from configs/ or a run directory's config.yaml)")
    try:
        data = OmegaConf.load(path)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {_yaml_problem(err)}") from None
    except Exception as err:
        raise ConfigError(f"{path}: cannot parse YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, DictConfig):
        raise ConfigError(f"{path}: top level must be a mapping")
    out: list[tuple[str, Any]] = []
    defaults = data.pop("defaults", None)
    for name in defaults or []:
        out.extend(_read_yaml_with_defaults(path.parent / str(name), _seen | {path.resolve()}))
    out.append((str(path), data))
    return out


def _describe(err: OmegaConfBaseException, schema: DictConfig | None = None) -> str:
    key = getattr(err, "full_key", None)
    msg = str(err).splitlines()[0]
    if key and "is not a ListConfig" in msg:
        # OmegaConf's words ("AnyNode is not a ListConfig, TupleConfig, list, or tuple") for a
        # scalar given to a list-valued key; say which key wants a list, and how one is written.
        default = OmegaConf.select(schema, key, default=None) if schema is not None else None
        given = getattr(err, "value", None)
        example = OmegaConf.to_container(default) if isinstance(default, ListConfig) and len(default) else [given]
        return (f"key '{key}' expects a list, got {format_value(given)}; write it in brackets, "
                f"e.g. {key}={format_value(example)}")
    if key:
        return f"key '{key}': {msg}"
    return msg


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML syntax error on one line: where (line, column) and what."""
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = " ".join(str(getattr(err, "problem", None) or err).split())
    context = getattr(err, "context", None)
    return f"cannot parse YAML at {where}{what}" + (f" ({' '.join(context.split())})" if context else "")


def as_dict(obj: Any) -> dict:
    """A plain dict of a dataclass or DictConfig (for logging and saving)."""
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return OmegaConf.to_container(obj, resolve=True)
