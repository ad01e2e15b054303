"""The colorize service in-process: batching of mixed sizes, per-item errors, encodings, the TorchServe glue."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab
from tests.serving.conftest import encode, random_rgb, tiny_model

from chromaflow.models import colorize, create_model
from chromaflow.serving import ColorizeService, Request, colorize_batch, handle_torchserve

SIZES = [(37, 53), (64, 64), (120, 90), (31, 200)]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def service(model):
    return ColorizeService(model)


def test_mixed_sizes_in_one_batch_equal_each_alone_and_models_colorize(model):
    imgs = [torch.from_numpy(random_rgb(h, w, seed=i)).permute(2, 0, 1) for i, (h, w) in enumerate(SIZES)]
    batched = colorize_batch(model, imgs, T=[None, 0.2, None, 1.0], size=64)
    for img, out, t in zip(imgs, batched, [None, 0.2, None, 1.0], strict=True):
        alone = colorize_batch(model, [img], T=t, size=64)[0]
        ref = colorize(model, img[None], T=t, size=64)[0]  # the library's single-size path, no batching
        assert out.shape == img.shape
        torch.testing.assert_close(out, alone, atol=1e-4, rtol=0)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_guided_upsampling_same_in_service_and_library_and_differs_from_bilinear():
    """``upsample="guided"`` reaches recombine: batched == alone == ``models.colorize``; and it changes the output."""
    torch.manual_seed(1)
    model = create_model("eccv16", width=1 / 16).eval()  # unbiased head: its ab varies over the image
    imgs = [torch.from_numpy(random_rgb(h, w, seed=i)).permute(2, 0, 1) for i, (h, w) in enumerate(SIZES)]
    batched = colorize_batch(model, imgs, size=32, upsample="guided")
    for img, out in zip(imgs, batched, strict=True):
        ref = colorize(model, img[None], size=32, upsample="guided")[0]
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
        assert (out - colorize(model, img[None], size=32)[0]).abs().max() > 1e-5  # bilinear: identical ops
    svc = ColorizeService(model, {"size": 32, "upsample": "guided"})
    res = svc.handle([Request(encode(random_rgb(48, 40, 7)), "image/png")])[0]
    want = colorize(model, torch.from_numpy(random_rgb(48, 40, 7)).permute(2, 0, 1)[None], size=32, upsample="guided")
    got = torch.from_numpy(np.asarray(Image.open(io.BytesIO(res.body)).convert("RGB"))).permute(2, 0, 1)
    assert (got.float() - (want[0] * 255).round()).abs().max() <= 1


def test_unknown_upsample_refused_with_its_name(model):
    with pytest.raises(ValueError, match="upsample must be one of .*'bicubic'"):
        ColorizeService(model, {"upsample": "bicubic"})
    with pytest.raises(ValueError, match="unknown method 'bicubic'"):
        colorize(model, torch.zeros(1, 3, 16, 16), size=16, upsample="bicubic")


def test_output_keeps_the_input_lightness(model, sample_dir):
    """Full-resolution L recombined with predicted ab: L of the output equals L of the input (skimage Lab)."""
    rgb = np.array(Image.open(sample_dir / "kodim05.jpg").convert("RGB").reduce(8))
    out = colorize_batch(model, [torch.from_numpy(rgb).permute(2, 0, 1)], size=64)[0].permute(1, 2, 0).numpy()
    l_in, l_out = rgb2lab(rgb)[..., 0], rgb2lab(out.astype(np.float64))[..., 0]
    err = np.abs(l_in - l_out)
    # exact except where lab_to_rgb clips out-of-gamut colours (the tiny model predicts strong chroma)
    assert np.median(err) < 0.5 and err.mean() < 3.0


def test_batch_with_bad_items_answers_each(service):
    png = encode(random_rgb(30, 40))
    reqs = [
        Request(png, "image/png"),
        Request(b"", "image/png"),
        Request(b"garbage", "image/png"),
        Request(encode(random_rgb(25, 15, 1), "JPEG"), "image/jpeg", headers={"Accept": "application/json"}),
        Request(png, "text/plain"),
        Request(png, "image/png", headers={"X-Chromaflow-T": "-1"}),
    ]
    res = service.handle(reqs)
    assert [r.status for r in res] == [200, 400, 400, 200, 415, 400]
    assert res[0].content_type == "image/png"
    out = Image.open(io.BytesIO(res[0].body))
    assert out.format == "PNG" and out.size == (40, 30) and out.mode == "RGB"
    doc = res[3].json()
    assert doc["width"] == 15 and doc["height"] == 25 and doc["T"] == pytest.approx(0.38)
    assert Image.open(io.BytesIO(base64.b64decode(doc["image"]))).size == (15, 25)
    for r in (res[1], res[2], res[4], res[5]):
        err = json.loads(r.body)
        assert r.content_type == "application/json" and err["code"] == r.status and err["message"]


def test_gray_input_becomes_colour_and_jpeg_output(service):
    gray = np.full((32, 32), 128, np.uint8)
    res = service.handle([Request(encode(gray), "image/png", headers={"X-Chromaflow-Output": "jpeg"})])[0]
    assert res.status == 200 and res.content_type == "image/jpeg"
    out = np.asarray(Image.open(io.BytesIO(res.body)).convert("RGB"))
    assert np.abs(rgb2lab(out)[..., 1:]).max() > 5.0  # chroma appeared


def test_alpha_is_kept_in_png_output(service):
    rgba = np.dstack([random_rgb(8, 9), np.arange(72, dtype=np.uint8).reshape(8, 9)])
    res = service.handle([Request(encode(rgba), "image/png")])[0]
    out = Image.open(io.BytesIO(res.body))
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], rgba[..., 3])


def test_from_weights_checks_the_hash(tiny_weights):
    with pytest.raises(ValueError, match="sha256"):
        ColorizeService.from_weights(tiny_weights, expected_sha256="0" * 64)
    svc = ColorizeService.from_weights(tiny_weights, {"max_pixels": 100})
    assert svc.handle([Request(encode(random_rgb(11, 10)), "image/png")])[0].status == 413
    with pytest.raises(ValueError, match="unknown key"):
        ColorizeService.from_weights(tiny_weights, {"max_pixel": 100})


def test_torchserve_glue_sets_per_item_status(service):
    from ts.context import Context, RequestProcessor

    ctx = Context("colorizer", "/nonexistent", None, 2, None, "0.12.0")
    png = encode(random_rgb(10, 12))
    headers = [
        {"body": {"content-type": "image/png"}, "Accept": "application/json"},
        {"body": {"content-type": "text/plain"}},
    ]
    ctx.request_processor = [RequestProcessor(h) for h in headers]
    out = handle_torchserve(service, [{"body": bytearray(png)}, {"body": "hello"}], ctx)
    assert ctx.get_response_status(0) == (200, "OK") and ctx.get_response_content_type(0) == "application/json"
    assert json.loads(out[0])["width"] == 12
    assert ctx.get_response_status(1)[0] == 415 and json.loads(out[1])["error"] == "unsupported_content_type"
