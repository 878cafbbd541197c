"""The data objects a config's ``data:`` section names: the catalog and the frame cache.

Kept apart from ``vidssl.train`` so that evaluation and the demo's scoring build them without
importing Lightning (about 7 s on this machine, most of it torchmetrics' version checks).
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vidssl.config import ConfigError
from vidssl.data.catalogs import Catalog, csv_catalog, folder, holdout_split, load_catalog
from vidssl.io import write_json_atomic
from vidssl.video.frame_cache import FrameCache

__all__ = ["catalog_from_config", "evaluation_catalogs", "frame_cache_from_config", "augment_from_config",
           "SPLIT_FILE"]

# Where a run directory records which videos of a folder / CSV dataset ``data.test_fraction``
# held out, so that pretraining, a resumed run and its evaluation all see the same split.
SPLIT_FILE = "data_split.json"
_SPLIT_FORMAT = "vidssl-holdout-split"
_SPLIT_KEYS = ("dataset", "test_fraction", "split_seed", "group_column")
_NO_TEST_LIST = ("data.dataset={kind} has no test list, and scoring the training videos against themselves "
                 "reads 100%: give one with {key}, or hold out part of the videos with data.test_fraction=0.2 "
                 "(seeded by data.split_seed, class-stratified, whole groups on one side)")


def catalog_from_config(data, subset: str = "train", *, split_file: str | os.PathLike | None = None) -> Catalog:
    """The ``subset`` ("train" or "test") catalog of ``data.dataset`` at ``data.root`` / ``data.split``.

    ``folder`` and ``csv`` datasets take their test list from ``data.test_root`` /
    ``data.test_csv``, or cut one with ``data.test_fraction`` (``holdout_split``); without
    either, "train" is every video and "test" is an error. ``split_file`` (a run directory's
    ``SPLIT_FILE``) keeps a ``test_fraction`` split: read when it exists, else written.
    """
    kind = data.dataset
    kwargs: dict[str, Any] = {}
    _check_test_keys(data)
    if kind in ("ucf101", "hmdb51"):
        kwargs = dict(root=data.root, split=data.split, subset=subset, split_dir=data.split_dir)
    elif kind == "kinetics400":
        kwargs = dict(root=data.root, csv_path=data.csv, subset=subset)
    elif kind in ("folder", "csv"):
        if subset not in ("train", "test"):
            raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
        train, test = _folder_or_csv(data, split_file, need_test=subset == "test")
        return train if subset == "train" else test
    else:
        raise ConfigError(f"data.dataset: unknown dataset {kind!r} (ucf101 | hmdb51 | kinetics400 | folder | csv)")
    return load_catalog(kind, **kwargs)


def evaluation_catalogs(data, test_splits=None, *,
                        split_file: str | os.PathLike | None = None) -> dict[str, tuple[Catalog, Catalog]]:
    """Every test list to score with the gallery it is scored against: ``{name: (train, test)}``.

    UCF101 / HMDB51: for each of ``test_splits`` (default: ``data.split``), ``"split<N>"`` pairs
    split N's test list with split N's own train list, never another split's (which holds it).
    Kinetics-400: ``"split<data.split>"``. Folder / CSV: ``"test"``, their held-out test list
    (``catalog_from_config``); ``test_splits`` apply to UCF101 and HMDB51 only.
    """
    kind = data.dataset
    _check_test_keys(data)
    if kind in ("ucf101", "hmdb51"):
        lists = {}
        for split in test_splits or [data.split]:
            at_split = _replace(data, split=int(split))
            lists[f"split{split}"] = (catalog_from_config(at_split, "train"), catalog_from_config(at_split, "test"))
        return lists
    if test_splits:
        raise ConfigError(f"test splits (--test-split) are numbered lists of ucf101 / hmdb51; data.dataset={kind} "
                          f"has {'its held-out test list' if kind in ('folder', 'csv') else 'one test subset'}")
    if kind in ("folder", "csv"):
        if data.test_fraction is not None and split_file is not None and not Path(split_file).is_file():
            warnings.warn(f"{split_file} is missing: the run's pretraining held out no test videos and may have "
                          f"trained on the ones scored now; the split is made and saved there now", stacklevel=2)
        return {"test": _folder_or_csv(data, split_file, need_test=True)}
    return {f"split{data.split}": (catalog_from_config(data, "train"), catalog_from_config(data, "test"))}


def _folder_or_csv(data, split_file, need_test: bool) -> tuple[Catalog, Catalog | None]:
    """(train, test) of a folder or CSV dataset; test None when it has no test list and none is needed."""
    kind = data.dataset
    if kind == "folder":
        full = folder(data.root)
        if data.test_root:
            return full, folder(data.test_root, classes=full.classes)
        key = "data.test_root=DIR (a folder of held-out videos in DIR/<class>/)"
    else:
        if not data.csv:
            raise ConfigError("data.csv: required when data.dataset=csv (a CSV file with header path,label)")
        root = _csv_root(data)
        full = csv_catalog(data.csv, root, group_column=data.group_column)
        if data.test_csv:
            return full, csv_catalog(data.test_csv, root if root is not None else Path(data.csv).parent,
                                     classes=full.classes, group_column=data.group_column)
        key = "data.test_csv=FILE (a path,label CSV of held-out videos)"
    if data.test_fraction is None:
        if need_test:
            raise ConfigError(_NO_TEST_LIST.format(kind=kind, key=key))
        return full, None
    return _held_out(full, data, split_file)


def _held_out(full: Catalog, data, split_file) -> tuple[Catalog, Catalog]:
    """``holdout_split`` of ``full`` as ``data`` asks; kept in / read from ``split_file`` when given."""
    settings = {"dataset": data.dataset, "test_fraction": float(data.test_fraction),
                "split_seed": int(data.split_seed), "group_column": data.group_column}
    root = Path(data.root if data.dataset == "folder" else (_csv_root(data) or Path(data.csv).parent)).resolve()
    if split_file is None or not Path(split_file).is_file():
        train, test = holdout_split(full, data.test_fraction, seed=data.split_seed)
        if split_file is not None:
            write_json_atomic(split_file, {
                "format": _SPLIT_FORMAT, **settings, "root": str(root), "classes": list(full.classes),
                "train": [_key(r.path, root) for r in train.records],
                "test": [_key(r.path, root) for r in test.records]})
        return train, test
    saved = _read_split(Path(split_file))
    changed = [k for k in _SPLIT_KEYS if saved.get(k) != settings[k]]
    if changed:
        raise ConfigError(f"{split_file} holds the split of {', '.join(f'{k}={saved.get(k)!r}' for k in changed)}, "
                          f"but the config asks {', '.join(f'{k}={settings[k]!r}' for k in changed)}: the run "
                          f"trained on that split; evaluate it with the same settings (or delete the file to "
                          f"split anew, knowing the backbone may have trained on the new test videos)")
    side = {**{p: "train" for p in saved["train"]}, **{p: "test" for p in saved["test"]}}
    keep: dict[str, list[int]] = {"train": [], "test": []}
    unknown = []
    for i, record in enumerate(full.records):
        where = side.get(_key(record.path, root))
        if where is None:
            unknown.append(record.path)
        else:
            keep[where].append(i)
    if unknown:
        warnings.warn(f"{len(unknown)} videos are not in the split saved in {split_file} (added since?) and were "
                      f"left out: {', '.join(unknown[:5])}", stacklevel=3)
    gone = len(side) - len(keep["train"]) - len(keep["test"])
    if gone:
        warnings.warn(f"{gone} videos of the split saved in {split_file} are no longer in the dataset", stacklevel=3)
    if not keep["train"] or not keep["test"]:
        raise ValueError(f"{split_file}: none of its {'train' if not keep['train'] else 'test'} videos are in "
                         f"the dataset at {root}")
    return full.subset(keep["train"], "train"), full.subset(keep["test"], "test")


def _read_split(path: Path) -> dict:
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(saved, dict) or saved.get("format") != _SPLIT_FORMAT:
        raise ValueError(f"{path}: not a vidssl train/test split file")
    return saved


def _key(path: str, root: Path) -> str:
    """A video's path in a split file: relative to the dataset root when under it, else absolute."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def _check_test_keys(data) -> None:
    kind = data.dataset
    given = [k for k in ("test_root", "test_csv", "test_fraction", "group_column") if getattr(data, k, None) is not None]
    if kind not in ("folder", "csv"):
        if given:
            raise ConfigError(f"data.{given[0]}: applies to the folder and csv datasets; data.dataset={kind} has its "
                              f"own test lists")
        return
    wrong = {"folder": ("test_csv", "group_column"), "csv": ("test_root",)}[kind]
    for key in wrong:
        if key in given:
            hint = "data.test_csv (and data.group_column) apply to data.dataset=csv" if kind == "folder" \
                else "a test CSV is data.test_csv, its paths relative to data.root"
            raise ConfigError(f"data.{key}: not used by data.dataset={kind}; {hint}")
    if data.test_fraction is not None:
        if kind == "folder" and data.test_root or kind == "csv" and data.test_csv:
            raise ConfigError(f"data.test_fraction: give either a test list "
                              f"({'data.test_root' if kind == 'folder' else 'data.test_csv'}) or a fraction, not both")
        if not 0.0 < float(data.test_fraction) < 1.0:
            raise ConfigError(f"data.test_fraction: must be between 0 and 1 (exclusive), got {data.test_fraction}")


def _csv_root(data) -> str | None:
    if isinstance(data, DictConfig) and OmegaConf.is_missing(data, "root"):
        return None
    return None if data.root in (None, "", "???") else data.root


def _replace(data, **changes):
    if isinstance(data, DictConfig):
        copy = data.copy()
        for key, value in changes.items():
            setattr(copy, key, value)
        return copy
    return dataclasses.replace(data, **changes)


def frame_cache_from_config(data) -> FrameCache | None:
    """The ``FrameCache`` that ``data.frame_cache`` names, at ``data.frame_size``; None when unset."""
    if not data.frame_cache:
        return None
    size = tuple(data.frame_size) if data.frame_size else None
    stream = data.get("video_stream") if hasattr(data, "get") else getattr(data, "video_stream", None)
    return FrameCache(data.frame_cache, size, stream=stream)


def augment_from_config(augment):
    """The ``ClipAugment`` an ``augment:`` section describes (pretraining and fine-tuning alike)."""
    from vidssl.data.augment import ClipAugment  # kornia: imported when a trainer needs it

    return ClipAugment(crop_size=augment.crop_size, scale=tuple(augment.scale), ratio=tuple(augment.ratio),
                       hflip_p=augment.hflip_p, jitter=tuple(augment.jitter), jitter_p=augment.jitter_p,
                       gray_p=augment.gray_p, blur_p=augment.blur_p, per_frame_jitter=augment.per_frame_jitter)
