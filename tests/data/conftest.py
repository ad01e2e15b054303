"""Fixtures for the data tests: image files of every awkward kind, generated on the fly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def colorful(w: int = 80, h: int = 60, seed: int = 0) -> Image.Image:
    """A smooth, saturated RGB image (a hue ramp with noise)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    arr = np.concatenate([x * 255 + 0 * y, y * 255 + 0 * x, (1 - x) * 200 + 0 * y], axis=2)
    arr = arr + rng.normal(0, 4, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (the data is a stub): a decompression bomb."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def corrupt_png(data: bytes) -> bytes:
    """Flip the bytes of the compressed pixel data (headers intact): decoding must fail."""
    i = data.index(b"IDAT") + 20
    return data[:i] + bytes(b ^ 0x5A for b in data[i : i + 200]) + data[i + 200 :]


def odd_files() -> dict[str, bytes]:
    """name -> bytes: good images of every mode and the bad inputs prepare must reject."""
    col = colorful()
    jpeg = encode(col, "JPEG", quality=90)
    gray = Image.fromarray(np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (60, 1)), "L")
    rgba = col.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[:, :10, 3] = 0  # a transparent stripe: must come out white
    frames = [colorful(seed=i) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    pal = col.quantize(16)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 0
    i16 = Image.fromarray((np.tile(np.linspace(0, 65535, 80), (60, 1))).astype(np.uint16))  # mode I;16
    return {
        "good/color.jpg": jpeg,
        "good/color.png": encode(col, "PNG"),
        "good/big.jpg": encode(colorful(400, 300), "JPEG", quality=90),
        "good/gray_l.jpg": encode(gray, "JPEG"),
        "good/gray_rgb.png": encode(gray.convert("RGB"), "PNG"),
        "good/cmyk.jpg": encode(col.convert("CMYK"), "JPEG"),
        "good/rgba.png": encode(Image.fromarray(a, "RGBA"), "PNG"),
        "good/la.png": encode(gray.convert("LA"), "PNG"),
        "good/palette.png": encode(pal, "PNG"),
        "good/palette_t.png": encode(pal_t, "PNG", transparency=0),
        "good/anim.gif": gif.getvalue(),
        "good/gray16.png": encode(i16, "PNG"),
        "bad/empty.jpg": b"",
        "bad/truncated.jpg": jpeg[: len(jpeg) // 2],
        "bad/corrupt.png": corrupt_png(encode(col, "PNG")),
        "bad/garbage.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "bad/text.jpg": b"this is not an image\n" * 10,
        "bad/bomb.png": png_bomb(),
    }


def odd_modes() -> dict[str, bytes]:
    """name -> bytes of each awkward kind, with a known expected 8-bit result."""
    ramp16 = np.tile(np.linspace(0, 65535, 64), (16, 1)).astype(np.uint16)
    ramp_f = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (16, 1))
    nan_f = ramp_f.copy()
    nan_f[3, 3] = np.nan
    cmyk = Image.new("CMYK", (32, 16), (255, 0, 0, 0))  # pure cyan
    frames = [Image.new("RGB", (20, 10), c) for c in ((230, 20, 20), (20, 20, 230))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50)
    return {
        "cmyk.jpg": encode(cmyk, "JPEG", quality=95),
        "gray16.png": encode(Image.fromarray(ramp16), "PNG"),
        "anim.gif": gif.getvalue(),
        "float.tif": encode(Image.fromarray(ramp_f, "F"), "TIFF"),
        "nan.tif": encode(Image.fromarray(nan_f, "F"), "TIFF"),
        "rgb.bmp": encode(colorful(32, 16), "BMP"),
        "targa.tga": encode(colorful(32, 16), "TGA"),  # a PIL format outside ACCEPTED_FORMATS
    }


@pytest.fixture
def odd_dir(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for name, data in odd_files().items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root
