"""Shared test set-up: one torch thread per test process.

The suite runs on 2 shared cores; small 3D convolutions run many times slower with 2 threads
under load than with 1, and one thread keeps results bit-reproducible.
"""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
