"""Model weights on disk: safetensors with the model config and Lab contract in the metadata.

A file written by :func:`save_weights` holds the ``state_dict`` tensors plus three metadata strings:
``chromaflow.format`` (:data:`FORMAT_VERSION`), ``chromaflow.config`` (JSON: name, kwargs, contract)
and ``chromaflow.contract`` (JSON). :func:`load_weights` rebuilds the model through the registry
and loads it strictly. Nothing is ever unpickled.

    >>> from chromaflow.models import create_model, save_weights, load_weights
    >>> digest = save_weights(create_model("eccv16", width=0.25), "/tmp/m.safetensors")
    >>> model = load_weights("/tmp/m.safetensors", expected_sha256=digest)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from chromaflow.io import atomic_path
from chromaflow.models.registry import create_model, described_models

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
_KEY_FORMAT, _KEY_CONFIG, _KEY_CONTRACT = "chromaflow.format", "chromaflow.config", "chromaflow.contract"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_weights(model: nn.Module, path: str | os.PathLike, dtype: torch.dtype | None = None) -> str:
    """Write ``model``'s state_dict and ``model.config`` to ``path`` atomically; return its SHA-256.

    ``model`` must come from :func:`chromaflow.models.create_model` (it needs ``.config``). A
    ``torch.compile`` or DDP wrapper is unwrapped. ``dtype`` (e.g. ``torch.float16`` for shipped
    models) casts the floating tensors; :func:`load_weights` casts them back to the model's dtype.
    """
    model = unwrap(model)
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping) or not {"name", "kwargs", "contract"} <= set(config):
        raise ValueError(
            f"save_weights: {type(model).__name__} has no registry config (name, kwargs, contract); "
            "build it with chromaflow.models.create_model"
        )
    tensors = {
        k: v.detach()
        .to("cpu", dtype=dtype if dtype is not None and v.is_floating_point() else v.dtype)
        .contiguous()
        .clone()
        for k, v in model.state_dict().items()
    }
    metadata = {
        _KEY_FORMAT: FORMAT_VERSION,
        _KEY_CONFIG: json.dumps(dict(config), sort_keys=True),
        _KEY_CONTRACT: json.dumps(dict(config["contract"]), sort_keys=True),
    }
    write_safetensors(tensors, path, metadata)
    digest = sha256_file(path)
    log.debug("saved %s (%d tensors, sha256 %s)", path, len(tensors), digest)
    return digest


def write_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, str]
) -> None:
    """``safetensors.torch.save_file`` written atomically and byte-reproducibly (metadata keys sorted)."""
    with atomic_path(path) as tmp:
        save_file(dict(tensors), str(tmp), metadata=dict(metadata))
        _sort_header_metadata(tmp)


def _sort_header_metadata(path: str | os.PathLike) -> None:
    """Rewrite the safetensors header of ``path`` in place with its metadata keys sorted.

    safetensors (0.8) writes the metadata from a Rust ``HashMap``, in a random order per call, so the same
    weights gave files with different bytes and SHA-256s. Reordering keeps the header's length (the same
    ``"key":"value"`` items), so the tensor data and its offsets do not move.
    """
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        raw = f.read(n)
        header = json.loads(raw)
        meta = header.pop("__metadata__", None)
        if not meta:
            return
        canon = {"__metadata__": dict(sorted(meta.items())), **header}
        out = json.dumps(canon, separators=(",", ":"), ensure_ascii=False).encode()
        if len(out) > n:  # cannot happen for a header safetensors wrote; never corrupt the file
            raise RuntimeError(
                f"write_safetensors: {path}: canonical header longer than the original ({len(out)} > {n})"
            )
        f.seek(8)
        f.write(out.ljust(n, b" "))  # safetensors pads its header with spaces too


def read_metadata(path: str | os.PathLike, who: str) -> dict[str, str]:
    """The string metadata of a safetensors file's header (no tensors are read); errors start with ``who``:
    ``FileNotFoundError`` for a missing file, ``ValueError`` for one that is not readable safetensors."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{who}: {path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{who}: {path}: not a readable safetensors file ({e})") from None


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``config`` dict stored in a weights file (no tensors are read)."""
    meta = read_metadata(path, "load_weights")
    if meta.get(_KEY_FORMAT) != FORMAT_VERSION:
        raise ValueError(
            f"load_weights: {path}: metadata {_KEY_FORMAT}={meta.get(_KEY_FORMAT)!r}, expected {FORMAT_VERSION!r} "
            "(not written by chromaflow.models.save_weights, or an incompatible version)"
        )
    try:
        config = json.loads(meta[_KEY_CONFIG])
        contract = json.loads(meta[_KEY_CONTRACT])
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"load_weights: {path}: missing or malformed config metadata ({e})") from None
    if config.get("contract") != contract:
        raise ValueError(f"load_weights: {path}: the config's contract and the stored contract differ")
    return config


def load_weights(
    path: str | os.PathLike,
    expected_sha256: str | None = None,
    *,
    contract: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build the model described in ``path``'s metadata and load its weights strictly.

    Args:
        expected_sha256: if given, the file's SHA-256 must equal it (tamper / corruption check).
        contract: if given, every key in it must equal the stored contract's value; a model is never
            used with a normalization it was not trained with.
        device: where the returned model lives.

    Returns the model in eval mode, with ``.config`` as stored.
    Raises ``ValueError`` naming the reason: hash mismatch, contract mismatch, missing or unexpected
    keys, shape mismatch.
    """
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual.lower() != expected_sha256.lower():
            raise ValueError(f"load_weights: {path}: sha256 {actual} != expected {expected_sha256}")
    config = read_config(path)
    stored = config["contract"]
    if contract is not None:
        diff = {k: (stored.get(k), v) for k, v in contract.items() if stored.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: stored {a!r} vs requested {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"load_weights: {path}: contract mismatch ({detail})")
    model = create_model(config["name"], contract=stored, **config["kwargs"])
    state = load_file(str(path), device="cpu")
    load_state_strict(model, state, source=str(path))
    return model.to(device).eval()


def weights_kind(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """``(kind, config)`` of a weights file: its model description's kind (no tensors are read);
    ``ValueError`` naming the file and its model for a model without a description."""
    config = read_config(path)
    name = config.get("name")
    described = described_models()
    if name not in described:
        raise ValueError(
            f"log_model: {path} holds a {name!r} model, a kind the MLflow pyfunc does not know "
            f"(known: {', '.join(sorted(described))})"
        )
    return described[name].kind, config


def load_model_file(
    path: str | os.PathLike, expected_sha256: str | None = None, *, device: str = "cpu"
) -> tuple[str, nn.Module, dict[str, Any]]:
    """``(kind, model, config)``: the described model of ``path`` (:func:`weights_kind`) loaded strictly by
    :func:`load_weights` (sha256-checked when given, never unpickled)."""
    kind, config = weights_kind(path)
    return kind, load_weights(path, expected_sha256, device=device), config


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "state") -> None:
    """``model.load_state_dict(state)`` with an error that names every missing/unexpected/mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(
            "shape mismatch " + ", ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes)
        )
    if problems:
        raise ValueError(f"load_weights: {source}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under ``torch.compile`` (``_orig_mod``) and DDP (``module``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model
