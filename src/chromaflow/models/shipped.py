"""Models shipped with the repository (``weights/<name>/``): fp16 safetensors + ``card.json`` + ``MODEL_CARD.md``.

:func:`load_shipped` refuses a file whose SHA-256 differs from its card's (tampered or corrupted), and loading
never unpickles (safetensors, strict keys). Writing a model and its card (``chromaflow ship``) is
:mod:`chromaflow.export.ship`.

``$CHROMAFLOW_WEIGHTS`` points at another folder of shipped models (default: ``weights/`` of the checkout).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from chromaflow import io
from chromaflow.models.weights import load_weights, sha256_file
from chromaflow.resources import weights_dir

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CARD_JSON = "card.json"
CARD_MD = "MODEL_CARD.md"
REPRODUCE_SH = "reproduce.sh"  # the card's commands as one script: the one command that reproduces the model
MAX_BYTES = 10 * 1024 * 1024  # the repository's limit per shipped model


def weights_root() -> Path:
    """``$CHROMAFLOW_WEIGHTS`` or the packaged ``weights/`` (:func:`chromaflow.resources.weights_dir`)."""
    env = os.environ.get("CHROMAFLOW_WEIGHTS")
    return Path(env) if env else weights_dir()


def shipped_names() -> list[str]:
    """Sorted names of the shipped models (the folders of :func:`weights_root` holding a card)."""
    return sorted(p.name for p in weights_root().glob("*/") if (p / CARD_JSON).is_file())


def card(name: str) -> dict[str, Any]:
    """The ``card.json`` of shipped model ``name``; ``FileNotFoundError`` naming the folder if absent."""
    path = weights_root() / name / CARD_JSON
    if not path.is_file():
        raise FileNotFoundError(f"shipped model {name!r}: no {path} (shipped: {shipped_names() or 'none'})")
    return io.read_json(path)


def shipped_weights(name: str) -> tuple[Path, dict[str, Any]]:
    """Path of the shipped weights of ``name`` after checking their SHA-256 against the card, and the card."""
    c = card(name)
    path = weights_root() / name / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"shipped model {name!r}: {path} is missing")
    actual = sha256_file(path)
    if actual != c["sha256"]:
        raise ValueError(f"shipped model {name!r}: {path} has sha256 {actual}, its card records {c['sha256']}: refused")
    return path, c


def load_shipped(name: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The shipped model ``name`` (hash-checked, strict, never unpickled) in eval mode, and its card."""
    path, c = shipped_weights(name)
    return load_weights(path, expected_sha256=c["sha256"], device=device), c
