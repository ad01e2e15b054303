"""Where the files the library reads at run time lie: package data, found with :mod:`importlib.resources`.

The repository keeps each file where DVC, the docs and the tests name it; ``src/chromaflow/share/`` holds
relative symlinks to them (one source, no copies), so a source checkout (``PYTHONPATH=src``), an editable
install and the installed wheel (setuptools copies the links' targets in) all find them with the same call:

    share/serving/         -> serving/               TorchServe handlers, model-config templates, config.properties
    share/weights/         -> weights/               the committed default (shipped) models
    share/promotion.yaml   -> mlflow/promotion.yaml  promotion gates
    share/params.yaml      -> params.yaml            the project's step parameters

    >>> (serving_dir() / "config.properties").is_file()
    True

Lowest layer: imports nothing from chromaflow.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PACKAGE = "chromaflow"
SHARE = "share"


def share(*parts: str) -> Path:
    """Path of ``share/<parts...>`` inside the installed ``chromaflow`` package (a wheel installs unzipped);
    ``FileNotFoundError`` naming the path when it is absent (a wheel built without its package data)."""
    path = files(PACKAGE).joinpath(SHARE, *parts)
    if not isinstance(path, Path):  # a zipped install: the files would need extracting, which nothing here does
        raise FileNotFoundError(f"chromaflow: package data {SHARE}/{'/'.join(parts)} is not on a file system ({path})")
    if not path.exists():
        raise FileNotFoundError(f"chromaflow: package data {path} is missing (was the wheel built without it?)")
    return path


def serving_dir() -> Path:
    """The TorchServe handlers, model-config templates and ``config.properties`` (the repository's ``serving/``)."""
    return share("serving")


def weights_dir() -> Path:
    """The committed default models, one folder per shipped name (the repository's ``weights/``)."""
    return share("weights")


def promotion_gates() -> Path:
    """The promotion gates YAML (the repository's ``mlflow/promotion.yaml``)."""
    return share("promotion.yaml")


def params_file() -> Path:
    """The project's ``params.yaml`` (every step's defaults, as DVC reads them)."""
    return share("params.yaml")
