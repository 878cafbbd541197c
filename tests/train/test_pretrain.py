"""The trainer end to end on the tiny benchmark: run directory, resume, bad videos, precision."""
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from conftest import Crash, CrashAt, tiny_overrides
from vidssl.config import load_config
from vidssl.demo import demo_config_dir
from vidssl.train.run import pretrain, resolve_precision


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


@pytest.mark.parametrize("native,expected", [(False, "16-mixed"), (True, "bf16-mixed")])
def test_precision_auto_on_gpus_skips_emulated_bf16(monkeypatch, native, expected):
    # A V100 / T4: torch reports bf16 "supported" because it can emulate it, but not natively.
    def is_bf16_supported(including_emulation=True):
        return native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert resolve_precision("auto", "gpu") == expected
    assert resolve_precision("auto", "auto") == expected
    assert resolve_precision("16-mixed", "gpu") == "16-mixed"


def test_world_size_comes_from_the_launched_trainer(tiny_benchmark, tmp_path, monkeypatch):
    # What `devices` says (-1, "0,1,2,3", "auto") is not counted by hand: the launched trainer's world
    # size sets the lr scaling, the steps per epoch and the total steps, as it sets the sampler's share.
    monkeypatch.setattr(L.Trainer, "world_size", property(lambda self: 2))
    run = pretrain(_cfg(tiny_benchmark, tmp_path / "run", **{"trainer.max_steps": "null",
                                                            "trainer.max_epochs": 1}))
    summary = json.loads((run / "pretrain_summary.json").read_text())
    optim = load_config([run / "config.yaml"]).optim
    # 32 train videos, 4 per process, 2 processes: 4 steps per epoch, one epoch; lr for a global batch of 8.
    assert summary["steps_per_epoch"] == 4 and summary["total_steps"] == 4 and summary["steps"] == 4
    assert summary["lr"] == pytest.approx(optim.lr * 8 / optim.base_batch)
    assert summary["world_size"] == 2
