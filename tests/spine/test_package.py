"""The library works as an installed wheel: package data (serving templates, gates, params, shipped weights) and the
``components`` / ``pipelines`` packages come with it and are found with the current directory outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chromaflow import __version__, resources

# light: no torch import (the default run); the slow test adds the modules that hold the lookups and load weights
PROBE = """
import json
import chromaflow, components, pipelines
from chromaflow import resources
from chromaflow.pipeline import package_path
from chromaflow.tracking.gates import load_gates
gates, _ = load_gates("mlflow/promotion.yaml", "chromaflow-colorization")
print(json.dumps({
    "chromaflow": chromaflow.__file__, "components": components.__file__, "pipelines": pipelines.__file__,
    "serving": str(resources.serving_dir()), "config": str(resources.serving_dir() / "config.properties"),
    "weights": str(resources.weights_dir() / "colorization" / "model.safetensors"), "gates": len(gates),
    "params": str(resources.params_file()), "yaml": str(package_path("colorization")), "image": components.GPU_IMAGE,
}))
"""
FULL_PROBE = """
import json
from chromaflow.export.mar import SERVING_DIR
from chromaflow.models.shipped import shipped_weights
from chromaflow.serve import CONFIG_TEMPLATE
path, card = shipped_weights("colorization")  # hash-checked against its card
print(json.dumps({"serving": str(SERVING_DIR), "config": str(CONFIG_TEMPLATE), "weights": str(path)}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, repo_root) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    for stale in (repo_root / "build" / "lib", repo_root / "src" / "chromaflow.egg-info"):  # setuptools reuses them:
        shutil.rmtree(stale, ignore_errors=True)  # old copies, and SOURCES.txt listing data no pattern names now
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), "."]
    r = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (whl,) = out.glob("chromaflow-*.whl")
    return whl


def test_resources_resolve_inside_the_package():
    pkg = Path(resources.__file__).parent
    assert resources.serving_dir() == pkg / "share" / "serving"
    assert (resources.serving_dir() / "config.properties").is_file()
    assert (resources.weights_dir() / "colorization" / "card.json").is_file()
    assert resources.promotion_gates().read_text().startswith(("#", "default", "models"))
    with pytest.raises(FileNotFoundError, match="share/nope"):
        resources.share("nope")


def test_wheel_holds_package_data_and_the_kfp_packages(wheel):
    assert wheel.name == f"chromaflow-{__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    share = "chromaflow/share/"
    for f in ("serving/config.properties", "serving/colorize_handler.py", "serving/model-config.yaml",
              "serving/guided-model-config.yaml", "serving/lpips_handler.py", "promotion.yaml", "params.yaml",
              "weights/colorization/model.safetensors", "weights/colorization/card.json",
              "weights/guided/model.safetensors"):  # fmt: skip
        assert share + f in names, f"{share + f} missing from {wheel.name}"
    for f in ("components/__init__.py", "components/train.py", "pipelines/common.py", "pipelines/colorization.yaml"):
        assert f in names, f"{f} missing from {wheel.name}"
    assert not any(n.startswith(("tests/", "runs/", ".git", "data/")) or "__pycache__" in n for n in names)


def test_installed_wheel_finds_its_files_outside_the_checkout(wheel, tmp_path, repo_root):
    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("CHROMAFLOW_WEIGHTS", None)
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got.pop("gates") > 0 and got.pop("image") == f"chromaflow:{__version__}-cuda"
    for key, path in got.items():
        assert Path(path).is_relative_to(target), f"{key}: {path} is not inside the installed wheel"
        assert not Path(path).resolve().is_relative_to(repo_root), f"{key}: {path} reaches into the checkout"
    assert Path(got["weights"]).is_file() and Path(got["config"]).is_file()


@pytest.mark.slow
def test_installed_wheel_exports_the_shipped_model_outside_the_checkout(wheel, tmp_path):
    """From outside the checkout: the modules that look files up find them in the wheel (shipped weights hash-checked),
    `chromaflow export` of the packaged shipped weights gives a .mar with the packaged handler, and `--help` runs."""
    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("CHROMAFLOW_WEIGHTS", None)
    r = subprocess.run([sys.executable, "-c", FULL_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    for key, path in json.loads(r.stdout.strip().splitlines()[-1]).items():
        assert Path(path).is_relative_to(target) and Path(path).exists(), f"{key}: {path} is not in the installed wheel"
    weights = target / "chromaflow" / "share" / "weights" / "colorization" / "model.safetensors"
    cmd = [sys.executable, "-m", "chromaflow.cli", "export", "--weights", str(weights), "--out", "exp"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (mar,) = (tmp_path / "exp").glob("*.mar")
    r = subprocess.run(
        [sys.executable, "-m", "chromaflow.cli", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0 and "export" in r.stdout, r.stderr[-2000:]
    names = zipfile.ZipFile(mar).namelist()
    assert "colorize_handler.py" in names and "model.safetensors" in names, names
