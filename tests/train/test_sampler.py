import itertools

import numpy as np
import pytest

from vidssl.train.sampler import ResumableSampler
from vidssl.train.schedule import lr_factor, scaled_lr


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_each_epoch_is_a_permutation_and_epochs_differ():
    s = ResumableSampler(10, batch_size=5, seed=3)
    first, second = take(s, 10), take(s, 20)[10:]
    assert sorted(i for i, _ in first) == list(range(10))
    assert {e for _, e in first} == {0} and {e for _, e in second} == {1}
    assert [i for i, _ in first] != [i for i, _ in second]


def test_start_step_continues_the_same_stream():
    full = take(ResumableSampler(13, batch_size=4, seed=1), 4 * 9)
    resumed = take(ResumableSampler(13, batch_size=4, seed=1, start_step=5), 4 * 4)
    assert resumed == full[4 * 5:]


def test_ranks_partition_each_global_batch():
    n, b, world = 24, 3, 2
    streams = [take(ResumableSampler(n, batch_size=b, seed=0, rank=r, world_size=world), b * 4) for r in range(world)]
    single = take(ResumableSampler(n, batch_size=b * world, seed=0), b * world * 4)
    for step in range(4):
        merged = streams[0][step * b:(step + 1) * b] + streams[1][step * b:(step + 1) * b]
        assert merged == single[step * b * world:(step + 1) * b * world]


def test_samples_per_epoch_larger_than_dataset_repeats_videos():
    s = ResumableSampler(5, batch_size=4, seed=0, samples_per_epoch=20)
    assert s.steps_per_epoch == 5
    epoch0 = [i for i, e in take(s, 20)]
    assert np.bincount(epoch0, minlength=5).tolist() == [4] * 5


def test_lr_schedules():
    kw = dict(total_steps=100, steps_per_epoch=10)
    assert lr_factor(0, warmup_epochs=1, **kw) == pytest.approx(0.1)
    assert lr_factor(9, warmup_epochs=1, **kw) == pytest.approx(1.0)
    assert lr_factor(10, warmup_epochs=1, **kw) == pytest.approx(1.0)
    assert lr_factor(55, warmup_epochs=1, **kw) == pytest.approx(0.5)
    assert lr_factor(100, **kw) == pytest.approx(0.0, abs=1e-12)
    step = dict(schedule="step", step_epochs=[6, 12], gamma=0.1, **kw)
    assert [lr_factor(s, **step) for s in (0, 59, 60, 119, 120)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert scaled_lr(0.1, 512, 256) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, schedule="linear", **kw)


def test_time_budget_moves_the_schedule_along():
    import torch

    from vidssl.config import OptimConfig
    from vidssl.train.module import MethodModule

    optim = OptimConfig(lr=1.0, base_batch=1, schedule="cosine")
    module = MethodModule(torch.nn.Linear(2, 2), optim=optim, lr=1.0, total_steps=100, steps_per_epoch=10,
                          seed=0, max_bad_fraction=1.0, max_time_seconds=60.0)
    module.batches_seen.fill_(10)
    module.train_seconds.fill_(30.0)  # half the budget gone after a tenth of the steps
    assert module.schedule_position() == pytest.approx(50.0)
    assert module.current_lr() == pytest.approx(0.5)
    module.train_seconds.fill_(60.0)
    assert module.current_lr() == pytest.approx(0.0, abs=1e-12)
    steps_only = MethodModule(torch.nn.Linear(2, 2), optim=optim, lr=1.0, total_steps=100, steps_per_epoch=10,
                              seed=0, max_bad_fraction=1.0)
    steps_only.batches_seen.fill_(10)
    steps_only.train_seconds.fill_(1e6)
    assert steps_only.schedule_position() == pytest.approx(10.0)
