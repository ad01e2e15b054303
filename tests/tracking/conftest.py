"""Fixtures of the tracking tests: the real ``mlflow server`` (``mlflow_server``, in tests/conftest.py, shared
with the export tests) with MLflow's globals reset per test, and a fresh registered-model name."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def uri(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The server's URI, with MLflow's globals reset so no state leaks between tests."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CHROMAFLOW_PIPELINE_RUN_ID", raising=False)
    while mlflow.active_run() is not None:
        mlflow.end_run()
    return mlflow_server


@pytest.fixture
def model_name() -> str:
    """A fresh registered-model name per test."""
    return f"test-model-{uuid.uuid4().hex[:8]}"
