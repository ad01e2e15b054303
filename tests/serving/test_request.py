"""Request decoding and validation without a server: every rejection has its status and reason."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
from PIL import Image
from tests.serving.conftest import encode, png_claiming_size, random_rgb

from chromaflow.serving import Request, RequestError, decode_image, parse_options

MAX = 1_000_000


def rejected(req: Request, max_pixels: int = MAX) -> RequestError:
    with pytest.raises(RequestError) as e:
        decode_image(req, max_pixels=max_pixels)
    return e.value


@pytest.mark.parametrize("fmt,ctype", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_decodes_formats(fmt, ctype):
    arr = random_rgb(17, 23)
    img = decode_image(
        Request(encode(arr, fmt, **({"lossless": True} if fmt == "WEBP" else {})), ctype), max_pixels=MAX
    )
    assert img.rgb.shape == (3, 17, 23) and img.rgb.dtype == torch.uint8 and img.format == fmt
    if fmt != "JPEG":  # lossless: exact pixels
        assert torch.equal(img.rgb, torch.from_numpy(arr).permute(2, 0, 1))


def test_gray_becomes_three_equal_channels_and_alpha_is_kept():
    gray = np.random.default_rng(1).integers(0, 256, (9, 11), dtype=np.uint8)
    img = decode_image(Request(encode(gray), "image/png"), max_pixels=MAX)
    assert img.mode == "L" and torch.equal(img.rgb[0], img.rgb[1]) and torch.equal(img.rgb[1], img.rgb[2])
    assert torch.equal(img.rgb[0], torch.from_numpy(gray))
    rgba = np.dstack([random_rgb(5, 6), np.full((5, 6), 7, np.uint8)])
    img = decode_image(Request(encode(rgba), "image/png"), max_pixels=MAX)
    assert img.alpha is not None and int(img.alpha.max()) == 7


def test_unknown_content_type_is_sniffed_and_json_base64_accepted():
    png = encode(random_rgb(4, 5))
    assert decode_image(Request(png, None), max_pixels=MAX).size == (4, 5)
    assert decode_image(Request(png, "application/octet-stream"), max_pixels=MAX).size == (4, 5)
    body = {"image": base64.b64encode(png).decode()}
    assert decode_image(Request(body, "application/json"), max_pixels=MAX).size == (4, 5)


@pytest.mark.parametrize("body", [b"", None, bytearray()])
def test_empty_body(body):
    e = rejected(Request(body, "image/png"))
    assert (e.status, e.kind) == (400, "empty_body")


def test_wrong_content_type():
    e = rejected(Request(encode(random_rgb(4, 4)), "text/plain"))
    assert (e.status, e.kind) == (415, "unsupported_content_type") and "text/plain" in e.message


def test_not_an_image():
    e = rejected(Request(b"certainly not an image" * 10, "image/png"))
    assert (e.status, e.kind) == (400, "not_an_image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated(fmt):
    data = encode(random_rgb(64, 64), fmt)
    e = rejected(Request(data[: len(data) // 2], f"image/{fmt.lower()}"))
    assert (e.status, e.kind) == (400, "truncated_image")


def test_too_many_pixels_from_the_header_only():
    e = rejected(Request(png_claiming_size(50_000, 50_000), "image/png"))  # 2.5 G pixels, never decoded
    assert e.status == 413 and e.kind == "too_many_pixels"
    e = rejected(Request(encode(random_rgb(20, 20)), "image/png"), max_pixels=399)
    assert e.status == 413 and "400" in e.message


def test_odd_modes_and_formats_follow_the_policy_of_prepare_and_colorize():
    """One accept/convert policy (data.images.accept_image): CMYK, 16-bit and animated files are converted, NaN
    pixels are 415, formats outside the policy are not even tried (400)."""
    import io

    def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    cmyk = encoded(Image.new("CMYK", (8, 8), (10, 20, 30, 40)), "JPEG")
    got = decode_image(Request(cmyk, "image/jpeg"), max_pixels=MAX)
    want = np.asarray(Image.open(io.BytesIO(cmyk)).convert("RGB")).transpose(2, 0, 1)
    assert got.mode == "CMYK" and np.array_equal(got.rgb.numpy(), want)
    g16 = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000
    got = decode_image(Request(encoded(Image.fromarray(g16), "PNG"), "image/png"), max_pixels=MAX)
    assert np.array_equal(got.rgb.numpy()[0], np.round(g16 / 257.0).astype(np.uint8))  # 16 -> 8 bit, as prepare
    frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (200, 10)]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(Request(gif, "image/gif"), max_pixels=MAX).rgb.numpy().max() > 150  # frame 0 kept
    nan = encoded(Image.fromarray(np.full((4, 4), np.nan, np.float32)), "TIFF")
    assert (rejected(Request(nan, "image/tiff")).status, rejected(Request(nan, "image/tiff")).kind) == (
        415,
        "bad_values",
    )
    e = rejected(Request(encoded(Image.fromarray(random_rgb(4, 4)), "TGA"), "application/octet-stream"))
    assert (e.status, e.kind) == (400, "not_an_image")


def test_bad_json_and_base64():
    assert rejected(Request({"picture": "x"}, "application/json")).kind == "bad_json"
    assert rejected(Request({"image": "%%%not base64%%%"}, "application/json")).kind == "bad_base64"
    assert rejected(Request(b"{not json", "application/json")).kind == "bad_json"


def test_options():
    assert parse_options(Request(b"x")).T is None
    o = parse_options(Request(b"x", headers={"x-chromaflow-t": "0.5", "ACCEPT": "application/json"}))
    assert (o.T, o.envelope, o.output) == (0.5, "json", "png")
    o = parse_options(Request(b"x", params={"T": "1", "format": "jpeg"}))
    assert (o.T, o.envelope, o.output) == (1.0, None, "jpeg")
    o = parse_options(Request(b"x", params={"format": "json", "output": "jpg"}))
    assert (o.envelope, o.output) == ("json", "jpeg")
    assert parse_options(Request(b"x", headers={"Accept": "image/jpeg"})).output == "jpeg"
    assert parse_options(Request({"image": "", "T": 0.2}, "application/json")).T == 0.2
    for bad in ({"T": "warm"}, {"T": "0"}, {"T": "100"}, {"format": "gif"}):
        with pytest.raises(RequestError) as e:
            parse_options(Request(b"x", params=bad))
        assert e.value.status == 400 and e.value.kind == "bad_option"
