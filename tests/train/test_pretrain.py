"""The trainer end to end on the tiny benchmark: run directory, resume, bad videos, precision."""
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_overrides
from vidssl.config import load_config
from vidssl.demo import demo_config_dir
from vidssl.train.run import pretrain, resolve_precision


class Crash(RuntimeError):
    pass


class CrashAt(L.Callback):
    """Simulates a killed job: raises before batch ``n`` (after the step-n checkpoint)."""

    def __init__(self, n):
        self.n = n

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if int(pl_module.batches_seen) == self.n:
            raise Crash(f"simulated crash at batch {self.n}")


def _cfg(root, run_dir, method="moco", **extra):
    extra = {"method.queue_size": 16, "method.proj_hidden": 16, **extra} if method == "moco" else extra
    return load_config([demo_config_dir() / f"{method}.yaml"], tiny_overrides(root, run_dir, **extra))


def test_run_directory_is_complete(tiny_benchmark, tmp_path):
    run = pretrain(_cfg(tiny_benchmark, tmp_path / "run"))
    for name in ("config.yaml", "checkpoints/last.ckpt", "backbone.safetensors", "metrics.jsonl",
                 "pretrain_summary.json"):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    summary = json.loads((run / "pretrain_summary.json").read_text())
    assert summary["steps"] == 4 and summary["skipped_steps"] == 0 and summary["bad_videos"] == []
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(line["loss"])) for line in lines)
    # Plain backbone state-dict names: loadable into a fresh backbone without prefixes.
    weights = load_file(run / "backbone.safetensors")
    assert not any(k.startswith(("method.", "backbone.")) for k in weights)
    # A finished run is never overwritten by accident.
    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(_cfg(tiny_benchmark, tmp_path / "run"))


def test_resume_continues_the_same_run(tiny_benchmark, tmp_path):
    whole = pretrain(_cfg(tiny_benchmark, tmp_path / "whole"))
    cfg = _cfg(tiny_benchmark, tmp_path / "split")
    with pytest.raises(Crash):
        pretrain(cfg, callbacks=[CrashAt(2)])
    assert (tmp_path / "split" / "checkpoints" / "last.ckpt").is_file()
    resumed = pretrain(cfg, resume=True)
    a, b = load_file(whole / "backbone.safetensors"), load_file(resumed / "backbone.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 4


def test_resume_without_checkpoint_is_a_clear_error(tiny_benchmark, tmp_path):
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        pretrain(_cfg(tiny_benchmark, tmp_path / "none"), resume=True)


def test_bad_video_is_skipped_and_reported(tiny_benchmark, tmp_path):
    import shutil

    root = tmp_path / "bench"
    shutil.copytree(tiny_benchmark, root)
    from vidssl.data.catalogs import ucf101

    victim = Path(ucf101(root, split=1, subset="train").records[0].path)
    victim.write_bytes(victim.read_bytes()[:200])  # truncated
    run = pretrain(_cfg(root, tmp_path / "run", method="supervised", **{"data.max_bad_fraction": 0.5,
                                                                          "trainer.max_steps": 8}))
    summary = json.loads((run / "pretrain_summary.json").read_text())
    assert summary["steps"] == 8
    # 8 steps of 4 cover the 32-video train list once, so the victim was met exactly once.
    assert [p.rsplit("/", 1)[-1] for p in summary["bad_videos"]] == [victim.name]


def test_precision_auto():
    assert resolve_precision("32-true", "cpu") == "32-true"
    assert resolve_precision("auto", "cpu") in ("32-true", "bf16-mixed")
