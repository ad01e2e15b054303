"""Shared fixtures. ``shared_datasets``: the offline data beside the checkout (CI has it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CHROMAFLOW_SHARED", REPO.parent / "shared")) / "datasets"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets``; tests that need it skip with the reason where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"offline datasets not found at {SHARED} (set CHROMAFLOW_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The committed real-photo sample (data/sample): always present in the repo."""
    return REPO / "data" / "sample"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run CPU tests single-threaded: on a loaded 2-core machine, OpenMP spin-waiting across threads makes
    small convolutions ~100x slower, and servers started by tests (TorchServe, MLflow) share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
