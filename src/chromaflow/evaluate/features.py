"""Frozen-network features for the transfer evaluation (thesis ch. 5, Table 5.3): each model's conv1..conv5
maps (its description's ``forward_features``; torchvision SqueezeNet 1.1 by taps), resized to about
``target_dim`` numbers, extracted once and cached as float16 ``.npy`` files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chromaflow.evaluate.classifier import IMAGENET_MEAN, IMAGENET_STD
from chromaflow.logs import progress

log = logging.getLogger(__name__)

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
TARGET_DIM = 9216  # thesis: 9,600 (conv1, 3, 4) / 9,216 (conv2, 5)
SQUEEZE_TAPS = {1: "conv1", 4: "conv2", 7: "conv3", 10: "conv4", 12: "conv5"}  # features[i] output -> column


@dataclass
class Extractor:
    """A frozen network as ``fn(rgb uint8 (B, 3, S, S) on device) -> {conv1..conv5: (B, C, h, w)}``."""

    fn: Callable[[torch.Tensor], dict[str, torch.Tensor]]
    key: str  # identifies the weights (sha256 of the file, or the random spec + seed)
    kind: str


def _squeezenet_fn(model: torch.nn.Module, size: int) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    def fn(rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        x = rgb.float() / 255.0
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = x.new_tensor(IMAGENET_MEAN)[:, None, None]
        std = x.new_tensor(IMAGENET_STD)[:, None, None]
        x = (x - mean) / std
        out = {}
        for i, layer in enumerate(model.features[: max(SQUEEZE_TAPS) + 1]):
            x = layer(x)
            if i in SQUEEZE_TAPS:
                out[SQUEEZE_TAPS[i]] = x
        return out

    return fn


def _parse_kwargs(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        if "=" not in part:
            raise ValueError(f"--model random spec: expected k=v, got {part!r}")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v.strip()
    return out


def load_extractor(spec: str, *, device: torch.device, seed: int = 0, reference_size: int = 128) -> Extractor:
    """Build the frozen extractor of a model ``spec`` (see the module docstring)."""
    from chromaflow.models import create_model, described_models, load_weights, sha256_file

    if spec.startswith("random:"):
        name, _, kw = spec[len("random:") :].partition(":")
        torch.manual_seed(seed)
        model = create_model(name, **_parse_kwargs(kw))
        key = hashlib.sha256(f"{spec}|seed={seed}".encode()).hexdigest()
    elif spec.startswith("squeezenet1_1:"):
        import torchvision

        path = spec.split(":", 1)[1]
        if not Path(path).is_file():
            raise FileNotFoundError(f"--model {spec}: {path} does not exist")
        model = torchvision.models.squeezenet1_1()
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        key = sha256_file(path) + f"|size={reference_size}"
        return Extractor(_squeezenet_fn(model.to(device).eval(), reference_size), key, "squeezenet1_1")
    else:
        if not Path(spec).is_file():
            raise FileNotFoundError(
                f"--model: {spec} does not exist (a .safetensors file, random:NAME or squeezenet1_1:PATH)"
            )
        model = load_weights(spec)
        key = sha256_file(spec)
    name = model.config["name"]
    layered = {n: d for n, d in described_models().items() if d.forward_features and d.feature_layers == LAYERS}
    if name not in layered:
        raise ValueError(
            f"--model {spec}: no named conv1..conv5 layers known for model {name!r} (known: {sorted(layered)})"
        )
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    features = layered[name].forward_features
    return Extractor(lambda rgb: features(model, rgb), key, name)


def resized_side(channels: int, side: int, target_dim: int = TARGET_DIM) -> int:
    """``X_d`` of Table 5.3: the side giving ``X_d^2 C ~ target_dim``, never above the map's own ``side``."""
    return max(1, min(side, round(math.sqrt(target_dim / channels))))


def resize_features(fmap: torch.Tensor, target_dim: int = TARGET_DIM) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, C * X_d^2)`` by anti-aliased bilinear resizing to ``X_d x X_d`` (see
    :func:`resized_side`; non-square maps use their smaller side)."""
    if fmap.ndim != 4:
        raise ValueError(f"resize_features: expected (B, C, h, w), got {tuple(fmap.shape)}")
    side = resized_side(fmap.shape[1], min(fmap.shape[-2:]), target_dim)
    if fmap.shape[-2:] != (side, side):
        fmap = F.interpolate(fmap.float(), size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    return fmap.flatten(1)


# ------------------------------------------------------------------------------------------- data


def probe_subset(ds: Any, classes: Sequence[str], per_class: int | None) -> list[int]:
    """Indices of ``ds`` (has ``ids`` and ``label_of``) with a label in ``classes``: at most ``per_class`` per
    class, the first by sorted id (deterministic)."""
    keep = set(classes)
    order = sorted((i for i, lab in enumerate(ds.label_of) if lab in keep), key=lambda i: ds.ids[i])
    counts: dict[str, int] = {}
    out = []
    for i in order:
        lab = ds.label_of[i]
        if per_class is None or counts.get(lab, 0) < per_class:
            counts[lab] = counts.get(lab, 0) + 1
            out.append(i)
    return out


def extract(
    ex: Extractor, ds: Any, idx: Sequence[int], *, batch_size: int, target_dim: int, device: torch.device, desc: str
) -> dict[str, np.ndarray]:
    """float16 ``(N, D_l)`` features per layer for items ``idx`` of ``ds``."""
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in LAYERS}
    starts = range(0, len(idx), batch_size)
    for s in progress(starts, total=len(starts), desc=desc):
        rgb = torch.stack([ds[i]["rgb"] for i in idx[s : s + batch_size]]).to(device)
        feats = ex.fn(rgb)
        for name in LAYERS:
            chunks[name].append(resize_features(feats[name].float(), target_dim).cpu().numpy().astype(np.float16))
    return {name: np.concatenate(c) for name, c in chunks.items()}
