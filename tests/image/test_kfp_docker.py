"""The colorization pipeline with every task in the image: KFP's local ``DockerRunner`` talking to podman's
Docker-compatible API (``podman system service``), against the same pipeline under the ``SubprocessRunner``.

Marker ``image`` (``make test-image``). Needs both tags of ``make image`` (the train task runs the ``-cuda`` one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from tests.image.test_container import PODMAN, UID, podman

from chromaflow import __version__

pytestmark = [
    pytest.mark.image,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (make podman)"),
]
IMAGES = (f"chromaflow:{__version__}", f"chromaflow:{__version__}-cuda")
STEPS = 5  # training steps: the pipeline, not the model, is under test


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory):
    """``podman system service`` on a unix socket for the module; ``$DOCKER_HOST`` points at it."""
    for image in IMAGES:
        if podman("image", "exists", image, check=False).returncode != 0:
            pytest.fail(f"{image} is not built: run `make image`")
        # the Docker API lists podman's local images as localhost/<name>; KFP looks for <name> and would pull it
        podman("tag", image, f"docker.io/library/{image}")
    sock = tmp_path_factory.mktemp("podman") / "podman.sock"
    proc = subprocess.Popen(
        [*PODMAN, "system", "service", "--time=0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not sock.exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.5)
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = f"unix://{sock}"
    try:
        yield os.environ["DOCKER_HOST"]
    finally:
        os.environ.pop("DOCKER_HOST") if old is None else os.environ.__setitem__("DOCKER_HOST", old)
        proc.terminate()
        proc.wait(timeout=30)


def _arguments(root: Path, repo_root: Path) -> dict:
    """The demo's arguments with every path under ``root`` (the one folder DockerRunner mounts into the tasks)."""
    import yaml

    from chromaflow.demo import pipeline_arguments

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    shutil.copytree(repo_root / "data" / "sample", root / "inputs" / "sample")
    shutil.copy(repo_root / "mlflow" / "promotion.yaml", root / "inputs" / "promotion.yaml")
    # runs/mlflow/mlflow.db: the embedded default's layout, whose experiments keep artifacts beside the db (under the
    # mount); another SQLite path gets MLflow's ./mlruns in each task's cwd, lost with its container
    (root / "runs" / "mlflow").mkdir(parents=True)
    args = pipeline_arguments(repo_root, params, f"sqlite:///{root}/runs/mlflow/mlflow.db", STEPS)
    return args | {"source": str(root / "inputs" / "sample"), "gates": str(root / "inputs" / "promotion.yaml")}


def _metrics(outputs: dict) -> dict:
    return json.loads((Path(outputs["evaluation"]) / "metrics.json").read_text())


@pytest.mark.timeout(3600)  # two pipeline runs of ~7 min each on a loaded 2-core machine
def test_pipeline_in_containers_equals_the_subprocess_run(docker_host, tmp_path, repo_root):
    from chromaflow.pipeline import run_local

    here_root, there_root = tmp_path / "subprocess", tmp_path / "docker"
    here_root.mkdir()
    there_root.mkdir()
    here = run_local("colorization", _arguments(here_root, repo_root), here_root)
    there_args = _arguments(there_root, repo_root)  # inputs and MLflow under the pipeline root: the one mount
    for p in [there_root, *there_root.rglob("*")]:
        os.chown(p, UID, UID)  # the tasks run as the image's user and write under the mounted root
    t0 = time.monotonic()
    there = run_local("colorization", there_args, there_root, runner="docker")
    wall = time.monotonic() - t0
    print(f"DockerRunner pipeline: {wall:.0f} s")
    a, b = _metrics(here), _metrics(there)
    # DockerRunner reports a task whose container podman already removed as SUCCESS (kfp 2.17 assumes exit 0 on
    # NotFound), so success alone proves nothing: the outputs and their numbers are compared
    assert a["rows"] == b["rows"], (a["rows"], b["rows"])
    assert json.loads(Path(there["decision"]).read_text())["challenger"]
    assert list(Path(there["mar"]).glob("*.mar"))
