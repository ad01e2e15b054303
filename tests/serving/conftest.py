"""Fixtures for the serving tests: a tiny seeded eccv16 saved as weights, and image bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

COLOURFUL_AB = (40.0, 50.0)  # the bin the tiny model is biased toward: gray inputs come out coloured


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """create_model("eccv16", width=1/16), seeded, with the class head biased toward a colourful bin."""
    from chromaflow import color
    from chromaflow.models import create_model

    torch.manual_seed(seed)
    model = create_model("eccv16", width=1 / 16)
    bins = color.ab_bins()
    k = int(((bins - torch.tensor(COLOURFUL_AB)) ** 2).sum(1).argmin())
    with torch.no_grad():
        model.head.bias[k] += 6.0
    return model.eval()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    from chromaflow.models import save_weights

    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(tiny_model(), path)
    return path


def encode(arr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png_claiming_size(w: int, h: int) -> bytes:
    """A valid 1x1 PNG whose IHDR (with a correct CRC) claims ``w x h``: a decompression-bomb header."""
    import struct
    import zlib

    data = bytearray(encode(np.zeros((1, 1, 3), np.uint8)))
    struct.pack_into(">II", data, 16, w, h)  # IHDR data starts at byte 16 (8 signature + 4 length + 4 type)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# Malformed JSON bodies (issue 17): each must get 400 JSON alone and leave its batch neighbours untouched.
HOSTILE_JSON = {
    "list": (b"[1]", "bad_json"),
    "number": (b"123", "bad_json"),
    "true": (b"true", "bad_json"),
    "null": (b"null", "bad_json"),
    "string": (b'"image"', "bad_json"),
    "deep_list": (b"[" * 100_000, "too_complex"),
    "deep_object": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "too_complex"),
    "wide": (b"[" + b"0," * 150_000 + b"0]", "too_complex"),
    "not_json": (b"{image: \xff\xfe}", "bad_json"),
}


def flat_png(w: int = 4240, h: int = 2830) -> bytes:
    """A flat grey PNG of ``w x h`` (12.0 MP by default, ~42 KB): tiny upload, maximal pixel count."""
    return encode(np.full((h, w, 3), 128, np.uint8))
