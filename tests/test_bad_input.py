"""The bad-input matrix (issue #14): every command against every kind of bad input.

Each row runs ``vidssl`` in-process (``vidssl.cli.main``, stderr captured) and asserts:
- the exit code (2: a wrong command line, config or path, nothing ran; 1: the job ran and its
  data failed it; 0: bad videos skipped within ``data.max_bad_fraction``);
- the error: exactly one line ``vidssl CMD: error: ...`` naming the file or key and saying what
  to do (the row lists the fragments it must contain);
- no Python traceback on stderr (``-v`` re-raises: one row checks that);
- nothing already written is damaged: the files of an existing run directory, its results, a
  benchmark, a cache or a report are byte-identical (and not rewritten) afterwards.
A few rows run the installed entry point in a subprocess: what a terminal shows, DataLoader worker
processes and Lightning's own output included.

Unreadable directories: the tests run as root, for whom ``chmod 000`` changes nothing, so a folder
that cannot be listed is simulated by making ``Path.iterdir`` raise ``PermissionError`` for it
(monkeypatch); "a file where a folder is expected" is its own row, as are a missing and an empty
folder.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest

from vidssl.cli import main
from vidssl.video.writer import write_video

REPO = Path(__file__).resolve().parents[1]
MOCO = str(REPO / "configs" / "demo" / "moco.yaml")
TINY = ["data.frame_size=[32,32]", "augment.crop_size=28", "model.width=4", "model.depth=10",
        "trainer.batch_size=4", "trainer.max_time_seconds=null", "data.num_workers=0", "trainer.precision=32-true",
        "trainer.progress=false", "trainer.channels_last=false", "trainer.log_every_n_steps=1",
        "method.queue_size=16", "method.proj_hidden=16", "eval.num_clips=1", "eval.batch_size=8", "eval.ks=[1,5]"]

# -- bad videos ---------------------------------------------------------------------------------

UNREADABLE = ("empty", "text", "audio_only", "huge")  # no frame can be read: skipped, counted, listed
READABLE = ("truncated", "lying_header", "raw_stream", "one_frame")  # damaged or odd, yet frames decode
VIDEO_KINDS = ("missing",) + UNREADABLE + READABLE


def _frames(t: int, size: int, seed: int = 0) -> np.ndarray:
    base = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return np.stack([np.roll(base, k, axis=1) for k in range(t)])


def _patch_avi(path: Path, *, frames: int | None = None, size: tuple[int, int] | None = None) -> None:
    """Rewrite an AVI's header fields: the frame count (avih and strh) or the frame size (avih, strf)."""
    data = bytearray(path.read_bytes())
    avih, strh, strf = data.find(b"avih") + 8, data.find(b"strh") + 8, data.find(b"strf") + 8
    if frames is not None:
        struct.pack_into("<I", data, avih + 16, frames)  # dwTotalFrames
        struct.pack_into("<I", data, strh + 32, frames)  # dwLength
    if size is not None:
        struct.pack_into("<II", data, avih + 32, size[1], size[0])  # dwWidth, dwHeight
        struct.pack_into("<ii", data, strf + 4, size[1], size[0])  # biWidth, biHeight
    path.write_bytes(bytes(data))


def write_bad_video(kind: str, path: Path) -> Path:
    """A file of one bad kind at ``path`` ("missing": nothing is written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "missing":
        pass
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":  # a text file renamed .mp4
        path.write_text("not a video, only text\n" * 40)
    elif kind == "audio_only":  # an MP4 with one AAC stream and no video
        with av.open(str(path), "w") as container:
            stream = container.add_stream("aac", rate=16000)
            stream.layout = "mono"
            for k in range(8):
                frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 16000, k * 1024
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    elif kind == "huge":  # 10 kB of MJPEG whose AVI and JPEG headers both declare 16000 x 16000
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mjpeg", rate=25)
            stream.width = stream.height = 32
            stream.pix_fmt = "yuvj420p"
            for frame in _frames(4, 32):
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        data = bytearray(path.read_bytes())
        at = data.find(b"\xff\xc0")
        while at >= 0:  # every frame's SOF0 marker: height, width after length and precision
            data[at + 5:at + 9] = struct.pack(">HH", 16000, 16000)
            at = data.find(b"\xff\xc0", at + 2)
        path.write_bytes(bytes(data))
        _patch_avi(path, size=(16000, 16000))
    elif kind == "truncated":  # the first 30% of the bytes of a 48-frame video
        write_video(path, _frames(48, 64))
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * 0.3)])
    elif kind == "lying_header":  # 16 frames, an AVI header claiming 1000
        write_video(path, _frames(16, 32))
        _patch_avi(path, frames=1000)
    elif kind == "raw_stream":  # a raw MPEG-4 elementary stream (.m4v) named .avi
        raw = path.with_suffix(".m4v")
        write_video(raw, _frames(16, 32))
        raw.rename(path)
    elif kind == "one_frame":
        write_video(path, _frames(1, 32))
    else:
        raise KeyError(kind)
    return path


def video_name(kind: str) -> str:
    return f"bad_{kind}.{'mp4' if kind in ('text', 'audio_only') else 'avi'}"


# -- the world every row runs in ----------------------------------------------------------------

@dataclass
class World:
    root: Path                      # scratch folder of the module
    bench: Path                     # the tiny benchmark (UCF101 layout)
    videos: Path                    # one file per bad kind
    csv: Path                       # training CSV: good videos plus every bad kind (path,label)
    test_csv: Path                  # held-out CSV: good videos plus one unreadable
    run: Path                       # a finished pretraining run on csv (bad videos within the limit)
    cache: Path                     # a finished `extract flow` cache of the benchmark
    report: Path                    # a finished `check-videos` report
    files: dict = field(default_factory=dict)  # named small files (configs, CSVs)
    outcomes: dict = field(default_factory=dict)  # (command) -> Outcome of the jobs run on csv

    def fmt(self, text: str) -> str:
        return text.format(W=self.root, BENCH=self.bench, RUN=self.run, CACHE=self.cache, REPORT=self.report,
                           CSV=self.csv, TEST_CSV=self.test_csv, VIDEOS=self.videos, MOCO=MOCO,
                           **{k: str(v) for k, v in self.files.items()})


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def snapshot(*paths: Path) -> dict:
    """Every file under ``paths``: size, modification time and content hash."""
    seen = {}
    for top in paths:
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file():
                stat = path.stat()
                seen[str(path)] = (stat.st_size, stat.st_mtime_ns, hashlib.sha1(path.read_bytes()).hexdigest())
    return seen


def error_line(outcome: Outcome, command: str) -> str:
    """The one error line; asserts there is exactly one and no traceback anywhere."""
    assert "Traceback" not in outcome.err, outcome.err
    lines = [line for line in outcome.err.splitlines() if line.startswith(f"vidssl {command}: error: ")]
    assert len(lines) == 1, outcome.err
    return lines[0]


@pytest.fixture(scope="module")
def world(tiny_benchmark, tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("bad-input")
    bench = Path(tiny_benchmark)
    videos = root / "videos"
    for kind in VIDEO_KINDS:
        write_bad_video(kind, videos / video_name(kind))
    write_bad_video("text", root / "test-videos" / "unreadable.mp4")  # the test list's own bad video
    # A CSV dataset: 12 good videos of two classes plus every bad kind, and a held-out list.
    good: dict[str, list[Path]] = {}
    for label in ("HorizontalBounce", "Orbit"):  # copied under root: extract keys its cache by root
        (root / "good" / label).mkdir(parents=True)
        good[label] = [Path(shutil.copy(p, root / "good" / label)) for p in sorted((bench / label).glob("*.avi"))[:9]]
    rows = [(p, label) for label, paths in good.items() for p in paths[:6]]
    rows += [(videos / video_name(kind), "Orbit" if i % 2 else "HorizontalBounce")
             for i, kind in enumerate(VIDEO_KINDS)]
    csv = root / "train.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    test_rows = [(p, label) for label, paths in good.items() for p in paths[6:9]]
    test_rows.append((root / "test-videos" / "unreadable.mp4", "Orbit"))
    test_csv = root / "test.csv"
    test_csv.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in test_rows))
    w = World(root=root, bench=bench, videos=videos, csv=csv, test_csv=test_csv, run=root / "run",
              cache=root / "cache", report=root / "report.json")
    _small_files(w)
    # The jobs the per-kind rows read, each run once: pretraining within the limit (5 steps of 4
    # cover every one of the 20 rows once), its evaluation, a check of every kind, and extraction.
    data = ["data.dataset=csv", f"data.csv={csv}", f"data.test_csv={test_csv}", f"data.root={root}",
            "data.max_bad_fraction=0.5"]
    w.outcomes["pretrain"] = _run_quiet(["pretrain", "-c", MOCO, *TINY, *data, "trainer.max_steps=5",
                                         f"run_dir={w.run}"])
    w.outcomes["evaluate"] = _run_quiet(["evaluate", str(w.run)])
    _damaged_runs(w)
    listing = root / "every-kind.txt"
    listing.write_text("".join(f"{videos / video_name(k)}\n" for k in VIDEO_KINDS))
    w.outcomes["check-videos"] = _run_quiet(["check-videos", str(listing), "--workers", "1", "--out", str(w.report)])
    for kind in ("flow", "motion-vectors", "motion-map", "reencode"):
        args = ["--frame-size", "32x32"] if kind != "reencode" else []
        source = ["--dataset", "csv", "--csv", str(csv), "--root", str(root)] if kind != "reencode" \
            else ["--root", str(videos)]
        w.outcomes[f"extract {kind}"] = _run_quiet(["extract", kind, *source, "--out", str(root / f"x-{kind}"),
                                                    "--workers", "1", *args])
    assert _run_quiet(["extract", "flow", "--dataset", "ucf101", "--root", str(bench), "--out", str(w.cache),
                       "--workers", "1", "--frame-size", "32x32"]).code == 0
    return w


def _run_quiet(argv: list[str]) -> Outcome:
    """``main(argv)`` with stdout and stderr captured by redirection (module fixtures get no capsys)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return Outcome(code, out.getvalue(), err.getvalue())


def _small_files(w: World) -> None:
    def put(name: str, text: str) -> None:
        path = w.root / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        w.files[name.replace(".", "_").replace("-", "_")] = path

    put("empty.yaml", "")
    put("bad.yaml", "trainer:\n  batch_size: [4\n  max_steps: 3\n")
    put("list.yaml", "- data\n- trainer\n")
    put("no-label.csv", "path\nHorizontalBounce/v_HorizontalBounce_g01_c01.avi\n")
    put("no-path.csv", "file,label\nHorizontalBounce/v_HorizontalBounce_g01_c01.avi,HorizontalBounce\n")
    put("a-file", "a file where a folder is expected\n")
    put("foreign/notes.txt", "someone else's folder\n")
    (w.root / "files" / "empty-dir").mkdir()
    w.files["empty_dir"] = w.root / "files" / "empty-dir"
    w.files["foreign"] = w.root / "files" / "foreign"
    w.files["missing"] = w.root / "files" / "does-not-exist"
    all_bad = w.root / "all-bad.csv"  # every row unreadable: a worker gives up on the first item
    all_bad.write_text("path,label\n" + "".join(f"{w.videos / video_name(k)},{i % 2}\n"
                                                for i, k in enumerate(UNREADABLE * 6)))
    w.files["all_bad_csv"] = all_bad


def _damaged_runs(w: World) -> None:
    """Copies of the finished run with one file damaged each."""
    damage = {
        "run_empty_config": ("config.yaml", lambda data: b""),
        "run_bad_yaml": ("config.yaml", lambda data: data + b"\ntrainer: [\n"),
        "run_truncated_weights": ("backbone.safetensors", lambda data: data[:int(len(data) * 0.3)]),
        "run_text_weights": ("backbone.safetensors", lambda data: b"not weights\n" * 50),
        "run_empty_weights": ("backbone.safetensors", lambda data: b""),
    }
    for name, (file, change) in damage.items():
        copy = w.root / name
        shutil.copytree(w.run, copy, ignore=shutil.ignore_patterns("checkpoints", "tb"))
        (copy / file).write_bytes(change((copy / file).read_bytes()))
        w.files[name] = copy


# -- the matrix ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    argv: str                        # the command line; {NAME}s are the world's paths
    code: int                        # the exit code
    says: tuple[str, ...]            # fragments of the one error line: the file or key, what to do
    protect: tuple[str, ...] = ("{RUN}",)  # what was written before and must come out unchanged
    absent: tuple[str, ...] = ()     # fragments that must not be on stderr


RESUME = "pretrain -c {MOCO} --resume run_dir={RUN}"  # an existing run, which no bad row may touch
X = "--workers 1 --out {CACHE}"  # an existing cache, which no bad row may touch

ROWS = {
    # pretrain: configs and keys
    "pretrain/missing-config": Row("pretrain -c {W}/nope.yaml --resume run_dir={RUN}", 2,
                                   ("nope.yaml", "not found", "check the path")),
    "pretrain/empty-config": Row("pretrain -c {empty_yaml} --resume run_dir={RUN}", 2,
                                 ("empty.yaml", "empty", "give a YAML mapping")),
    "pretrain/bad-yaml": Row("pretrain -c {bad_yaml} --resume run_dir={RUN}", 2,
                             ("bad.yaml", "cannot parse YAML at line 3", "expected ',' or ']'")),
    "pretrain/yaml-not-a-mapping": Row("pretrain -c {list_yaml} --resume run_dir={RUN}", 2,
                                       ("list.yaml", "must be a mapping")),
    "pretrain/unknown-key": Row(RESUME + " trainer.batchsize=4", 2, ("trainer.batchsize", "Did you mean")),
    "pretrain/wrong-type": Row(RESUME + " trainer.batch_size=four", 2,
                               ("trainer.batch_size", "'four'", "converted to Integer")),
    "pretrain/negative-batch-size": Row(RESUME + " trainer.batch_size=-3", 2,
                                        ("trainer.batch_size", "positive integer", "got -3",
                                         "e.g. trainer.batch_size=32"), absent=("learning rate",)),
    "pretrain/zero-learning-rate": Row(RESUME + " optim.lr=0", 2, ("optim.lr", "> 0", "got 0.0", "e.g. optim.lr=")),
    "pretrain/negative-steps": Row(RESUME + " trainer.max_steps=-2", 2, ("trainer.max_steps", "positive integer")),
    "pretrain/fraction-out-of-range": Row(RESUME + " data.max_bad_fraction=1.5", 2,
                                          ("data.max_bad_fraction", "[0, 1]", "e.g. data.max_bad_fraction=0.05")),
    "pretrain/zero-frame-size": Row(RESUME + " data.frame_size=[0,32]", 2, ("data.frame_size", "[H, W]")),
    "pretrain/list-key-given-scalar": Row(RESUME + " data.frame_size=32", 2,
                                          ("data.frame_size", "expects a list", "data.frame_size=[64,64]"),
                                          absent=("AnyNode",)),
    "pretrain/ks-given-scalar": Row(RESUME + " eval.ks=5", 2, ("eval.ks", "expects a list", "eval.ks=[1,5,")),
    "pretrain/unknown-precision": Row(RESUME + " trainer.precision=17", 2, ("trainer.precision", "one of", "auto")),
    "pretrain/negative-workers": Row(RESUME + " data.num_workers=-1", 2, ("data.num_workers", ">= 0")),
    "pretrain/method-value-out-of-range": Row(RESUME + " method.queue_size=-5", 2,
                                              ("method.queue_size", "positive integer")),
    "pretrain/method-unknown-key": Row(RESUME + " method.queue=5", 2, ("method", "queue", "queue_size")),
    "pretrain/not-key-value": Row(RESUME + " trainerbatch", 2, ("trainerbatch", "key=value")),
    "pretrain/run-exists": Row("pretrain -c {MOCO} run_dir={RUN}", 2, ("already holds a run", "--resume")),
    # pretrain: data
    "pretrain/missing-dir": Row(RESUME + " data.dataset=folder data.root={missing}", 2,
                                ("does-not-exist", "not found")),
    "pretrain/empty-dir": Row(RESUME + " data.dataset=folder data.root={empty_dir}", 2, ("empty-dir", "no videos")),
    "pretrain/empty-dir-ucf101": Row(RESUME + " data.root={empty_dir}", 2, ("classInd.txt", "split_dir")),
    "pretrain/file-where-dir-expected": Row(RESUME + " data.dataset=folder data.root={a_file}", 2,
                                            ("a-file", "is a file, not a folder")),
    "pretrain/csv-missing-column": Row(RESUME + " data.dataset=csv data.csv={no_label_csv}", 2,
                                       ("no-label.csv", "missing label", "path, label")),
    "pretrain/csv-missing": Row(RESUME + " data.dataset=csv data.csv={W}/nope.csv", 2, ("nope.csv", "not found")),
    "pretrain/too-many-bad-videos": Row(
        "pretrain -c {MOCO} " + " ".join(TINY) + " data.dataset=csv data.csv={CSV} data.test_csv={TEST_CSV} "
        "data.root={W} trainer.max_steps=5 run_dir={W}/too-many", 1,
        ("videos are unreadable", "data.max_bad_fraction=0.05", "bad_", "check-videos", "raise data.max_bad_fraction")),
    "pretrain/all-videos-bad-in-worker": Row(
        "pretrain -c {MOCO} " + " ".join(TINY) + " data.num_workers=1 data.dataset=csv data.csv={all_bad_csv} "
        "data.root={W} trainer.max_steps=2 run_dir={W}/all-bad", 1,
        ("in a row could not be read", "bad_", "check-videos"), absent=("Original Traceback", "DataLoader worker")),
    # evaluate
    "evaluate/missing-run-dir": Row("evaluate {missing}", 2, ("does-not-exist", "no such run directory",
                                                               "vidssl pretrain")),
    "evaluate/empty-dir": Row("evaluate {empty_dir}", 2, ("empty-dir", "no config.yaml", "vidssl pretrain")),
    "evaluate/file-where-dir-expected": Row("evaluate {a_file}", 2, ("a-file", "is a file")),
    "evaluate/no-run-dir": Row("evaluate eval.batch_size=4", 2, ("RUN_DIR", "--random")),
    "evaluate/unknown-network": Row("evaluate {RUN} --network nope", 2, ("--network", "'nope'", "backbone")),
    "evaluate/unknown-key": Row("evaluate {RUN} eval.kss=5", 2, ("eval.kss", "Did you mean")),
    "evaluate/wrong-type": Row("evaluate {RUN} eval.batch_size=many", 2, ("eval.batch_size", "'many'")),
    "evaluate/zero-batch-size": Row("evaluate {RUN} eval.batch_size=0", 2, ("eval.batch_size", "positive integer")),
    "evaluate/list-key-given-scalar": Row("evaluate {RUN} eval.ks=5", 2, ("eval.ks", "expects a list")),
    "evaluate/unknown-protocol": Row("evaluate {RUN} eval.protocol=clip", 2, ("eval.protocol", "video | clips", "got clip")),
    "evaluate/clip-pool-of-two": Row("evaluate {RUN} eval.clip_pool=[7,7]", 2, ("eval.clip_pool", "(T, H, W)")),
    "evaluate/test-split-of-csv": Row("evaluate {RUN} --test-split 2", 2, ("--test-split", "ucf101")),
    "evaluate/too-many-bad-videos": Row("evaluate {RUN} data.max_bad_fraction=0.05", 1,
                                        ("videos are unreadable", "data.max_bad_fraction=0.05", "bad_")),
    "evaluate/empty-config-in-run": Row("evaluate {run_empty_config}", 2, ("config.yaml", "empty"),
                                        protect=("{run_empty_config}",)),
    "evaluate/bad-yaml-in-run": Row("evaluate {run_bad_yaml}", 2, ("config.yaml", "cannot parse YAML"),
                                    protect=("{run_bad_yaml}",)),
    "evaluate/truncated-weights": Row("evaluate {run_truncated_weights}", 2,
                                      ("backbone.safetensors", "damaged"), protect=("{run_truncated_weights}",)),
    "evaluate/text-weights": Row("evaluate {run_text_weights}", 2, ("backbone.safetensors", "damaged"),
                                 protect=("{run_text_weights}",)),
    "evaluate/empty-weights": Row("evaluate {run_empty_weights}", 2, ("backbone.safetensors",),
                                  protect=("{run_empty_weights}",)),
    # finetune
    "finetune/missing-run-dir": Row("finetune {missing}", 2, ("does-not-exist", "vidssl pretrain")),
    "finetune/empty-dir": Row("finetune {empty_dir}", 2, ("empty-dir", "no config.yaml")),
    "finetune/zero-learning-rate": Row("finetune {RUN} finetune.lr=0", 2, ("finetune.lr", "> 0")),
    "finetune/negative-epochs": Row("finetune {RUN} finetune.epochs=-1", 2, ("finetune.epochs", "positive integer")),
    "finetune/list-key-given-scalar": Row("finetune {RUN} finetune.test_splits=1", 2,
                                          ("finetune.test_splits", "expects a list")),
    "finetune/unknown-key": Row("finetune {RUN} finetune.epoch=3", 2, ("finetune.epoch", "Did you mean")),
    "finetune/pretraining-key": Row("finetune {RUN} trainer.batch_size=4", 2, ("trainer.batch_size",
                                                                              "finetune.batch_size")),
    # compare
    "compare/unknown-method": Row("compare --methods nope --out {W}/compare1", 2, ("--methods", "'nope'", "recipes")),
    "compare/missing-config": Row("compare --methods moco -c {W}/nope.yaml --out {W}/compare2", 2,
                                  ("nope.yaml", "not found")),
    "compare/negative-batch-size": Row("compare --methods moco --out {W}/compare3 trainer.batch_size=-3", 2,
                                       ("trainer.batch_size", "positive integer")),
    "compare/same-method-twice": Row("compare --methods moco,moco --out {W}/compare4", 2, ("moco", "twice")),
    # check-videos
    "check-videos/missing": Row("check-videos {missing} --out {REPORT}", 2, ("does-not-exist", "no such folder"),
                                protect=("{REPORT}",)),
    "check-videos/empty-dir": Row("check-videos {empty_dir} --out {REPORT}", 2, ("empty-dir", "no videos"),
                                  protect=("{REPORT}",)),
    "check-videos/csv-missing-column": Row("check-videos {no_label_csv} --root {BENCH} --out {REPORT}", 2,
                                           ("no-label.csv", "missing label"), protect=("{REPORT}",)),
    "check-videos/csv-missing-path-column": Row("check-videos {no_path_csv} --root {BENCH} --out {REPORT}", 2,
                                                ("no-path.csv", "missing path"), protect=("{REPORT}",)),
    "check-videos/report-is-a-dir": Row("check-videos {BENCH}/Orbit --workers 1 --out {empty_dir}", 2,
                                        ("empty-dir: Is a directory", "folder stands where a file is expected"),
                                        protect=("{BENCH}", "{REPORT}"), absent=(".tmp-",)),
    # make-benchmark
    "make-benchmark/file-where-dir-expected": Row("make-benchmark {a_file} --preset tiny --workers 1", 2,
                                                  ("a-file", "is a file", "new or empty folder"),
                                                  protect=("{a_file}",)),
    "make-benchmark/foreign-folder": Row("make-benchmark {foreign} --preset tiny --workers 1", 2,
                                         ("foreign", "no benchmark.json", "empty or new folder"),
                                         protect=("{foreign}",)),
    "make-benchmark/other-seed": Row("make-benchmark {BENCH} --preset tiny --seed 3 --workers 1", 2,
                                     ("benchmark.json", "seed", "another folder"), protect=("{BENCH}",)),
    "make-benchmark/other-preset": Row("make-benchmark {BENCH} --preset quick --workers 1", 2,
                                       ("benchmark.json", "another folder"), protect=("{BENCH}",)),
    "make-benchmark/unknown-preset": Row("make-benchmark {W}/new-bench --preset huge --workers 1", 2,
                                         ("'huge'", "expected one of")),
    "make-benchmark/wrong-type": Row("make-benchmark {W}/new-bench --workers two", 2, ("--workers", "'two'")),
    # demo
    "demo/data-is-a-file": Row("demo --quick --data {a_file} --out {W}/demo1", 2, ("--data", "a-file", "is a file"),
                               protect=("{a_file}",)),
    "demo/data-foreign-folder": Row("demo --quick --data {foreign} --out {W}/demo2", 2,
                                    ("foreign", "no benchmark.json"), protect=("{foreign}",)),
    "demo/out-is-a-file": Row("demo --quick --data {BENCH} --out {a_file}", 2, ("--out", "a-file", "is a file"),
                              protect=("{a_file}", "{BENCH}")),
    "demo/unknown-method": Row("demo --quick --methods nope --out {W}/demo3", 2, ("--methods", "nope", "available")),
    "demo/zero-steps": Row("demo --steps 0 --out {W}/demo4", 2, ("--steps", "positive integer")),
    "demo/unknown-preset": Row("demo --preset nope --data {W}/demo5-data --out {W}/demo5", 2,
                               ("'nope'", "expected one of")),
}
for _kind in ("flow", "motion-vectors", "motion-map", "reencode"):
    _e = f"extract {_kind} " + ("" if _kind == "reencode" else "--frame-size 32x32 ")
    ROWS.update({
        f"extract-{_kind}/missing-dir": Row(_e + "--root {missing} " + X, 2, ("does-not-exist",),
                                            protect=("{CACHE}",)),
        f"extract-{_kind}/empty-dir": Row(_e + "--root {empty_dir} " + X, 2, ("empty-dir", "no videos"),
                                          protect=("{CACHE}",)),
        f"extract-{_kind}/file-where-dir-expected": Row(_e + "--root {a_file} " + X, 2, ("a-file", "is a file"),
                                                        protect=("{CACHE}",)),
        f"extract-{_kind}/out-is-a-file": Row(_e + "--root {BENCH} --dataset ucf101 --workers 1 --out {a_file}", 2,
                                              ("--out", "a-file", "is a file, not a folder"),
                                              protect=("{a_file}",)),
    })
    if _kind == "reencode":
        ROWS[f"extract-{_kind}/zero-size"] = Row(_e + "--size 0x40 --root {BENCH} " + X, 2,
                                                 ("--size", "positive"), protect=("{CACHE}",))
    else:
        ROWS[f"extract-{_kind}/csv-missing-column"] = Row(
            _e + "--dataset csv --csv {no_label_csv} --root {BENCH} " + X, 2, ("no-label.csv", "missing label"),
            protect=("{CACHE}",))
        ROWS[f"extract-{_kind}/bad-frame-size"] = Row(f"extract {_kind} --frame-size 32 --root {{BENCH}} " + X, 2,
                                                      ("--frame-size", "HxW"), protect=("{CACHE}",))


@pytest.mark.parametrize("name", list(ROWS))
def test_row(name, world, capsys):
    row = ROWS[name]
    command = row.argv.split()[0]
    protected = [Path(world.fmt(p)) for p in row.protect]
    before = snapshot(*protected)
    outcome = _run_row(world, row.argv, capsys)
    assert outcome.code == row.code, outcome.err
    line = error_line(outcome, command)
    for fragment in row.says:
        assert world.fmt(fragment) in line, (fragment, line)
    for fragment in row.absent:
        assert fragment not in outcome.err, (fragment, outcome.err)
    assert snapshot(*protected) == before, "files written before the row changed"


def _run_row(world: World, argv: str, capsys) -> Outcome:
    capsys.readouterr()
    try:
        code = main(world.fmt(argv).split())
    except SystemExit as exit_:  # argparse's own errors: usage line, then "vidssl CMD: error: ..."
        code = exit_.code
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


# -- every kind of bad video, through every command that reads videos ----------------------------

def _expected(command: str, kind: str) -> str:
    """What a job does with a video of ``kind``: "dropped" (missing from a catalog: it warns and
    leaves it out), "skipped" (unreadable: named, counted, listed, the job goes on), "damaged"
    (check-videos: readable, reported), "used" (its frames serve)."""
    if kind == "missing":  # check-videos reads a list of paths, where it is one more unreadable file
        return "skipped" if command == "check-videos" else "dropped"
    if kind in UNREADABLE:
        return "skipped"
    if command == "check-videos" and kind == "truncated":
        return "damaged"
    return "used"


KIND_ROWS = [(c, k) for c in ("pretrain", "evaluate", "check-videos", "extract flow", "extract motion-vectors",
                              "extract motion-map", "extract reencode") for k in VIDEO_KINDS
             if not (c == "extract reencode" and k == "missing")]  # reencode lists a folder: nothing to miss


@pytest.mark.parametrize("command,kind", KIND_ROWS, ids=[f"{c.replace(' ', '-')}/{k}" for c, k in KIND_ROWS])
def test_video_kind(command, kind, world):
    outcome = world.outcomes[command]
    name = video_name(kind)
    expected = _expected(command, kind)
    assert "Traceback" not in outcome.err, outcome.err
    # Pretraining and evaluation skip within data.max_bad_fraction (0.5 here); check-videos and
    # extract exit 1 when any file is unreadable, after doing every other one.
    assert outcome.code == (0 if command in ("pretrain", "evaluate") else 1), outcome.err
    warnings = [line for line in outcome.err.splitlines() if ": warning: " in line]
    if expected == "dropped":
        assert any(name in line and "missing and were dropped" in line for line in warnings), outcome.err
        return
    if command == "pretrain":
        summary = json.loads((world.run / "pretrain_summary.json").read_text())
        bad = {Path(p).name for p in summary["bad_videos"]}
        assert (name in bad) == (expected == "skipped"), summary["bad_videos"]
        if expected == "skipped":  # each named in one warning line as it is met
            assert any(name in line and "skipping unreadable video" in line for line in warnings), outcome.err
    elif command == "evaluate":
        left_out = [line for line in warnings if "left out" in line]
        assert any("within data.max_bad_fraction=0.5" in line for line in left_out), outcome.err
        assert any(name in line for line in left_out) == (expected == "skipped"), left_out
        assert json.loads((world.run / "eval.json").read_text())["test"]["R@1"] >= 0
    elif command == "check-videos":
        report = json.loads(world.report.read_text())
        bad = {Path(entry["path"]).name: entry["reason"] for entry in report["bad"]}
        damaged = {Path(entry["path"]).name: entry["reason"] for entry in report["damaged"]}
        assert (name in bad) == (expected == "skipped") and (name in damaged) == (expected == "damaged"), report
        if expected == "damaged":
            assert "cut off" in damaged[name]
        if kind == "huge":  # refused from its header, before any decoding
            assert "16000x16000" in bad[name] and "Mpixel" in bad[name]
        if kind == "missing":
            assert bad[name] == "file does not exist"
    else:
        what = command.split()[1]
        report = json.loads((world.root / f"x-{what}" / f"extract_{what}_rank0.json").read_text())
        failed = {Path(p).name: reason for p, reason in report["failed"].items()}
        assert (name in failed) == (expected == "skipped"), failed
        if expected == "skipped":
            assert name in failed[name]  # the reason names the file
            assert name in outcome.out  # and the command's summary lists it


# -- unreadable folders -------------------------------------------------------------------------

LOCKED_ROWS = {
    # (command line, the folder made unreadable: the dataset root or one class folder of it)
    "pretrain/unreadable-root": (RESUME + " data.dataset=folder data.root={L}", "{L}"),
    "pretrain/unreadable-class-folder": (RESUME + " data.dataset=folder data.root={L}", "{L}/Orbit"),
    "check-videos/unreadable-subfolder": ("check-videos {L} --workers 1 --out {REPORT}", "{L}/Orbit"),
    "extract-flow/unreadable-class-folder": ("extract flow --dataset folder --root {L} --frame-size 32x32 " + X,
                                             "{L}/Orbit"),
    "extract-reencode/unreadable-subfolder": ("extract reencode --root {L} " + X, "{L}/Orbit"),
}


@pytest.mark.parametrize("name", list(LOCKED_ROWS))
def test_unreadable_folder(name, world, capsys, monkeypatch):
    """A folder that cannot be listed fails the job naming it (exit 1), rather than a dataset
    silently losing the videos inside it (``os.walk`` and ``Path.rglob`` skip such folders)."""
    argv, locked = LOCKED_ROWS[name]
    data = world.root / "lockable"
    if not data.exists():
        for label in ("HorizontalBounce", "Orbit"):
            (data / label).mkdir(parents=True)
            for video in sorted((world.root / "good" / label).glob("*.avi"))[:2]:
                shutil.copy(video, data / label)
    locked = Path(world.fmt(locked.replace("{L}", str(data))))
    _make_unlistable(monkeypatch, locked)
    protected = [world.run, world.cache, world.report]
    before = snapshot(*protected)
    outcome = _run_row(world, argv.replace("{L}", str(data)), capsys)
    assert outcome.code == 1, outcome.err
    line = error_line(outcome, argv.split()[0])
    assert f"{locked}: Permission denied" in line and "check its permissions" in line, line
    assert snapshot(*protected) == before


def _make_unlistable(monkeypatch, folder: Path) -> None:
    """``os.scandir`` / ``os.listdir`` (what os.walk, Path.iterdir and rglob use) refuse ``folder``
    as they would a chmod 000 folder for a user other than root."""
    target = os.path.realpath(folder)

    def refusing(real):
        def call(path=".", *args, **kwargs):
            if not isinstance(path, int) and os.path.realpath(os.fspath(path)) == target:
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "scandir", refusing(os.scandir))
    monkeypatch.setattr(os, "listdir", refusing(os.listdir))


# -- -v, and the real entry point ---------------------------------------------------------------

def test_verbose_shows_the_traceback(world):
    """-v re-raises: the error itself, for a bug report."""
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        main(["-v", "evaluate", str(world.files["missing"])])


SUBPROCESS_ROWS = {
    # What a terminal gets: Lightning's own logging, warnings from DataLoader worker processes.
    "pretrain/too-many-bad-videos-with-workers": (
        "pretrain -c {MOCO} " + " ".join(TINY) + " data.num_workers=1 data.dataset=csv data.csv={CSV} "
        "data.test_csv={TEST_CSV} data.root={W} trainer.max_steps=5 run_dir={W}/sub-too-many", 1,
        ("videos are unreadable", "data.max_bad_fraction=0.05")),
    "evaluate/too-many-bad-videos": ("evaluate {RUN} data.max_bad_fraction=0.05", 1,
                                     ("videos are unreadable", "data.max_bad_fraction=0.05")),
    "check-videos/csv-missing-column": ("check-videos {no_label_csv} --out {REPORT}", 2,
                                        ("no-label.csv", "missing label")),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SUBPROCESS_ROWS))
def test_row_in_a_subprocess(name, world):
    argv, code, says = SUBPROCESS_ROWS[name]
    before = snapshot(world.run, world.report)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "vidssl.cli", *world.fmt(argv).split()], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=240)
    outcome = Outcome(done.returncode, done.stdout, done.stderr)
    assert outcome.code == code, outcome.err
    line = error_line(outcome, argv.split()[0])
    for fragment in says:
        assert fragment in line, (fragment, line)
    assert snapshot(world.run, world.report) == before


# -- errors that arrive wrapped -----------------------------------------------------------------

def _reraised_from_worker(error: Exception) -> Exception:
    """``error`` as torch's DataLoader hands a worker's exception to the main process: a new
    exception (of its type when that takes one message, else RuntimeError) holding the traceback."""
    from torch._utils import ExceptionWrapper

    try:
        raise error
    except Exception:
        wrapper = ExceptionWrapper(sys.exc_info(), where="in DataLoader worker process 0")
    try:
        wrapper.reraise()
    except Exception as reraised:
        return reraised
    raise AssertionError("reraise() raised nothing")


def test_errors_from_workers_and_chains_are_unwrapped():
    from vidssl import cli_errors
    from vidssl.data.dataset import TooManyBadVideos
    from vidssl.video.reader import VideoReadError

    # VideoReadError takes (path, reason): torch can only re-raise it as a RuntimeError.
    wrapped = _reraised_from_worker(VideoReadError("/data/a.mp4", "file is empty (0 bytes)"))
    assert type(wrapped) is RuntimeError and "Original Traceback" in str(wrapped)
    assert cli_errors.explain(wrapped) == (1, "/data/a.mp4: file is empty (0 bytes)")
    wrapped = _reraised_from_worker(TooManyBadVideos("3 of 10 videos are unreadable"))
    assert cli_errors.explain(wrapped) == (1, "3 of 10 videos are unreadable")
    # Raised while handling, or from, the error that says what is wrong (Lightning's own handlers).
    try:
        try:
            raise ValueError("trainer.batch_size: must be a positive integer")
        except ValueError as cause:
            raise RuntimeError("an exception occurred in a callback") from cause
    except RuntimeError as outer:
        assert cli_errors.explain(outer) == (2, "trainer.batch_size: must be a positive integer")
    # A full disk names the file and says what to do; anything unknown says how to get the traceback.
    code, message = cli_errors.explain(OSError(errno.ENOSPC, "No space left on device", "/runs/x/last.ckpt"))
    assert code == 1 and message.startswith("/runs/x/last.ckpt: No space left on device") and "free" in message
    code, message = cli_errors.explain(ZeroDivisionError("division by zero"))
    assert code == 1 and "unexpected ZeroDivisionError" in message and "-v" in message


def test_interrupt_is_one_line(monkeypatch, capsys):
    import vidssl.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli._COMMANDS, "check-videos", interrupted)
    assert main(["check-videos", "anything"]) == 130
    assert capsys.readouterr().err == "vidssl check-videos: interrupted\n"
