"""Run these CPU tests single-threaded: on a loaded 2-core machine, OpenMP spin-waiting across threads
makes small convolutions ~100x slower."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
