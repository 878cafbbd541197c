"""Catalogs: which videos a dataset has, with their labels, read from the official split files.

Each builder parses the files exactly as the dataset distributes them (CRLF line endings,
the class-name case quirks of UCF101) and returns a ``Catalog`` of absolute paths and
0-based labels. Nothing is decoded here. Videos a split file lists but the disk lacks are
dropped with one aggregated warning (count and the first few paths), never one error each;
an empty result, a missing split file or a malformed line is an error naming the file
(and line number).

Builders:
- ``ucf101``: ``classInd.txt`` + ``trainlist0N.txt`` / ``testlist0N.txt``.
- ``hmdb51``: ``<class>_test_split<N>.txt`` (tag 1 train, 2 test, 0 unused).
- ``kinetics400``: the official CSV (``label,youtube_id,time_start,time_end,split``).
- ``folder``: ``root/<class>/**/<video>``.
- ``csv_catalog``: a ``path,label`` CSV (label an integer or a class name).

``folder`` and ``csv_catalog`` have no official test list: give them a second folder or CSV
(built with the first one's ``classes``), or cut one catalog in two with ``holdout_split``,
a seeded class-stratified split that keeps every group of videos (``Catalog.groups``) on one side.
"""
from __future__ import annotations

import csv
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

__all__ = [
    "VideoRecord",
    "Catalog",
    "VIDEO_EXTENSIONS",
    "ucf101",
    "hmdb51",
    "kinetics400",
    "folder",
    "csv_catalog",
    "load_catalog",
    "video_group",
    "holdout_split",
    "class_balanced_subset",
    "files_below",
]

VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".mpg", ".mpeg",
                              ".flv", ".wmv", ".3gp", ".ts"})
_MISSING_SHOWN = 5  # how many missing paths the aggregated warning names
# UCF101's file names carry the group: v_<Class>_g<GG>_c<CC>. Clips of one group "may share some
# common features, such as similar background, similar viewpoint" (the dataset's readme), so a
# group must not straddle train and test.
_UCF_GROUP = re.compile(r"_(g\d+)_c\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class VideoRecord:
    path: str
    label: int


@dataclass
class Catalog:
    """Videos of one subset of a dataset: ``records`` (absolute path, 0-based label) and class names.

    ``groups`` (folder and CSV catalogs) names each record's group for ``holdout_split``:
    videos of one group are never split between train and test.
    """

    records: list[VideoRecord]
    classes: list[str]
    name: str
    groups: list[str] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> np.ndarray:
        """Labels of all records, int64 [N]."""
        return np.array([r.label for r in self.records], dtype=np.int64)

    def paths(self) -> list[str]:
        return [r.path for r in self.records]

    def subset(self, indices, what: str) -> "Catalog":
        """The records at ``indices`` (with their groups, each video its own when None), named ``NAME-what``."""
        groups = self.groups if self.groups is not None else self.paths()
        return Catalog([self.records[i] for i in indices], list(self.classes), f"{self.name}-{what}",
                       [groups[i] for i in indices])


# --------------------------------------------------------------------------------------------
# UCF101


def ucf101(root: str | os.PathLike, split: int = 1, subset: str = "train",
           split_dir: str | os.PathLike | None = None) -> Catalog:
    """UCF101 split ``split`` (1-3), ``subset`` "train" or "test".

    ``root`` holds the videos as ``root/<Class>/v_<Class>_gXX_cYY.avi`` (the layout of
    ``UCF101.rar``). ``split_dir`` holds ``classInd.txt`` and the split lists; by default
    ``root/ucfTrainTestlist``, ``root/../ucfTrainTestlist`` or ``root`` itself, whichever has
    ``classInd.txt``. Paths and class names are matched case-insensitively, because the
    official files disagree with the video folders (``HandstandPushups`` in the lists,
    ``HandStandPushups`` on disk).
    """
    root = _existing_dir(root, "UCF101 root")
    split = _check_split(split, (1, 2, 3), "UCF101")
    subset = _check_subset(subset, ("train", "test"), "UCF101")
    sdir = _find_split_dir(root, split_dir, "classInd.txt", ("ucfTrainTestlist", "../ucfTrainTestlist", "."))

    classes = _read_ucf_class_index(sdir / "classInd.txt")
    class_of = {name.lower(): i for i, name in enumerate(classes)}
    list_file = sdir / f"{subset}list{split:02d}.txt"
    entries: list[tuple[str, int]] = []
    for lineno, line in _lines(list_file):
        fields = line.split()
        rel = fields[0].replace("\\", "/")
        folder_class = rel.split("/")[0].lower() if "/" in rel else None
        if subset == "train":
            if len(fields) != 2 or not fields[1].isdigit():
                raise _line_error(list_file, lineno, line, "expected '<Class>/<video>.avi <label 1-101>'")
            label = int(fields[1]) - 1
            if not 0 <= label < len(classes):
                raise _line_error(list_file, lineno, line, f"label {fields[1]} outside 1..{len(classes)}")
            if folder_class is not None and folder_class != classes[label].lower():
                raise _line_error(list_file, lineno, line, f"label {fields[1]} is class {classes[label]!r} "
                                                           f"but the path is in {rel.split('/')[0]!r}")
        else:
            if len(fields) not in (1, 2) or folder_class is None:
                raise _line_error(list_file, lineno, line, "expected '<Class>/<video>.avi'")
            if folder_class not in class_of:
                raise _line_error(list_file, lineno, line,
                                  f"class folder {rel.split('/')[0]!r} is not in {sdir / 'classInd.txt'}")
            label = class_of[folder_class]
        entries.append((rel, label))

    index = _FileIndex(root)
    records = _resolve(entries, lambda rel: index.find_relative(rel) or index.find_name(Path(rel).name),
                       list_file, root)
    return Catalog(records, classes, f"ucf101-split{split}-{subset}")


def _read_ucf_class_index(path: Path) -> list[str]:
    classes: list[str] = []
    for lineno, line in _lines(path):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise _line_error(path, lineno, line, "expected '<index> <ClassName>'")
        if int(fields[0]) != len(classes) + 1:
            raise _line_error(path, lineno, line, f"expected class index {len(classes) + 1}")
        classes.append(fields[1])
    if not classes:
        raise ValueError(f"{path}: no classes listed")
    return classes


# --------------------------------------------------------------------------------------------
# HMDB51


_HMDB_TAGS = {"train": "1", "test": "2"}


def hmdb51(root: str | os.PathLike, split: int = 1, subset: str = "train",
           split_dir: str | os.PathLike | None = None) -> Catalog:
    """HMDB51 split ``split`` (1-3), ``subset`` "train" (tag 1) or "test" (tag 2); tag 0 is unused.

    Videos live in ``root/<class>/<video>.avi``. ``split_dir`` holds the 51 files
    ``<class>_test_split<N>.txt`` per split; by default ``root/testTrainMulti_7030_splits``,
    ``root/../testTrainMulti_7030_splits``, ``root/test_train_splits`` or ``root``. Classes are
    the sorted class names taken from those file names.
    """
    root = _existing_dir(root, "HMDB51 root")
    split = _check_split(split, (1, 2, 3), "HMDB51")
    subset = _check_subset(subset, ("train", "test"), "HMDB51")
    suffix = f"_test_split{split}.txt"
    candidates = ("testTrainMulti_7030_splits", "../testTrainMulti_7030_splits", "test_train_splits", ".")
    sdir = _find_split_dir(root, split_dir, f"*{suffix}", candidates)
    split_files = sorted(p for p in sdir.iterdir() if p.name.endswith(suffix))
    classes = sorted(p.name[: -len(suffix)] for p in split_files)
    want = _HMDB_TAGS[subset]

    index = _FileIndex(root)
    records: list[VideoRecord] = []
    missing: list[str] = []
    total = 0
    for label, (name, split_file) in enumerate(zip(classes, split_files)):
        entries = []
        for lineno, line in _lines(split_file):
            fields = line.rsplit(None, 1)
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise _line_error(split_file, lineno, line, "expected '<video>.avi <tag 0|1|2>'")
            if fields[1] == want:
                entries.append((f"{name}/{fields[0]}", label))
        total += len(entries)
        for rel, lab in entries:
            path = index.find_relative(rel) or index.find_name(Path(rel).name)
            if path is None:
                missing.append(str(root / rel))
            else:
                records.append(VideoRecord(path, lab))
    where = f"{sdir}/*{suffix}"
    _report_missing(missing, total, where)
    if not records:
        raise FileNotFoundError(f"HMDB51: none of the {total} '{subset}' videos listed in {where} "
                                f"were found under {root}")
    return Catalog(records, classes, f"hmdb51-split{split}-{subset}")


# --------------------------------------------------------------------------------------------
# Kinetics-400


_KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def kinetics400(root: str | os.PathLike, csv_path: str | os.PathLike, subset: str | None = None) -> Catalog:
    """Kinetics-400 from its official CSV (``label,youtube_id,time_start,time_end,split``).

    Clips are files named ``<youtube_id>_<start:06d>_<end:06d>.<ext>``, found anywhere under
    ``root`` (``root/<split>/<label>/``, ``root/<label>/`` or flat ``root/`` all work; ``.mp4``
    usually, any video extension accepted). ``subset`` keeps only the rows whose ``split``
    column equals it ("val" and "validate" are the same); ``None`` keeps every row. Classes are
    the sorted unique labels of the whole CSV, so train and val CSVs give the same ids.
    """
    root = _existing_dir(root, "Kinetics root")
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"Kinetics CSV not found: {csv_path}")
    rows = _read_csv(csv_path, required=_KINETICS_COLUMNS)
    if subset is not None and rows and "split" not in rows[0][1]:
        raise ValueError(f"{csv_path}: subset={subset!r} asked but the CSV has no 'split' column")
    classes = sorted({row["label"] for _, row in rows})
    class_of = {name: i for i, name in enumerate(classes)}

    def same_split(value: str) -> bool:
        aliases = {"validate": "val", "validation": "val"}
        return aliases.get(value.lower(), value.lower()) == aliases.get(subset.lower(), subset.lower())

    entries: list[tuple[str, int]] = []
    for lineno, row in rows:
        if subset is not None and not same_split(row["split"]):
            continue
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except ValueError:
            raise _line_error(csv_path, lineno, ",".join(row.values()), "time_start/time_end must be numbers") from None
        if not row["youtube_id"]:
            raise _line_error(csv_path, lineno, ",".join(row.values()), "empty youtube_id")
        entries.append((f"{row['youtube_id']}_{start:06d}_{end:06d}", class_of[row["label"]]))

    index = _FileIndex(root)
    records = _resolve(entries, lambda stem: index.find_stem(stem, prefer=subset), csv_path, root)
    return Catalog(records, classes, f"kinetics400-{subset or 'all'}")


# --------------------------------------------------------------------------------------------
# Folder per class, CSV


def folder(root: str | os.PathLike, classes: list[str] | None = None) -> Catalog:
    """Videos in ``root/<class>/`` (subfolders allowed); classes are the sorted folder names.

    ``classes`` fixes the class list instead (a test folder read with its training folder's
    classes, so the ids agree); a class folder not in it is an error. A video's group is
    UCF101's ``gXX`` when its name has one (``video_group``), else its path under ``root``.
    """
    root = _existing_dir(root, "video folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is not None:
        class_of = {name: i for i, name in enumerate(classes)}
        unknown = [p.name for p in class_dirs if p.name not in class_of]
        if unknown:
            raise ValueError(f"{root}: class folder(s) {', '.join(unknown)} are not classes of the training "
                             f"videos ({', '.join(classes)})")
    else:
        classes = [p.name for p in class_dirs]
        class_of = {name: i for i, name in enumerate(classes)}
    records: list[VideoRecord] = []
    groups: list[str] = []
    for class_dir in class_dirs:
        for path in files_below(class_dir):
            if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
                records.append(VideoRecord(str(path.resolve()), class_of[class_dir.name]))
                groups.append(video_group(path.relative_to(root).as_posix()))
    if not records:
        raise FileNotFoundError(f"no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) found in class folders "
                                f"under {root}")
    return Catalog(records, list(classes), f"folder-{root.name}", groups)


def csv_catalog(csv_path: str | os.PathLike, root: str | os.PathLike | None = None,
                classes: list[str] | None = None, group_column: str | None = None) -> Catalog:
    """A CSV with header ``path,label``; paths relative to ``root`` (default: the CSV's folder).

    Labels are either all integers (0-based class ids; classes named "0".."K-1") or class
    names (classes: the sorted unique names). ``classes`` fixes the class list instead (a test
    CSV read with its training CSV's classes); a label outside it is an error naming the line.
    ``group_column`` names a column holding each video's group (e.g. the actor or the source
    recording); without it a video's group is UCF101's ``gXX`` when its name has one, else its
    path as the CSV writes it (``video_group``).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"catalog CSV not found: {csv_path}")
    root = Path(root) if root is not None else csv_path.parent
    required = ("path", "label") + ((group_column,) if group_column else ())
    rows = _read_csv(csv_path, required=required)
    labels = [row["label"] for _, row in rows]
    if classes is not None:
        class_of = {name: i for i, name in enumerate(classes)}
        ids = []
        for lineno, row in rows:
            label = row["label"]
            if label not in class_of and _is_int(label) and classes == [str(i) for i in range(len(classes))]:
                label = str(int(label))  # "02" is class "2"
            if label not in class_of:
                raise _line_error(csv_path, lineno, ",".join(row.values()),
                                  f"label {row['label']!r} is not a class of the training videos")
            ids.append(class_of[label])
        classes = list(classes)
    elif labels and all(_is_int(v) for v in labels):
        ids = [int(v) for v in labels]
        for (lineno, row), label in zip(rows, ids):
            if label < 0:
                raise _line_error(csv_path, lineno, ",".join(row.values()), "integer labels must be >= 0")
        classes = [str(i) for i in range(max(ids) + 1)]
    else:
        classes = sorted(set(labels))
        ids = _index_all(classes, labels)
    entries, group_of = [], {}
    for (lineno, row), label in zip(rows, ids):
        if not row["path"]:
            raise _line_error(csv_path, lineno, ",".join(row.values()), "empty path")
        if group_column and not row[group_column]:
            raise _line_error(csv_path, lineno, ",".join(row.values()), f"empty {group_column!r} (the group column)")
        entries.append((row["path"], label))
        group_of.setdefault(row["path"], row[group_column] if group_column else video_group(row["path"]))

    found: dict[str, str] = {}

    def find(rel: str) -> str | None:
        path = Path(rel) if os.path.isabs(rel) else root / rel
        if not path.is_file():
            return None
        found[rel] = str(path.resolve())
        return found[rel]

    records = _resolve(entries, find, csv_path, root)
    group_by_path = {found[rel]: group for rel, group in group_of.items() if rel in found}
    return Catalog(records, classes, f"csv-{csv_path.stem}", [group_by_path[r.path] for r in records])


def video_group(path: str) -> str:
    """The group of a video: UCF101's ``gXX`` (``v_Class_g08_c03.avi`` -> ``"g08"``) or ``path`` itself.

    UCF101 tags every clip with one of 25 groups, and its official splits keep a group number
    on one side for all classes, so ``gXX`` is shared across classes here too.
    """
    match = _UCF_GROUP.search(Path(path).stem)
    return match.group(1).lower() if match else path


def holdout_split(catalog: Catalog, test_fraction: float, seed: int = 0) -> tuple[Catalog, Catalog]:
    """Cut ``catalog`` into (train, test): about ``test_fraction`` of every class held out.

    Whole groups (``catalog.groups``; each video its own group when None) go to one side, so
    no group straddles the split. Deterministic: the same videos, groups, fraction and seed give
    the same split whatever the record order. Groups are visited in a seeded random order, the
    largest first, and one joins the test side when that brings every class's test count closer,
    in total, to its target (``test_fraction`` x the class size). Both sides keep the catalog's
    classes and order.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")
    if len(catalog) < 2:
        raise ValueError(f"{catalog.name}: {len(catalog)} video(s) cannot be split into train and test")
    groups = catalog.groups if catalog.groups is not None else catalog.paths()
    if len(groups) != len(catalog):
        raise ValueError(f"{catalog.name}: {len(groups)} groups for {len(catalog)} videos")
    names, group_index = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    labels = catalog.labels()
    counts = np.zeros((len(names), max(len(catalog.classes), int(labels.max()) + 1)), dtype=np.int64)
    np.add.at(counts, (group_index, labels), 1)
    target = float(test_fraction) * counts.sum(axis=0)
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.argsort(-counts.sum(axis=1)[order], kind="stable")]
    held = np.zeros(counts.shape[1])
    test_group = np.zeros(len(names), dtype=bool)
    for g in order:
        if np.abs(held + counts[g] - target).sum() < np.abs(held - target).sum() - 1e-9:
            test_group[g] = True
            held += counts[g]
    is_test = test_group[group_index]
    if is_test.all() or not is_test.any():
        side = "test" if not is_test.any() else "train"
        raise ValueError(f"{catalog.name}: test_fraction={test_fraction} leaves the {side} side empty "
                         f"({len(catalog)} videos in {len(names)} groups)")
    per_class_test = np.bincount(labels[is_test], minlength=counts.shape[1])
    per_class_train = np.bincount(labels[~is_test], minlength=counts.shape[1])
    no_train = [catalog.classes[c] for c in range(len(catalog.classes)) if per_class_test[c] and not per_class_train[c]]
    if no_train:
        warnings.warn(f"{catalog.name}: class(es) {', '.join(no_train[:_MISSING_SHOWN])} have no training videos "
                      f"after the split (one group holds them all)", stacklevel=2)

    return catalog.subset(np.flatnonzero(~is_test), "train"), catalog.subset(np.flatnonzero(is_test), "test")


def class_balanced_subset(catalog: Catalog, fraction: float, seed: int = 0) -> Catalog:
    """The same number of videos of every class, ``fraction`` of the catalog in all (limited labels).

    DSM (Wang et al., AAAI 2021, "Test with Limited Labeled Data") follows SimCLR: "we sampled 1%
    and 10% labeled data from Kinetics in a class-balanced way (~6 and ~57 videos per class)". Each
    class gets ``max(1, round(fraction * len(catalog) / num_classes))`` videos, all of them when it
    has fewer, drawn without replacement by a generator seeded with ``seed`` (the same catalog,
    fraction and seed give the same subset). Catalog order is kept; ``fraction=1`` is the catalog.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction!r}")
    if len(catalog) == 0:
        raise ValueError(f"{catalog.name}: no videos to take a labelled subset from")
    if float(fraction) == 1.0:
        return catalog
    labels = catalog.labels()
    present = np.unique(labels)
    per_class = max(1, int(round(float(fraction) * len(catalog) / len(present))))
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for label in present:  # classes in label order, each its own draw from the one generator
        members = np.flatnonzero(labels == label)
        keep += rng.choice(members, size=min(per_class, len(members)), replace=False).tolist()
    return catalog.subset(sorted(keep), f"labels{float(fraction):g}")


_BUILDERS: dict[str, Callable[..., Catalog]] = {
    "ucf101": ucf101,
    "hmdb51": hmdb51,
    "kinetics400": kinetics400,
    "folder": folder,
    "csv": csv_catalog,
}


def load_catalog(kind: str, **kwargs) -> Catalog:
    """Build a catalog by name: "ucf101", "hmdb51", "kinetics400", "folder" or "csv"."""
    try:
        builder = _BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown catalog kind {kind!r}; choose one of {sorted(_BUILDERS)}") from None
    try:
        return builder(**kwargs)
    except TypeError as err:
        # A wrong keyword from a config file should name the catalog and the keyword.
        if "unexpected keyword" in str(err) or "missing" in str(err):
            raise TypeError(f"catalog {kind!r}: {err}") from None
        raise


# --------------------------------------------------------------------------------------------
# Helpers


class _FileIndex:
    """Every file under ``root``, looked up case-insensitively by relative path, name or stem.

    One walk of the tree replaces a stat per listed video, and it is what lets the
    case-insensitive match work at all on case-sensitive file systems.
    """

    def __init__(self, root: Path):
        self.root = root
        self.by_relative: dict[str, str] = {}
        self.by_name: dict[str, list[str]] = {}
        self.by_stem: dict[str, list[str]] = {}
        for dirpath, dirnames, filenames in os.walk(root, onerror=_raise, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = os.path.relpath(dirpath, root)
            for name in filenames:
                if name.startswith("."):
                    continue
                full = os.path.abspath(os.path.join(dirpath, name))
                rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                self.by_relative.setdefault(rel.lower(), full)
                self.by_name.setdefault(name.lower(), []).append(full)
                if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                    self.by_stem.setdefault(Path(name).stem.lower(), []).append(full)

    def find_relative(self, rel: str) -> str | None:
        return self.by_relative.get(rel.lower())

    def find_name(self, name: str) -> str | None:
        hits = self.by_name.get(name.lower())
        return hits[0] if hits else None

    def find_stem(self, stem: str, prefer: str | None = None) -> str | None:
        hits = self.by_stem.get(stem.lower())
        if not hits:
            return None
        if prefer is not None and len(hits) > 1:
            # The same clip under several split folders: take the one in the asked split's folder.
            for hit in hits:
                parts = [p.lower() for p in Path(os.path.relpath(hit, self.root)).parts]
                if prefer.lower() in parts:
                    return hit
        return hits[0]


def _resolve(entries: Iterable[tuple[str, int]], find: Callable[[str], str | None],
             listing: Path, root: Path) -> list[VideoRecord]:
    records, missing, total = [], [], 0
    for ref, label in entries:
        total += 1
        path = find(ref)
        if path is None:
            missing.append(str(root / ref))
        else:
            records.append(VideoRecord(path, label))
    _report_missing(missing, total, str(listing))
    if not records:
        if total == 0:
            raise ValueError(f"{listing} lists no videos")
        raise FileNotFoundError(f"none of the {total} videos listed in {listing} were found under {root} "
                                f"(e.g. {missing[0]})")
    return records


def _report_missing(missing: list[str], total: int, listing: str) -> None:
    if missing:
        shown = ", ".join(missing[:_MISSING_SHOWN])
        more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
        warnings.warn(f"{len(missing)} of {total} videos listed in {listing} are missing and were dropped: "
                      f"{shown}{more}", stacklevel=3)


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    """Non-blank stripped lines with 1-based numbers; CRLF and a UTF-8 BOM are handled."""
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    with open(path, encoding="utf-8-sig", errors="replace", newline=None) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if line:
                yield lineno, line


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: CSV header must contain {', '.join(required)}; "
                             f"missing {', '.join(missing)} (header: {','.join(header) or 'empty'})")
        reader.fieldnames = header
        rows = []
        for row in reader:
            lineno = reader.line_num
            if all(v is None or not str(v).strip() for v in row.values()):
                continue
            if any(row.get(c) is None for c in required) or None in row:
                raise _line_error(path, lineno, ",".join(str(v) for v in row.values() if v is not None),
                                  f"expected {len(header)} fields ({','.join(header)})")
            rows.append((lineno, {k: (v or "").strip() for k, v in row.items()}))
    return rows


def _line_error(path: Path, lineno: int, line: str, reason: str) -> ValueError:
    return ValueError(f"{path}, line {lineno}: {reason}; got {line!r}")


def _find_split_dir(root: Path, split_dir, marker: str, candidates: tuple[str, ...]) -> Path:
    if split_dir is not None:
        sdir = Path(split_dir)
        if not sdir.is_dir():
            raise FileNotFoundError(f"split folder not found: {sdir}")
        if not any(sdir.glob(marker)):
            raise FileNotFoundError(f"split folder {sdir} has no {marker}")
        return sdir
    tried = []
    for cand in candidates:
        sdir = (root / cand).resolve()
        tried.append(str(sdir))
        if sdir.is_dir() and any(sdir.glob(marker)):
            return sdir
    raise FileNotFoundError(f"split files ({marker}) not found; looked in {', '.join(tried)}; "
                            f"pass split_dir=")


def files_below(folder: str | os.PathLike) -> list[Path]:
    """Every file below ``folder`` (recursively, links followed), sorted; hidden files and folders
    (".name") are skipped. A folder that cannot be listed raises (``PermissionError`` naming it):
    ``os.walk`` and ``Path.rglob`` pass over it in silence, and a dataset would quietly lose videos."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=_raise, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, name) for name in filenames if not name.startswith(".")]
    return sorted(found)


def _raise(error: OSError) -> None:
    raise error


def _existing_dir(path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        if path.exists():
            raise NotADirectoryError(f"{what} {path}: is a file, not a folder; give the folder the videos are in")
        raise FileNotFoundError(f"{what} not found: {path} (check the path: data.root, or --root)")
    return path.resolve()


def _check_split(split, allowed: tuple[int, ...], dataset: str) -> int:
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)) or split not in allowed:
        raise ValueError(f"{dataset}: split must be one of {allowed}, got {split!r}")
    return int(split)


def _check_subset(subset: str, allowed: tuple[str, ...], dataset: str) -> str:
    if subset not in allowed:
        raise ValueError(f"{dataset}: subset must be one of {allowed}, got {subset!r}")
    return subset


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _index_all(classes: list[str], labels: list[str]) -> list[int]:
    ids = {name: i for i, name in enumerate(classes)}
    return [ids[v] for v in labels]
