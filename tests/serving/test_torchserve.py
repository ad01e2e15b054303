"""Against a real TorchServe (Java 17): export a tiny model, serve it, call it with real photos and bad input.

One server for the module. Nothing is registered over the network: the archive is loaded at start-up.
"""

from __future__ import annotations

import base64
import io
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image
from skimage.color import lab2rgb, rgb2lab
from tests.serving.conftest import encode, png_claiming_size, random_rgb

from chromaflow.export import export_mar
from chromaflow.serve import start_server
from chromaflow.serving import ColorizeService

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="TorchServe needs Java 17 (java not on PATH)")
HANDLER = {"size": 128, "num_threads": 1}  # small network input keeps the module fast on a 2-core CPU


@pytest.fixture(scope="module")
def server(tiny_weights, tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    mar = export_mar(tiny_weights, root / "export", handler_config=HANDLER, max_batch_delay_ms=50)
    with start_server(mar, root / "run", timeout_s=150) as srv:
        yield srv


def post(srv, data, ctype="image/png", **headers):
    return requests.post(srv.predict_url, data=data, headers={**srv.auth_headers(ctype), **headers}, timeout=60)


def as_rgb(resp) -> np.ndarray:
    im = Image.open(io.BytesIO(resp.content))
    assert im.format == "PNG" and im.mode == "RGB"
    return np.asarray(im)


def test_photo_comes_back_at_its_resolution_and_matches_its_gray_version(server, sample_dir):
    photo = Image.open(sample_dir / "kodim23.jpg").convert("RGB")
    r = post(server, (sample_dir / "kodim23.jpg").read_bytes(), "image/jpeg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    out = as_rgb(r)
    assert out.shape == (photo.height, photo.width, 3)
    # its gray version (CIE L kept, ab = 0; skimage) re-colorized gives about the same ab
    lab = rgb2lab(np.asarray(photo))
    lab[..., 1:] = 0
    gray = (lab2rgb(lab) * 255).round().astype(np.uint8)
    out_gray = as_rgb(post(server, encode(gray)))
    ab, ab_gray = rgb2lab(out)[..., 1:], rgb2lab(out_gray)[..., 1:]
    assert np.abs(ab - ab_gray).mean() < 2.0
    assert np.abs(ab).max() > 5.0


def test_gray_photo_becomes_colour_and_json_envelope(server, sample_dir):
    gray = np.asarray(Image.open(sample_dir / "skimage_camera.jpg").convert("L"))
    r = post(server, encode(gray), Accept="application/json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert (doc["height"], doc["width"]) == gray.shape and doc["model"]["name"] == "colorize"
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(doc["image"]))))
    assert np.abs(rgb2lab(out)[..., 1:]).max() > 5.0  # gray in, colour out


def test_concurrent_mixed_sizes_match_in_process(server, tiny_weights):
    """Requests of different sizes that may share a server batch give what the handler gives each alone."""
    bodies = [encode(random_rgb(h, w, seed=i)) for i, (h, w) in enumerate([(40, 60), (75, 33), (64, 64), (20, 90)] * 2)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: post(server, b), bodies))
    svc = ColorizeService.from_weights(tiny_weights, HANDLER)
    from chromaflow.serving import Request

    for body, r in zip(bodies, answers, strict=True):
        assert r.status_code == 200
        alone = np.asarray(Image.open(io.BytesIO(svc.handle([Request(body, "image/png")])[0].body)))
        assert np.abs(as_rgb(r).astype(int) - alone.astype(int)).max() <= 1


def test_offline_colorize_step_answers_like_the_server(server, tiny_weights, sample_dir, tmp_path):
    """``chromaflow colorize`` runs the handler's service in-process: same settings, same pixels."""
    from chromaflow.serving.files import colorize_files

    photo = sample_dir / "kodim23.jpg"
    m = colorize_files([photo], tmp_path, weights=tiny_weights, size=HANDLER["size"])
    offline = np.asarray(Image.open(m["written"][0]["output"]))
    assert np.abs(as_rgb(post(server, photo.read_bytes(), "image/jpeg")).astype(int) - offline.astype(int)).max() <= 1


def test_without_token_is_refused(server):
    png = encode(random_rgb(8, 8))
    for headers in ({"Content-Type": "image/png"}, {"Content-Type": "image/png", "Authorization": "Bearer wrong"}):
        r = requests.post(server.predict_url, data=png, headers=headers, timeout=30)
        # TorchServe 0.12 answers a missing/wrong token with 400 InvalidKeyException (docs say 401)
        assert r.status_code in (400, 401) and "Token Authorization failed" in r.text
    assert requests.get(f"{server.management_url}/models", timeout=30).status_code in (400, 401)
    r = requests.get(f"{server.management_url}/models", headers={"Authorization": f"Bearer {server.management_token}"})
    assert r.status_code == 200


def _cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 50, 100, 0)).save(buf, format="JPEG")
    return buf.getvalue()


BAD = {
    "empty_body": (b"", "image/png", 400),
    "not_an_image": (b"GIF? no. " * 40, "image/png", 400),
    "truncated_image": (encode(random_rgb(64, 64), "JPEG")[:900], "image/jpeg", 400),
    "too_many_pixels": (png_claiming_size(40_000, 40_000), "image/png", 413),
    "unsupported_mode": (_cmyk_jpeg(), "image/jpeg", 415),
    "unsupported_content_type": (b"hello", "text/plain", 415),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_gets_4xx_json_and_server_keeps_serving(server, kind):
    data, ctype, status = BAD[kind]
    r = post(server, data, ctype)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["error"] == kind and err["code"] == status and err["message"]
    assert post(server, encode(random_rgb(12, 10))).status_code == 200


def test_request_over_the_size_limit_is_refused_then_serving_goes_on(server):
    r = post(server, b"\0" * (21 << 20), "image/png")  # over max_request_size (20 MiB): the frontend refuses it
    assert r.status_code == 413
    assert post(server, encode(random_rgb(12, 10))).status_code == 200


def test_metrics_are_on(server):
    r = requests.get(f"{server.metrics_url}/metrics", timeout=30)
    assert r.status_code == 200 and "Requests2XX" in r.text
