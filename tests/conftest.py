"""Shared fixtures. ``shared_datasets``: the offline data beside the checkout (CI has it). ``mlflow_server``: a
REAL ``mlflow server`` on loopback for the whole session (tracking and export tests): SQLite backend and a proxied
artifact folder in a temp dir, a free port on 127.0.0.1, ``--allowed-hosts`` set for uvicorn's Host check; it waits
for ``/health`` and stops the server's process group at the end. Set ``$CHROMAFLOW_TEST_MLFLOW_URI`` to run the
tests through a server already running instead."""

from __future__ import annotations

import builtins
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CHROMAFLOW_SHARED", REPO.parent / "shared")) / "datasets"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


def in_ci() -> bool:
    """CI sets ``CI=true`` and always has ``../shared``: there a missing dataset is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_shared(reason: str) -> None:
    """Fail under CI (the data must be there), skip with the reason elsewhere (a clone without ``../shared``)."""
    msg = f"{reason} (set CHROMAFLOW_SHARED, or lay ../shared beside the checkout)"
    if in_ci():
        pytest.fail(f"CI=true but {msg}", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets``: under CI=true a missing folder fails the test; elsewhere it skips with the reason."""
    if not SHARED.is_dir():
        missing_shared(f"offline datasets not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def shared_file(shared_datasets):
    """``shared_file("a/b.npy")``: that path under ``../shared/datasets``, failing under CI if it is absent."""

    def get(rel: str) -> Path:
        p = shared_datasets / rel
        if not p.exists():
            missing_shared(f"{rel} not found under {shared_datasets}")
        return p

    return get


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


START_TIMEOUT_S = float(os.environ.get("CHROMAFLOW_TEST_MLFLOW_START_S", 300))  # a loaded 2-core box is slow
EXTERNAL_ENV = "CHROMAFLOW_TEST_MLFLOW_URI"  # reuse an already running loopback server (development)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URI ``http://127.0.0.1:<port>`` of a running MLflow server (fails with the server log if it cannot start)."""
    external = os.environ.get(EXTERNAL_ENV)
    if external:
        assert requests.get(f"{external}/health", timeout=10).status_code == 200, (
            f"{EXTERNAL_ENV}={external}: unhealthy"
        )
        yield external
        return
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(exe),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--allowed-hosts",
        f"127.0.0.1:{port},localhost:{port},127.0.0.1,localhost",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}: {(root / 'server.log').read_text()[-3000:]}")
            try:
                if requests.get(f"{uri}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server not healthy after {START_TIMEOUT_S}s: {(root / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield uri
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Real paths of every file opened (``os.open`` and ``open``) while the test runs: what a step read."""
    seen: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def os_open(path, *a, **kw):
        seen.append(os.path.realpath(path))
        return real_os_open(path, *a, **kw)

    def open_(file, *a, **kw):
        if isinstance(file, str | bytes | os.PathLike):
            seen.append(os.path.realpath(file))
        return real_open(file, *a, **kw)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    return seen
