"""Run these CPU tests single-threaded: on a loaded 2-core machine, OpenMP spin-waiting across threads
makes small convolutions ~100x slower. ``toy`` (tests/train) is made importable here too."""

import sys
from pathlib import Path

import pytest
import torch

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
