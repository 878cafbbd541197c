"""vidssl.parallel.map_videos: errors per item, worker crashes, serial and pooled runs alike."""
from __future__ import annotations

import os

import pytest

from vidssl.parallel import map_videos, pool_context


def square_or_fail(item):
    if item == "bad":
        raise ValueError(f"cannot read {item}")
    if item == "crash":
        os._exit(3)  # a decoder crash takes its worker process down
    return item * item


@pytest.mark.parametrize("workers", [0, 2])
def test_every_item_comes_back_once_with_its_value_or_error(workers):
    items = [1, 2, "bad", 3, 4, 5]
    results = {repr(item): (error, value) for item, error, value in
               map_videos(square_or_fail, items, workers, progress=False)}
    assert set(results) == {repr(i) for i in items}
    assert results["'bad'"] == ("ValueError: cannot read bad", None)
    assert {k: v for k, (e, v) in results.items() if e is None} == {"1": 1, "2": 4, "3": 9, "4": 16, "5": 25}


def test_a_crashed_worker_fails_its_items_and_the_rest_go_on():
    items = list(range(1, 7)) + ["crash"] + list(range(7, 13))
    results = list(map_videos(square_or_fail, items, 2, progress=False, max_in_flight=2))
    assert sorted(map(repr, (item for item, _, _ in results))) == sorted(map(repr, items))
    errors = {repr(item): error for item, error, _ in results if error is not None}
    assert "worker process failed" in errors["'crash'"]
    assert len(errors) <= 3  # the crash and at most the calls in flight beside it
    assert all(value == item * item for item, error, value in results if error is None and item != "crash")
    assert sum(error is None for _, error, _ in results) >= 10


def test_workers_are_never_forked():
    assert pool_context().get_start_method() in ("forkserver", "spawn")
