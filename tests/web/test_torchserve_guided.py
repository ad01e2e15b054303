"""Against a real TorchServe: the guided archive under its three endpoint names, every 400 case, and the
gateway in front (token held server-side, origin / type / size checks, the page).

One server for the module (a tiny seeded untrained siggraph17, width 1/16); the automatic archive beside it
is covered by the browser test (a fourth worker costs ~15 s of start-up on a 2-core machine).
"""

from __future__ import annotations

import http.client
import json
import shutil

import numpy as np
import pytest
import requests
from tests.web.conftest import b64, decode_png, png_bytes

from chromaflow.export import export_mar
from chromaflow.gateway import Gateway, GatewayConfig
from chromaflow.gateway.server import models_for
from chromaflow.serve import archive_names, start_server

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="TorchServe needs Java 17 (java not on PATH)")
HANDLER = {"size": 64, "num_threads": 1, "max_hints": 8}


@pytest.fixture(scope="module")
def server(guided_weights, tmp_path_factory):
    root = tmp_path_factory.mktemp("ts-guided")
    guided = export_mar(guided_weights, root / "export", handler_config=HANDLER)
    assert guided.name == "colorize_guided.mar" and archive_names(guided) == ["colorize_guided", "palette", "gamut"]
    with start_server(guided, root / "run", timeout_s=150) as srv:
        yield srv


@pytest.fixture(scope="module")
def gateway(server):
    cfg = GatewayConfig(upstream=server.inference_url, key_file=server.key_file, models=models_for(server.model_names))
    with Gateway(cfg) as gw:
        yield gw


def post(srv, name, body, **headers):
    data = body if isinstance(body, bytes) else json.dumps(body)
    h = {**srv.auth_headers("application/json"), **headers}
    return requests.post(srv.predict_url_for(name), data=data, headers=h, timeout=60)


def test_all_endpoints_answer(server, photo, photo_b64):
    assert server.model_names == ["colorize_guided", "palette", "gamut"]
    hints = [{"x": 10, "y": 20, "r": 250, "g": 30, "b": 30}, {"x": 100, "y": 50, "a": -40, "b": 60}]
    r = post(server, "colorize_guided", {"image": photo_b64, "hints": hints})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert decode_png(r.content).shape == photo.shape
    body = {"image": photo_b64, "hints": hints, "point": {"x": 50, "y": 40}}
    pal = post(server, "palette", body).json()
    doc = post(server, "colorize_guided", {**body, "format": "json"}).json()
    assert doc["palette"]["colors"] == pal["colors"] and len(pal["colors"]) == 9  # same pass, same answer
    g = post(server, "gamut", {"L": 70})
    assert g.status_code == 200 and g.json()["resolution"] == 221


HINT = {"x": 1, "y": 1, "a": 0, "b": 0}
BAD = {  # every 400 of the guided endpoints, on the real server (photo is 144 x 96)
    "hint_outside_image": ("colorize_guided", {"hints": [{**HINT, "x": 500}]}),
    "bad_hint": ("colorize_guided", {"hints": [{"x": 1, "y": 1}]}),
    "bad_hint_nan": ("colorize_guided", b'{"image": "%s", "hints": [{"x": NaN, "y": 1, "a": 0, "b": 0}]}'),
    "too_many_hints": ("colorize_guided", {"hints": [HINT] * 9}),
    "bad_color": ("colorize_guided", {"hints": [{"x": 1, "y": 1, "r": -1, "g": 0, "b": 0}]}),
    "bad_color_ab": ("palette", {"hints": [{**HINT, "b": 200}], "point": {"x": 2, "y": 2}}),
    "bad_global": ("colorize_guided", {"global": {"saturation": -0.1}}),
    "bad_point": ("palette", {}),
    "point_outside_image": ("palette", {"point": {"x": 3, "y": 96}}),
    "bad_option": ("gamut", {"L": 120}),
    "bad_json": ("colorize_guided", b"{not json"),
    "not_an_image": ("colorize_guided", {"image": b64(b"hello, not an image")}),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_get_400_and_serving_goes_on(server, photo_b64, case):
    name, extra = BAD[case]
    if isinstance(extra, bytes):
        data = extra.replace(b"%s", photo_b64.encode())
    else:
        data = json.dumps({"image": photo_b64, **extra} if "image" not in extra else extra).encode()
    r = post(server, name, data)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["code"] == 400 and err["message"] and err["error"] == case.removesuffix("_nan").removesuffix("_ab")
    assert post(server, "gamut", {"L": 50}).status_code == 200


def test_gateway_proxies_with_the_token_it_holds(gateway, server, photo_b64):
    page = requests.get(gateway.url + "/", timeout=10)
    assert page.status_code == 200 and "<canvas" in page.text
    assert "script-src 'sha256-" in page.headers["Content-Security-Policy"]
    assert server.token not in page.text
    health = requests.get(gateway.url + "/api/health", timeout=10).json()
    assert health == {
        "upstream": True,
        "endpoints": {"colorize": False, "guided": True, "palette": True, "gamut": True},
    }
    r = requests.post(gateway.url + "/api/guided", json={"image": photo_b64, "hints": [HINT]}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    r = requests.post(gateway.url + "/api/palette", json={"image": photo_b64, "point": {"x": 1, "y": 500}}, timeout=60)
    assert r.status_code == 400 and r.json()["error"] == "point_outside_image"  # upstream errors pass through
    r = requests.post(gateway.url + "/api/colorize", json={"image": photo_b64}, timeout=60)
    assert r.status_code == 404 and r.json()["error"] == "not_served"  # no automatic archive on this server


def test_gateway_refuses_what_it_should(gateway):
    url = gateway.url + "/api/guided"
    assert requests.post(url, json={}, headers={"Origin": "http://evil.example"}, timeout=10).status_code == 403
    assert requests.post(url, data=b"x", headers={"Content-Type": "text/plain"}, timeout=10).status_code == 415
    host, port = gateway.httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)  # announce 64 MiB, send nothing: refused unread
    conn.putrequest("POST", "/api/guided")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(64 << 20))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert requests.post(gateway.url + "/api/nope", json={}, timeout=10).status_code == 404
    assert requests.get(gateway.url + "/../etc/passwd", timeout=10).status_code == 404


def test_gateway_without_upstream_says_502(tmp_path):
    with Gateway(GatewayConfig(upstream="http://127.0.0.1:9", key_file=None)) as gw:
        r = requests.post(gw.url + "/api/gamut", json={"L": 50}, timeout=30)
        assert r.status_code == 502 and r.json()["error"] == "upstream_unavailable"


def test_rgb_hint_shows_its_hue_at_the_hint(server, photo):
    """A strong saturated hint covering the image: the untrained net's output is whatever, but the request
    path must keep the hint's geometry: the answer's hint list echoes the model positions of the rule."""
    gray = np.repeat(photo.mean(2, keepdims=True).astype(np.uint8), 3, axis=2)
    doc = post(
        server,
        "colorize_guided",
        {"image": b64(png_bytes(gray)), "hints": [{"x": 143, "y": 95, "r": 0, "g": 0, "b": 255}], "format": "json"},
    ).json()
    h = doc["hints"][0]
    assert (h["model_x"], h["model_y"]) == (63, 63) and h["b"] < -20  # blue keeps a negative b
