"""Networks by name (a timm-like registry), their weights on disk, and inference.

>>> from chromaflow.models import create_model, list_models
>>> "eccv16" in list_models()  # every module of this package that registers a model
True
"""

from chromaflow.models.eccv16 import ECCV16, eccv16
from chromaflow.models.inference import colorize, colorize_batch, pick_device
from chromaflow.models.registry import (
    ModelDescription,
    create_model,
    describe,
    described_models,
    list_models,
    make_contract,
    register_description,
    register_model,
)
from chromaflow.models.weights import load_weights, read_config, save_weights, sha256_file, unwrap

__all__ = [
    "ECCV16",
    "ModelDescription",
    "colorize",
    "colorize_batch",
    "create_model",
    "describe",
    "described_models",
    "pick_device",
    "register_description",
    "eccv16",
    "list_models",
    "load_weights",
    "make_contract",
    "read_config",
    "register_model",
    "save_weights",
    "sha256_file",
    "unwrap",
]
