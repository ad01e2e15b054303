"""process_image: one untrusted file -> clean 8-bit image or a reason (each odd case generated here)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from tests.data.conftest import colorful, encode, odd_files

from chromaflow.data.images import percentile, process_image

FILES = odd_files()


def decode(res: dict) -> Image.Image:
    return Image.open(io.BytesIO(res["image"]))


@pytest.mark.parametrize(
    "name, reason",
    [
        ("bad/empty.jpg", "empty file"),
        ("bad/truncated.jpg", "truncated"),
        ("bad/corrupt.png", "corrupt"),
        ("bad/text.jpg", "not an image"),
        ("bad/garbage.png", "not an image"),
        ("bad/bomb.png", "decompression bomb"),
    ],
)
def test_bad_inputs_are_rejected_with_reason(name, reason):
    res = process_image(FILES[name], 64)
    assert res["ok"] is False
    assert reason in res["reason"]


def test_pixel_limit_is_a_parameter():
    data = encode(colorful(200, 200), "PNG")
    assert process_image(data, 64)["ok"]
    res = process_image(data, 64, max_pixels=10_000)  # 40k pixels > limit (PIL warns between 1x and 2x, errors above)
    assert not res["ok"] and "decompression bomb" in res["reason"]


@pytest.mark.parametrize("name", [n for n in FILES if n.startswith("good/")])
def test_good_inputs_decode_to_8bit_rgb_or_l(name):
    res = process_image(FILES[name], 64)
    assert res["ok"], res.get("reason")
    img = decode(res)
    assert img.mode in ("RGB", "L")
    assert max(img.size) <= 64 and img.size == (res["width"], res["height"])
    assert (res["sample"] is None) == (img.mode == "L")


def test_resize_keeps_aspect_and_max_side():
    res = process_image(FILES["good/big.jpg"], 100)  # 400 x 300
    assert (res["width"], res["height"]) == (100, 75)
    assert res["format"] == "JPEG"


def test_small_jpeg_keeps_its_bytes_png_stays_png():
    assert process_image(FILES["good/color.jpg"], 256)["image"] == FILES["good/color.jpg"]
    res = process_image(FILES["good/color.png"], 256)
    assert res["format"] == "PNG"
    np.testing.assert_array_equal(np.asarray(decode(res)), np.asarray(Image.open(io.BytesIO(FILES["good/color.png"]))))


def test_alpha_is_composited_on_white():
    res = process_image(FILES["good/rgba.png"], 256)
    arr = np.asarray(decode(res))
    assert (arr[:, :10] == 255).all()  # the transparent stripe
    ref = np.asarray(colorful())
    np.testing.assert_array_equal(arr[:, 10:], ref[:, 10:])  # opaque pixels unchanged
    assert any("alpha" in n for n in res["notes"])


def test_cmyk_converted_to_rgb_close_to_original():
    res = process_image(FILES["good/cmyk.jpg"], 256)
    arr = np.asarray(decode(res)).astype(float)
    assert decode(res).mode == "RGB" and any("CMYK" in n for n in res["notes"])
    assert np.abs(arr - np.asarray(colorful()).astype(float)).mean() < 12  # JPEG loss only


def test_16bit_scaled_not_clipped():
    res = process_image(FILES["good/gray16.png"], 256)
    arr = np.asarray(decode(res))
    ref = np.round(np.tile(np.linspace(0, 65535, 80), (60, 1)).astype(np.uint16) / 257.0)
    np.testing.assert_array_equal(arr, ref.astype(np.uint8))


def test_animated_keeps_frame_zero_and_notes_it():
    res = process_image(FILES["good/anim.gif"], 256)
    assert any("frame 0 of 3" in n for n in res["notes"])
    first = Image.open(io.BytesIO(FILES["good/anim.gif"])).convert("RGB")
    np.testing.assert_array_equal(np.asarray(decode(res)), np.asarray(first))


def test_palette_with_transparency():
    res = process_image(FILES["good/palette_t.png"], 256)
    assert res["ok"] and decode(res).mode == "RGB"
    assert any("alpha" in n for n in res["notes"])


def test_exif_orientation_applied():
    img = colorful(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    res = process_image(encode(img, "JPEG", exif=exif.tobytes()), 256)
    assert (res["width"], res["height"]) == (40, 80)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 977, 1024])
def test_percentile_equals_numpy_linear(dtype, n):
    rng = np.random.default_rng(n)
    v = (rng.random((n, 1)) * 255).astype(dtype)  # any shape: numpy flattens too
    for q in (0.0, 1.0, 50.0, 99.0, 99.9, 100.0):
        ref = float(np.percentile(v, q))
        assert percentile(v, q) == pytest.approx(ref, rel=1e-6 if dtype == np.float32 else 1e-12, abs=1e-9)


def test_too_large_names_the_size_and_the_limit(monkeypatch):
    import chromaflow.data.images as images

    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    assert images.too_large(None) is None and images.too_large(1000) is None
    assert images.too_large(1001) == "file too large: 1001 bytes > 1000"
