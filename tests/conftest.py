"""Shared test set-up: one torch thread per test process.

The suite runs on 2 shared cores; small 3D convolutions run many times slower with 2 threads
under load than with 1, and one thread keeps results bit-reproducible.
"""
import lightning as L
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory):
    """The embedded benchmark's 'tiny' preset (32 px, 16 frames, 4 videos per class and list)."""
    from vidssl.data.synthetic import generate_benchmark

    return generate_benchmark(tmp_path_factory.mktemp("bench") / "tiny", preset="tiny", seed=0, workers=1,
                              progress=False)


def tiny_overrides(root, run_dir, **extra):
    """Config overrides for a seconds-long pretraining run on the tiny benchmark."""
    values = {
        "data.root": root, "run_dir": run_dir, "data.frame_size": "[32,32]", "data.num_workers": 0,
        "augment.crop_size": 28, "model.backbone": "r3d", "model.depth": 10, "model.width": 8,
        "trainer.batch_size": 4, "trainer.max_steps": 4, "trainer.max_time_seconds": "null",
        "trainer.checkpoint_every_n_steps": 2, "trainer.log_every_n_steps": 1, "trainer.progress": False,
        "trainer.precision": "32-true", "trainer.channels_last": False,
        "eval.num_clips": 2, "eval.batch_size": 8,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


class Crash(RuntimeError):
    pass


class CrashAt(L.Callback):
    """A killed job: raises before batch ``n`` (after the step-n checkpoint was written)."""

    def __init__(self, n):
        self.n = n

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if int(pl_module.batches_seen) == self.n:
            raise Crash(f"simulated crash at batch {self.n}")


@pytest.fixture(scope="session")
def tiny_supervised_run(tiny_benchmark, tmp_path_factory):
    """A 2-step supervised pretraining run at width 4 on the tiny benchmark, for tests that fine-tune or score
    a pretrained backbone without changing its run directory."""
    from vidssl.cli import main

    run = tmp_path_factory.mktemp("supervised") / "run"
    overrides = tiny_overrides(tiny_benchmark, run, **{"model.width": 4, "trainer.max_steps": 2})
    assert main(["pretrain", "-c", "configs/demo/supervised.yaml", *overrides]) == 0
    return run
