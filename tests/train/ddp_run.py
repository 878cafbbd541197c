"""`vidssl pretrain` under DDP with every rank's outcome written down, for tests/train/test_faults.py.

    python tests/train/ddp_run.py OUT_DIR METHOD [--crash-rank R --crash-step S] key=value ...

Trains ``configs/demo/METHOD.yaml`` with the overrides. Lightning starts the other ranks by running
this same command line again, so each rank writes ``OUT_DIR/rank<R>.json``: its pid and the
exception it ended with (type and message), or none. ``--crash-rank R --crash-step S`` makes rank
R raise a RuntimeError before batch S, a stand-in for any crash on one rank.

Importing it registers the method ``supervised-fixed-norm``: supervised with every batch norm on
its running statistics, so a clip's output depends on that clip alone and 2 processes x 4 clips
compute what 1 process x 8 clips does (CPU DDP has no SyncBatchNorm).
"""
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from torch import nn

from vidssl.methods.base import register
from vidssl.methods.supervised import Supervised


@register
class SupervisedFixedNorm(Supervised):
    name = "supervised-fixed-norm"

    @dataclass
    class Config(Supervised.Config):
        name: str = "supervised-fixed-norm"

    def forward(self, batch):
        # Here rather than in train(): Lightning sets the modules' modes itself around fit.
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return super().forward(batch)


class RecordRank(L.Callback):
    """Remembers the rank once the trainer is launched; raises the injected crash."""

    def __init__(self, crash_rank, crash_step):
        self.rank = None
        self.crash_rank, self.crash_step = crash_rank, crash_step

    def setup(self, trainer, pl_module, stage):
        self.rank = trainer.global_rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == self.crash_rank and int(pl_module.batches_seen) == self.crash_step:
            raise RuntimeError(f"injected crash on rank {self.crash_rank} before batch {self.crash_step}")


def main(argv):
    out, method, rest = Path(argv[0]), argv[1], argv[2:]
    crash_rank = crash_step = None
    if rest[:1] == ["--crash-rank"]:
        crash_rank, crash_step, rest = int(rest[1]), int(rest[3]), rest[4:]
    from vidssl.config import load_config
    from vidssl.demo import demo_config_dir
    from vidssl.train.run import pretrain

    recorder = RecordRank(crash_rank, crash_step)
    outcome = {"pid": os.getpid(), "error": None, "message": None}
    try:
        pretrain(load_config([demo_config_dir() / f"{method}.yaml"], rest), callbacks=[recorder])
    except BaseException as err:
        outcome.update(error=type(err).__name__, message=str(err))
        raise
    finally:
        rank = recorder.rank if recorder.rank is not None else int(os.environ.get("LOCAL_RANK", 0))
        out.mkdir(parents=True, exist_ok=True)
        (out / f"rank{rank}.json").write_text(json.dumps({"rank": rank, **outcome}))


if __name__ == "__main__":
    main(sys.argv[1:])
