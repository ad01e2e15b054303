"""Fixtures for the web tests: a tiny seeded untrained siggraph17 (width 1/16) saved as weights, photo bodies."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def tiny_guided(seed: int = 0, global_hints: bool = True) -> torch.nn.Module:
    from chromaflow.models import create_model

    torch.manual_seed(seed)
    return create_model("siggraph17", width=1 / 16, global_hints=global_hints).eval()


@pytest.fixture(scope="session")
def guided_weights(tmp_path_factory) -> Path:
    from chromaflow.models import save_weights

    path = tmp_path_factory.mktemp("guided") / "guided.safetensors"
    save_weights(tiny_guided(), path)
    return path


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="session")
def photo(sample_dir) -> np.ndarray:
    """kodim23 from the committed sample, cropped to 96x144 (H, W) to keep tests fast."""
    im = Image.open(sample_dir / "kodim23.jpg").convert("RGB").resize((144, 96), Image.BILINEAR)
    return np.asarray(im)


@pytest.fixture(scope="session")
def photo_b64(photo) -> str:
    return b64(png_bytes(photo))


def decode_png(data: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG"
    return np.asarray(im.convert("RGB"))
