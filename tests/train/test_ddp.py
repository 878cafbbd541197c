"""`vidssl pretrain` across 2 CPU processes (Lightning DDP over gloo), as a user launches it."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import tiny_overrides
from vidssl.config import load_config


@pytest.mark.slow
def test_pretrain_ddp_two_processes(tiny_benchmark, tmp_path):
    run = tmp_path / "ddp"
    overrides = tiny_overrides(tiny_benchmark, run, **{
        "method.queue_size": 48, "method.proj_hidden": 16, "trainer.devices": 2, "trainer.strategy": "ddp",
        "trainer.accelerator": "cpu", "trainer.threads": 1})
    # -v: Lightning says how many processes it started only at INFO level.
    cmd = [sys.executable, "-m", "vidssl.cli", "-v", "pretrain", "-c", "configs/demo/moco.yaml", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("Starting with 2 processes") >= 1
    summary = json.loads((run / "pretrain_summary.json").read_text())
    # 32 train videos, 4 per process, 2 processes: 4 steps per epoch; lr scaled for the global batch of 8.
    assert summary["steps"] == 4 and summary["steps_per_epoch"] == 4 and summary["world_size"] == 2
    optim = load_config([run / "config.yaml"]).optim
    assert summary["lr"] == pytest.approx(optim.lr * 8 / optim.base_batch)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    # Every step enqueued the keys of both processes: 4 steps x 8 keys.
    assert int(state["method.queue.ptr"]) == 4 * 8
    assert torch.isfinite(state["method.queue.features"]).all()
