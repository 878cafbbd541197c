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
"""
from __future__ import annotations

import csv
import os
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
]

VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".mpg", ".mpeg",
                              ".flv", ".wmv", ".3gp", ".ts"})
_MISSING_SHOWN = 5  # how many missing paths the aggregated warning names


@dataclass(frozen=True)
class VideoRecord:
    path: str
    label: int


@dataclass
class Catalog:
    """Videos of one subset of a dataset: ``records`` (absolute path, 0-based label) and class names."""

    records: list[VideoRecord]
    classes: list[str]
    name: str

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> np.ndarray:
        """Labels of all records, int64 [N]."""
        return np.array([r.label for r in self.records], dtype=np.int64)

    def paths(self) -> list[str]:
        return [r.path for r in self.records]


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


def folder(root: str | os.PathLike) -> Catalog:
    """Videos in ``root/<class>/`` (subfolders allowed); classes are the sorted folder names."""
    root = _existing_dir(root, "video folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    records: list[VideoRecord] = []
    for label, class_dir in enumerate(class_dirs):
        for path in sorted(class_dir.rglob("*")):
            if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file() and not path.name.startswith("."):
                records.append(VideoRecord(str(path.resolve()), label))
    if not records:
        raise FileNotFoundError(f"no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) found in class folders "
                                f"under {root}")
    return Catalog(records, [p.name for p in class_dirs], f"folder-{root.name}")


def csv_catalog(csv_path: str | os.PathLike, root: str | os.PathLike | None = None) -> Catalog:
    """A CSV with header ``path,label``; paths relative to ``root`` (default: the CSV's folder).

    Labels are either all integers (0-based class ids; classes named "0".."K-1") or class
    names (classes: the sorted unique names).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"catalog CSV not found: {csv_path}")
    root = Path(root) if root is not None else csv_path.parent
    rows = _read_csv(csv_path, required=("path", "label"))
    labels = [row["label"] for _, row in rows]
    if labels and all(_is_int(v) for v in labels):
        ids = [int(v) for v in labels]
        for (lineno, row), label in zip(rows, ids):
            if label < 0:
                raise _line_error(csv_path, lineno, ",".join(row.values()), "integer labels must be >= 0")
        classes = [str(i) for i in range(max(ids) + 1)]
    else:
        classes = sorted(set(labels))
        ids = _index_all(classes, labels)
    entries = []
    for (lineno, row), label in zip(rows, ids):
        if not row["path"]:
            raise _line_error(csv_path, lineno, ",".join(row.values()), "empty path")
        entries.append((row["path"], label))

    def find(rel: str) -> str | None:
        path = Path(rel) if os.path.isabs(rel) else root / rel
        return str(path.resolve()) if path.is_file() else None

    records = _resolve(entries, find, csv_path, root)
    return Catalog(records, classes, f"csv-{csv_path.stem}")


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
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
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


def _existing_dir(path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")
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
