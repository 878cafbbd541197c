"""Faults (issue #14): killed jobs resume to the same result, a full disk loses nothing, DDP ranks agree.

- SIGKILL during ``pretrain`` at random steps, then ``--resume``: the final weights, optimiser state
  and loss curve equal an uninterrupted run's bit for bit (CPU). A killed ``demo`` reruns to the
  end and reuses its finished rows; a killed ``make-benchmark`` / ``extract`` never leaves a
  half-written file that is read back, and the rerun does only what is missing.
- A full disk (simulated: the low-level write raises ENOSPC part-way; no tmpfs can be mounted
  here) while writing a checkpoint, a cache file, weights or results: the previous file stays
  byte-identical and loadable, and the error names the file and says the disk is full.
- Under DDP (2 gloo processes) a rank that meets bad videos the other never reads stops both with
  TooManyBadVideos at the same step; a crash on one rank ends both, the cause named; 2 processes
  train as 1 process does at the same global batch.

Kill points are drawn at random; the seed is in every failure message (VIDSSL_FAULT_SEED=N replays).
"""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_overrides
from vidssl.config import load_config
from vidssl.demo import demo_config_dir

SEED = int(os.environ.get("VIDSSL_FAULT_SEED", time.time_ns() % 100_000))
HERE = Path(__file__).resolve().parent
MOCO = {"method.queue_size": 16, "method.proj_hidden": 16, "model.width": 4, "trainer.threads": 1}


# -- helpers ------------------------------------------------------------------------------------------


def _vidssl(*args: str) -> list[str]:
    return [sys.executable, "-m", "vidssl.cli", *map(str, args)]


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    # Its own process group, so the kill also reaches its data-loader workers.
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 240.0) -> None:
    """SIGKILL ``proc`` (and its group) as soon as ``ready()``; fails if it ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"[seed {SEED}] the process ended (code {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"[seed {SEED}] {what} did not happen within {timeout} s")
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL


def _finish(cmd: list[str], log: Path, timeout: float = 240.0) -> None:
    proc = subprocess.run(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, timeout=timeout)
    assert proc.returncode == 0, f"[seed {SEED}] {' '.join(cmd)} failed:\n{log.read_text()[-3000:]}"


def _metrics(path: Path) -> list[dict]:
    """metrics.jsonl's lines (a torn last line, which a kill could leave, is not counted)."""
    lines = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
    return lines


def _losses_by_step(path: Path) -> dict[int, float]:
    return {line["step"]: line["loss"] for line in _metrics(path)}  # replayed steps: the later line wins


def _stamps(paths) -> dict[Path, tuple[int, int]]:
    return {Path(p): (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in paths}


def _complete(root: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` under ``root`` but the temporaries of writes in progress."""
    return sorted(p for p in root.glob(pattern) if not p.name.startswith(".tmp-"))


def _temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".tmp-*"))


def _assert_same_training_state(a: Path, b: Path) -> None:
    """Two run directories hold bit-identical weights, buffers (MoCo's queue) and optimiser state."""
    wa, wb = load_file(a / "backbone.safetensors"), load_file(b / "backbone.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"[seed {SEED}] backbone.safetensors {key} differs"
    ca, cb = (torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (a, b))
    assert ca["global_step"] == cb["global_step"]
    assert ca["state_dict"].keys() == cb["state_dict"].keys()
    for key in ca["state_dict"]:
        if key == "train_seconds":  # wall-clock time spent training, not training state
            continue
        assert torch.equal(ca["state_dict"][key], cb["state_dict"][key]), f"[seed {SEED}] state_dict {key} differs"
    for sa, sb in zip(ca["optimizer_states"][0]["state"].values(), cb["optimizer_states"][0]["state"].values()):
        for key in sa:
            assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), f"[seed {SEED}] optimiser {key}"


# -- SIGKILL and resume -------------------------------------------------------------------------------


@pytest.mark.slow
def test_pretrain_killed_twice_at_random_steps_resumes_to_identical_weights(tiny_benchmark, tmp_path):
    from vidssl.train.run import pretrain

    extra = {**MOCO, "trainer.max_steps": 12, "trainer.checkpoint_every_n_steps": 3}
    whole = pretrain(load_config([demo_config_dir() / "moco.yaml"], tiny_overrides(tiny_benchmark, tmp_path / "whole",
                                                                                    **extra)))
    run, log = tmp_path / "killed", tmp_path / "killed.log"
    # With a data-loader worker (the uninterrupted run had none): items must not depend on who decodes them.
    cmd = _vidssl("pretrain", "-c", demo_config_dir() / "moco.yaml",
                  *tiny_overrides(tiny_benchmark, run, **extra, **{"data.num_workers": 1}))
    rng = random.Random(SEED)
    # Checkpoints are written after the step's metrics line, so from step 4 on step 3's exists.
    first = rng.randint(4, 7)
    _kill_when(_start(cmd, log), lambda: any(m["step"] >= first for m in _metrics(run / "metrics.jsonl")),
               f"step {first}")
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "pretrain_summary.json").exists()

    second, seen = rng.randint(first + 1, 11), len(_metrics(run / "metrics.jsonl"))
    _kill_when(_start(cmd + ["--resume"], log),
               lambda: any(m["step"] >= second for m in _metrics(run / "metrics.jsonl")[seen:]),
               f"step {second} of the resumed run")
    _finish(cmd + ["--resume"], log)

    _assert_same_training_state(whole, run)
    assert _losses_by_step(run / "metrics.jsonl") == _losses_by_step(whole / "metrics.jsonl"), f"[seed {SEED}]"
    assert json.loads((run / "pretrain_summary.json").read_text())["steps"] == 12
    assert not _temporaries(run), f"[seed {SEED}] temporary files left: {_temporaries(run)}"


@pytest.mark.slow
def test_finetune_killed_at_a_random_step_resumes_to_identical_weights(tiny_benchmark, tmp_path):
    from vidssl.cli import main

    run = tmp_path / "run"
    assert main(["pretrain", "-c", str(demo_config_dir() / "supervised.yaml"),
                 *tiny_overrides(tiny_benchmark, run, **{"model.width": 4, "trainer.max_steps": 2})]) == 0
    # 32 train videos at batch 8: 4 steps an epoch, 2 epochs, the test list scored after each.
    fast = ["finetune.epochs=2", "finetune.batch_size=8", "finetune.num_clips=2", "finetune.test_batch_size=16",
            "trainer.checkpoint_every_n_steps=2", "trainer.log_every_n_steps=1", "trainer.progress=false",
            "trainer.threads=1"]
    whole, killed, log = tmp_path / "whole", tmp_path / "killed", tmp_path / "finetune.log"
    assert main(["finetune", str(run), "--out", str(whole), *fast]) == 0
    cmd = _vidssl("finetune", run, "--out", killed, *fast)
    at = random.Random(SEED).randint(3, 7)  # after the step-2 checkpoint; maybe while scoring epoch 1
    _kill_when(_start(cmd, log), lambda: any(m["step"] >= at for m in _metrics(killed / "metrics.jsonl")),
               f"fine-tuning step {at}")
    assert main(["finetune", str(run), "--out", str(killed), *fast, "--resume"]) == 0

    _assert_same_training_state(whole, killed)
    a, b = load_file(whole / "classifier.safetensors"), load_file(killed / "classifier.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), f"[seed {SEED}] classifier differs"
    ra, rb = (json.loads((r / "finetune.json").read_text()) for r in (whole, killed))
    assert rb["status"] == "done" and rb["final"]["test"] == ra["final"]["test"], f"[seed {SEED}]"
    assert not _temporaries(killed)


def test_resume_replays_dropout_drawn_from_the_global_generator(tiny_benchmark, tmp_path):
    # Supervised's classifier dropout draws from torch's global generator, which no checkpoint holds:
    # each step's forward runs with it seeded from (seed, step, rank), so a resumed run replays it.
    import lightning as L

    from vidssl.train.run import pretrain

    class Crash(RuntimeError):
        pass

    class CrashBefore(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if int(pl_module.batches_seen) == 3:
                raise Crash("simulated crash before batch 3")  # after the step-2 checkpoint

    def cfg(run):
        return load_config([demo_config_dir() / "supervised.yaml"], tiny_overrides(
            tiny_benchmark, run, **{"method.dropout": 0.5, "model.width": 4, "trainer.max_steps": 4}))

    whole = pretrain(cfg(tmp_path / "whole"))
    with pytest.raises(Crash):
        pretrain(cfg(tmp_path / "split"), callbacks=[CrashBefore()])
    torch.manual_seed(1234)  # the global generator is elsewhere now, as in a new process
    resumed = pretrain(cfg(tmp_path / "split"), resume=True)
    _assert_same_training_state(whole, resumed)


@pytest.mark.slow
def test_killed_demo_reruns_to_the_end_and_reuses_finished_rows(tiny_benchmark, tmp_path):
    out, data, log = tmp_path / "demo", tmp_path / "bench", tmp_path / "demo.log"
    shutil.copytree(tiny_benchmark, data)
    overrides = ["model.width=4", "trainer.batch_size=4", "trainer.max_steps=8", "trainer.checkpoint_every_n_steps=2",
                 "trainer.log_every_n_steps=1", "data.num_workers=0", "trainer.progress=false", "eval.num_clips=1",
                 "eval.batch_size=16", "data.frame_size=[32,32]", "augment.crop_size=28", "trainer.threads=1"]
    script = ("import sys; from vidssl.demo import run_demo; "
              "run_demo(sys.argv[1], sys.argv[2], methods=['scene-only', 'supervised'], preset='tiny', "
              "extra_overrides=sys.argv[3:])")
    cmd = [sys.executable, "-c", script, str(out), str(data), *overrides]
    metrics = out / "supervised" / "metrics.jsonl"
    # Killed mid-training of the supervised row, after its step-2 checkpoint (steps 3.. are logged after it).
    _kill_when(_start(cmd, log), lambda: any(m["step"] >= 3 for m in _metrics(metrics)), "supervised step 3")
    from vidssl.eval.compare import ROW_FILE  # a scored row's file

    done = _stamps([out / "scene-only" / ROW_FILE])
    killed_at = len(_metrics(metrics))
    _finish(cmd, log)

    assert _stamps(done) == done  # the finished row was reused, not recomputed
    steps = [m["step"] for m in _metrics(metrics)]
    assert steps[killed_at] > 1, "the supervised row restarted from scratch instead of resuming"
    assert steps[-1] == 8 and json.loads((out / "supervised" / "pretrain_summary.json").read_text())["steps"] == 8
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["decorrelated"]) == {"scene-only", "supervised"}


@pytest.mark.slow
def test_killed_make_benchmark_leaves_no_half_file_and_the_rerun_adds_only_the_missing(tmp_path):
    from vidssl.data.catalogs import folder
    from vidssl.data.synthetic import generate_benchmark
    from vidssl.video.check import collect_video_paths

    root, log = tmp_path / "bench", tmp_path / "bench.log"
    # 48-frame videos: slow enough (~20 ms each) to be caught part-way.
    script = ("import sys; from vidssl.data.synthetic import generate_benchmark; "
              "generate_benchmark(sys.argv[1], 'tiny', seed=0, workers=1, progress=False, num_frames=48)")
    _kill_when(_start([sys.executable, "-c", script, str(root)], log),
               lambda: len(_complete(root, "*/*.avi")) >= 16, "16 videos")
    finished = _complete(root, "*/*.avi")
    before = _stamps(finished)
    assert json.loads((root / "benchmark.json").read_text())["status"] == "generating"
    # A video being written when the kill came is a hidden temporary: no reader lists it.
    planted = root / finished[0].parent.name / ".tmp-999999-v_Planted_g01_c01.avi"
    planted.write_bytes(b"half a video")
    listed = set(collect_video_paths(root)) | {r.path for r in folder(root).records}
    assert not any(Path(p).name.startswith(".tmp-") for p in listed)

    generate_benchmark(root, "tiny", seed=0, workers=1, progress=False, num_frames=48)
    assert {p: s for p, s in _stamps(finished).items()} == before  # complete videos untouched
    assert not _temporaries(root)
    reference = generate_benchmark(tmp_path / "reference", "tiny", seed=0, workers=1, progress=False, num_frames=48)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != "benchmark.json")
    assert files == sorted(p.relative_to(reference) for p in reference.rglob("*")
                           if p.is_file() and p.name != "benchmark.json")
    for rel in files:
        assert (root / rel).read_bytes() == (reference / rel).read_bytes(), rel
    assert json.loads((root / "benchmark.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_killed_extract_leaves_no_half_file_and_the_rerun_computes_only_the_missing(tiny_benchmark, tmp_path):
    from vidssl.cli import main
    from vidssl.video.cache import SignalCache

    cache, log = tmp_path / "cache", tmp_path / "extract.log"
    args = ["extract", "flow", "--dataset", "ucf101", "--root", str(tiny_benchmark), "--out", str(cache),
            "--workers", "1", "--frame-size", "64x64"]
    _kill_when(_start(_vidssl(*args), log), lambda: len(_complete(cache, "**/*.npz")) >= 8, "8 flow files")
    finished = _complete(cache, "**/*.npz")
    before = _stamps(finished)

    assert main(args) == 0
    report = json.loads((cache / "extract_flow_rank0.json").read_text())
    assert report["skipped"] == len(finished) and report["done"] == report["total"] - len(finished) > 0
    assert _stamps(finished) == before  # what was complete is neither recomputed nor rewritten
    store = SignalCache(cache, "flow", tiny_benchmark)
    outputs = _complete(cache, "**/*.npz")
    assert len(outputs) == report["total"]
    for path in outputs:  # every file there is whole
        with np.load(path, allow_pickle=False) as npz:
            assert npz.files
    assert store.load(str(tiny_benchmark / Path(outputs[0]).relative_to(cache / "flow").with_suffix(""))) is not None


# -- a full disk --------------------------------------------------------------------------------------


class FillsUp:
    """A file whose disk fills after ``budget`` bytes: the write that crosses it writes part, then
    raises OSError(ENOSPC), as write(2) on a full disk does."""

    def __init__(self, f, budget: int):
        self.f, self.budget = f, budget

    def write(self, data):
        if len(data) > self.budget:
            self.f.write(data[: self.budget])
            self.budget = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _fill_disk(monkeypatch, budget: int = 100, only: str = "") -> None:
    """Every atomic write to a file whose name contains ``only`` meets a full disk after ``budget`` bytes."""
    import vidssl.io

    real = open

    def opener(path, mode="r", *args, **kwargs):
        f = real(path, mode, *args, **kwargs)
        return FillsUp(f, budget) if only in Path(path).name else f

    monkeypatch.setattr(vidssl.io, "_open", opener)


def _write_checkpoint(path, version):
    from vidssl.train.callbacks import AtomicCheckpointIO

    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.arange(10000.0) + version},
                                          "global_step": version}, path)


def _write_cache_file(path, version):
    from vidssl.video.cache import SignalCache

    SignalCache(path.parent.parent, "flow", path.parent).save(
        path.parent / "clip.avi", {"flow": np.full(20000, version, dtype=np.uint8)})


def _write_weights(path, version):
    from vidssl.models import build_backbone
    from vidssl.train.export import save_backbone

    torch.manual_seed(version)
    save_backbone(build_backbone("r3d", width=4, depth=10), path)


def _write_results(path, version):
    from vidssl.io import write_json_atomic

    write_json_atomic(path, {"split1": {"R@1": 12.5 + version, "linear_top1": 30.0}, "pad": list(range(500))})


def _load(path):
    """What a reader gets from the file (raises if it is damaged)."""
    if path.suffix == ".ckpt":
        return torch.load(path, weights_only=True)["global_step"]
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return int(npz["flow"][0])
    if path.suffix == ".safetensors":
        return float(load_file(path)["stages.p1.0.weight"].sum())
    return json.loads(path.read_text())["split1"]["R@1"]


@pytest.mark.parametrize("write,name", [(_write_checkpoint, "last.ckpt"), (_write_cache_file, "clip.avi.npz"),
                                        (_write_weights, "backbone.safetensors"), (_write_results, "eval.json")])
def test_a_full_disk_keeps_the_previous_file_and_says_so(write, name, tmp_path, monkeypatch):
    from vidssl.io import DiskFullError

    path = tmp_path / "flow" / name
    write(path, 1)
    old, loaded = path.read_bytes(), _load(path)
    write(path, 2)
    assert _load(path) != loaded  # (a second version differs from the first, so the check below means something)
    write(path, 1)
    _fill_disk(monkeypatch)
    with pytest.raises(DiskFullError, match="disk full") as caught:
        write(path, 2)
    assert str(path) in str(caught.value) and caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == old and _load(path) == loaded  # byte-identical and loadable
    assert not _temporaries(tmp_path)  # the partial temporary is removed


@pytest.mark.slow
def test_pretrain_on_a_full_disk_fails_in_one_line_and_resumes_once_there_is_space(tiny_benchmark, tmp_path,
                                                                                   monkeypatch, capsys):
    from vidssl.cli import main
    from vidssl.train.run import pretrain

    extra = {**MOCO, "trainer.max_steps": 6, "trainer.checkpoint_every_n_steps": 2}
    whole = pretrain(load_config([demo_config_dir() / "moco.yaml"], tiny_overrides(tiny_benchmark, tmp_path / "whole",
                                                                                    **extra)))
    run = tmp_path / "full"
    args = ["pretrain", "-c", str(demo_config_dir() / "moco.yaml"), *tiny_overrides(tiny_benchmark, run, **extra)]

    import vidssl.train.callbacks as callbacks

    saves, real_save = [], callbacks.AtomicCheckpointIO.save_checkpoint

    def save_then_fill(self, checkpoint, path, storage_options=None):  # the disk fills after the first checkpoint
        saves.append(path)
        if len(saves) == 2:
            _fill_disk(monkeypatch, budget=4096, only=".ckpt")
        return real_save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(callbacks.AtomicCheckpointIO, "save_checkpoint", save_then_fill)
    assert main(args) == 1  # the job ran and the machine failed it (vidssl.cli_errors)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    line = err.splitlines()[-1]  # (Lightning's own INFO lines come before it)
    assert line.startswith("vidssl pretrain: error: ") and "disk full" in line, err
    assert str(run / "checkpoints" / "last.ckpt") in line
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2  # the previous one

    monkeypatch.undo()  # space again
    assert main(args + ["--resume"]) == 0
    _assert_same_training_state(whole, run)


# -- DDP ---------------------------------------------------------------------------------------------


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def _ddp(out: Path, method: str, overrides: list[str], *extra: str, timeout: float = 240.0):
    """Run tests/train/ddp_run.py (2 gloo processes); returns (exit code, output, per-rank outcomes)."""
    cmd = [sys.executable, str(HERE / "ddp_run.py"), str(out / "ranks"), method, *extra, *overrides,
           "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    ranks = {int(p.stem[4:]): json.loads(p.read_text()) for p in (out / "ranks").glob("rank*.json")}
    deadline = time.monotonic() + 30  # rank 1 is rank 0's child: it is gone soon after
    while any(_running(r["pid"]) for r in ranks.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(r["pid"]) for r in ranks.values()), "a rank process is still running"
    return proc.returncode, proc.stdout + proc.stderr, ranks


def _rank_only_victims(catalog, rank: int, steps: int, seed: int = 0) -> tuple[list[int], int]:
    """Videos that ``rank`` reads in the first ``steps`` steps (batch 4 per rank, 2 ranks) and the
    other rank never does, and how many reads of them ``rank`` makes."""
    from vidssl.train.sampler import ResumableSampler

    def seen(r):
        it = iter(ResumableSampler(len(catalog), 4, seed=seed, rank=r, world_size=2))
        return [next(it)[0] for _ in range(4 * steps)]

    mine, other = seen(rank), seen(1 - rank)
    victims = sorted(set(mine) - set(other))
    return victims, sum(i in victims for i in mine)


@pytest.mark.slow
def test_ddp_bad_videos_on_one_rank_stop_both_ranks_with_the_cause(tiny_benchmark, tmp_path):
    from vidssl.data.catalogs import ucf101

    root = tmp_path / "bench"
    shutil.copytree(tiny_benchmark, root)
    catalog = ucf101(root, split=1, subset="train")
    victims, _ = _rank_only_victims(catalog, rank=1, steps=8)
    assert len(victims) >= 3, victims  # more than 5% of the 32 videos, all of them read by rank 1 alone
    for i in victims:
        path = Path(catalog.records[i].path)
        path.write_bytes(path.read_bytes()[:200])
    overrides = tiny_overrides(root, tmp_path / "run", **{**MOCO, "trainer.max_steps": 8, "data.max_bad_fraction": 0.05,
                                                         "method.queue_size": 48})
    code, output, ranks = _ddp(tmp_path, "moco", overrides)
    assert code != 0
    assert sorted(ranks) == [0, 1], output[-3000:]
    names = {Path(catalog.records[i].path).name for i in victims}
    for rank in (0, 1):
        # Rank 0 read none of these files, yet it stops with the same error naming them: the decision was
        # agreed, instead of rank 1 raising alone while rank 0 waits in the gradient all-reduce.
        assert ranks[rank]["error"] == "TooManyBadVideos", (rank, ranks[rank], output[-3000:])
        assert "data.max_bad_fraction" in ranks[rank]["message"]
        assert any(name in ranks[rank]["message"] for name in names), ranks[rank]["message"]
    assert ranks[0]["message"] == ranks[1]["message"]
    assert not (tmp_path / "run" / "pretrain_summary.json").exists()


@pytest.mark.slow
def test_ddp_crash_on_one_rank_ends_both_with_the_cause_named(tiny_benchmark, tmp_path):
    overrides = tiny_overrides(tiny_benchmark, tmp_path / "run", **{**MOCO, "trainer.max_steps": 8,
                                                                   "method.queue_size": 48})
    code, output, ranks = _ddp(tmp_path, "moco", overrides, "--crash-rank", "1", "--crash-step", "2")
    assert code != 0  # rank 0 ended too (Lightning's process observer kills it, or the collective fails)
    assert ranks[1]["error"] == "RuntimeError" and "injected crash on rank 1" in ranks[1]["message"]
    assert "injected crash on rank 1 before batch 2" in output  # what the user sees names the cause
    assert not (tmp_path / "run" / "pretrain_summary.json").exists()


@pytest.mark.slow
def test_ddp_two_processes_train_as_one_at_the_same_global_batch(tiny_benchmark, tmp_path):
    # 2 processes x 4 clips must train as 1 process x 8 clips, up to float summation order. That checks
    # the data split, gradient averaging, the lr scaling for the global batch, the schedule's steps
    # per epoch and the per-item randomness (keyed on the video, not the process). It needs a method
    # whose clips do not interact: supervised with batch norm on running statistics (CPU DDP has no
    # SyncBatchNorm; with per-process batch statistics the two differ by design), and an augmentation
    # that draws nothing (full-frame crop, no flip or colour), since each process has its own stream.
    import ddp_run  # noqa: F401  (registers supervised-fixed-norm)

    from vidssl.train.run import pretrain

    plain = {"method.name": "supervised-fixed-norm", "model.width": 4, "trainer.max_steps": 4,
             "trainer.threads": 1, "augment.crop_size": 32, "augment.scale": "[1.0,1.0]", "augment.hflip_p": 0.0,
             "augment.jitter_p": 0.0, "augment.gray_p": 0.0, "optim.lr": 0.01}
    cfg = load_config([demo_config_dir() / "supervised.yaml"],
                      tiny_overrides(tiny_benchmark, tmp_path / "one", **plain, **{"trainer.batch_size": 8}))
    start = pretrain_start_weights(cfg)
    one = pretrain(cfg)
    code, output, _ = _ddp(tmp_path, "supervised", tiny_overrides(tiny_benchmark, tmp_path / "two", **plain))
    assert code == 0, output[-3000:]
    two = tmp_path / "two"
    s1, s2 = (json.loads((r / "pretrain_summary.json").read_text()) for r in (one, two))
    assert (s1["lr"], s1["steps"], s1["steps_per_epoch"]) == (s2["lr"], s2["steps"], s2["steps_per_epoch"])
    assert s2["world_size"] == 2
    w1, w2 = load_file(one / "backbone.safetensors"), load_file(two / "backbone.safetensors")
    moved = max(float((w1[k] - start[k]).abs().max()) for k in w1 if w1[k].is_floating_point())
    assert moved > 1e-3  # the runs trained: a match is not two untouched initialisations
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-5, msg=key)


def pretrain_start_weights(cfg) -> dict[str, torch.Tensor]:
    """The backbone a run of ``cfg`` starts from (pretrain seeds everything before building it)."""
    import lightning as L

    from vidssl.methods.base import backbone_spec

    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    return {k: v.clone() for k, v in backbone_spec(cfg.model).validate().build().state_dict().items()}
