"""Against a real TorchServe: the guided archive under its three endpoint names, every 400 case, and the
gateway in front (token held server-side, origin / type / size checks, the page).

One server for the module (a tiny seeded untrained siggraph17, width 1/16); the automatic archive beside it
is covered by the browser test (a fourth worker costs ~15 s of start-up on a 2-core machine).
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from tests.serving.conftest import HOSTILE_JSON, random_rgb
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
        "endpoints": {"colorize": False, "guided": True, "palette": True, "gamut": True, "translate": False},
    }
    o = gateway.origin
    r = requests.post(gateway.url + "/api/guided", json={"image": photo_b64, "hints": [HINT]}, headers=o, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    r = requests.post(
        gateway.url + "/api/palette", json={"image": photo_b64, "point": {"x": 1, "y": 500}}, headers=o, timeout=60
    )
    assert r.status_code == 400 and r.json()["error"] == "point_outside_image"  # upstream errors pass through
    r = requests.post(gateway.url + "/api/colorize", json={"image": photo_b64}, headers=o, timeout=60)
    assert r.status_code == 404 and r.json()["error"] == "not_served"  # no automatic archive on this server


def test_gateway_refuses_what_it_should(gateway):
    url = gateway.url + "/api/guided"
    assert requests.post(url, json={}, headers={"Origin": "http://evil.example"}, timeout=10).status_code == 403
    r = requests.post(url, data=b"x", headers={"Content-Type": "text/plain", **gateway.origin}, timeout=10)
    assert r.status_code == 415
    host, port = gateway.httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)  # announce 64 MiB, send nothing: refused unread
    conn.putrequest("POST", "/api/guided")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Origin", gateway.url)
    conn.putheader("Content-Length", str(64 << 20))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert requests.post(gateway.url + "/api/nope", json={}, headers=gateway.origin, timeout=10).status_code == 404
    assert requests.get(gateway.url + "/../etc/passwd", timeout=10).status_code == 404


def test_gateway_without_upstream_says_502(tmp_path):
    with Gateway(GatewayConfig(upstream="http://127.0.0.1:9", key_file=None)) as gw:
        r = requests.post(gw.url + "/api/gamut", json={"L": 50}, headers=gw.origin, timeout=30)
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


# ------------------------------------------------------------------------------------ hostile requests (issue 17)


@pytest.mark.parametrize("name", ["colorize_guided", "palette", "gamut"])
def test_hostile_json_alone_gets_400_json_on_every_endpoint(server, name):
    for case, (body, kind) in HOSTILE_JSON.items():
        r = post(server, name, body)
        assert r.status_code == 400 and r.json()["error"] == kind, (case, r.text[:300])


def test_hostile_bodies_mixed_into_batches_leave_good_requests_untouched(server, photo_b64):
    """Batching on (batchSize 4): good colorize_guided and palette requests fired together with every malformed
    body, three times; each good answer is 200 and equal to the same request sent alone."""
    other = b64(png_bytes(random_rgb(40, 56, seed=3)))
    goods = [
        ("colorize_guided", {"image": photo_b64, "hints": [HINT]}),
        ("colorize_guided", {"image": other}),
        ("palette", {"image": photo_b64, "point": {"x": 20, "y": 30}}),
        ("palette", {"image": other, "point": {"x": 5, "y": 5}, "hints": [HINT]}),
    ]
    clean = [post(server, n, b) for n, b in goods]
    assert all(r.status_code == 200 for r in clean)
    jobs = [(n, json.dumps(b).encode(), i) for i, (n, b) in list(enumerate(goods)) * 2]
    jobs += [(n, body, kind) for n in ("colorize_guided", "palette") for body, kind in HOSTILE_JSON.values()]
    order = [jobs[i] for i in np.random.default_rng(1).permutation(len(jobs))]
    with ThreadPoolExecutor(len(order)) as pool:
        for _ in range(3):
            answers = list(pool.map(lambda j: post(server, j[0], j[1]), order))
            for (name, _, want), r in zip(order, answers, strict=True):
                if isinstance(want, int):
                    assert r.status_code == 200, r.text[:300]
                    ref = clean[want]
                    if name == "palette":  # the batched pass moves the weights by ~1e-10, never the colours
                        got, want_doc = r.json(), ref.json()
                        assert [c["rgb"] for c in got["colors"]] == [c["rgb"] for c in want_doc["colors"]]
                        for c, w in zip(got["colors"], want_doc["colors"], strict=True):
                            assert [c[k] for k in ("a", "b", "weight")] == pytest.approx(
                                [w[k] for k in ("a", "b", "weight")], rel=1e-6, abs=1e-6
                            )
                    else:
                        assert np.array_equal(decode_png(r.content), decode_png(ref.content))
                else:
                    assert r.status_code == 400 and r.json()["error"] == want


# ------------------------------------------------------------------------------------ the gateway (issue 17)


def raw(gw, request: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes to the gateway, return everything it answers until it closes (or ``timeout``)."""
    host, port = gw.httpd.server_address[:2]
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_dns_rebinding_and_foreign_or_missing_origin_are_403(gateway, photo_b64):
    url = gateway.url + "/api/guided"
    body = {"image": photo_b64, "hints": [HINT]}
    port = gateway.httpd.server_address[1]
    evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    r = requests.post(url, json=body, headers=evil, timeout=30)
    assert r.status_code == 403 and r.json()["error"] == "foreign_host"
    assert requests.get(gateway.url + "/", headers={"Host": "evil.example"}, timeout=10).status_code == 403
    assert requests.get(gateway.url + "/api/health", headers={"Host": "evil.example"}, timeout=10).status_code == 403
    r = requests.post(url, json=body, timeout=30)  # no Origin
    assert r.status_code == 403 and r.json()["error"] == "origin_required"
    for origin in ("http://evil.example", "null", f"http://localhost:{port + 1}", f"https://127.0.0.1:{port}"):
        r = requests.post(url, json=body, headers={"Origin": origin}, timeout=30)
        assert r.status_code == 403 and r.json()["error"] == "foreign_origin", origin
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):  # the gateway's own names, same origin: served
        r = requests.post(url, json=body, headers={"Host": host, "Origin": f"http://{host}"}, timeout=60)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_form_body_with_binary_bytes_is_415_and_not_echoed(gateway):
    body = b"\x00\xff%zz=\x89PNG secret-bytes"
    r = requests.post(
        gateway.url + "/api/guided",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", **gateway.origin},
        timeout=10,
    )
    assert r.status_code == 415 and b"secret-bytes" not in r.content and b"%zz" not in r.content


def test_public_bind_needs_public(server):
    cfg = GatewayConfig(upstream=server.inference_url)
    with pytest.raises(ValueError, match="--public"):
        Gateway(cfg, host="0.0.0.0")
    from chromaflow.gateway.server import main

    with pytest.raises(SystemExit):
        main(["--upstream", server.inference_url, "--host", "0.0.0.0", "--port", "0"])


def _rss_mb() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def test_slow_loris_is_cut_in_bounded_time_with_bounded_threads(server, photo_b64):
    """50 stalled 20 MiB uploads, 50 half-open connections and a header trickle: all cut within the request
    deadline (2 s here) + 3 s, at most max_connections (8) handler threads meanwhile, then serving goes on."""
    cfg = GatewayConfig(
        upstream=server.inference_url,
        key_file=server.key_file,
        models=models_for(server.model_names),
        read_timeout_s=2.0,
        max_connections=8,
    )
    with Gateway(cfg) as gw:
        host, port = gw.httpd.server_address[:2]
        threads0, rss0 = threading.active_count(), _rss_mb()
        head = (
            f"POST /api/guided HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: http://{host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {20 << 20}\r\n\r\n"
        ).encode()
        socks = []  # (socket, when it connected)
        t0 = time.monotonic()
        for i in range(100):
            s = socket.create_connection((host, port), timeout=10)
            if i % 2 == 0:
                s.sendall(head + b'{"image": "' + b"A" * 4096)  # a stalled upload
            socks.append((s, time.monotonic()))  # odd ones: half-open, nothing sent
        trickle = socket.create_connection((host, port), timeout=10)
        socks.append((trickle, time.monotonic()))
        time.sleep(0.5)
        peak_threads = threading.active_count() - threads0
        for ch in b"GET / HTTP/1.1\r\n":  # one byte every 0.25 s: each read is on time, the request is not
            try:
                trickle.sendall(bytes([ch]))
            except OSError:
                break
            time.sleep(0.25)
            peak_threads = max(peak_threads, threading.active_count() - threads0)
        late = []
        for s, connected in socks:  # every connection ends: answered 503 at once, or cut at its deadline
            s.settimeout(max(0.1, connected + 2.0 + 3.0 - time.monotonic()))
            try:
                while s.recv(65536):
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass
            except TimeoutError:
                late.append(s)
            s.close()
        assert not late and peak_threads <= 8
        assert time.monotonic() - t0 < 15
        assert _rss_mb() - rss0 < 100
        time.sleep(0.5)
        r = requests.post(gw.url + "/api/guided", json={"image": photo_b64}, headers=gw.origin, timeout=60)
        assert r.status_code == 200
        assert threading.active_count() - threads0 <= 1


def test_gateway_renews_the_inference_token_before_it_expires(server, photo_b64):
    """With a renewal margin longer than the key's life, the gateway renews it at once through TorchServe's token
    API: the key file changes, the old key is refused, and the gateway goes on with the new one."""
    old = server.token
    cfg = GatewayConfig(
        upstream=server.inference_url,
        key_file=server.key_file,
        models=models_for(server.model_names),
        management=server.management_url,
        renew_margin_s=10 * 24 * 3600,
    )
    with Gateway(cfg) as gw:
        deadline = time.monotonic() + 20
        while server.token == old and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.token != old
        r = requests.post(gw.url + "/api/guided", json={"image": photo_b64}, headers=gw.origin, timeout=60)
        assert r.status_code == 200
    stale = requests.post(
        server.predict_url_for("gamut"),
        json={"L": 50},
        headers={"Authorization": f"Bearer {old}"},
        timeout=30,
    )
    assert stale.status_code in (400, 401)


def test_gateway_renews_a_refused_key_once_and_retries(server, photo_b64):
    """A key TorchServe no longer accepts (here: a stale key written into the key file, as after an expiry) is
    answered 400 'Token Authorization failed'; the gateway asks for a new key once and the request succeeds."""
    cfg = GatewayConfig(
        upstream=server.inference_url,
        key_file=server.key_file,
        models=models_for(server.model_names),
        management=server.management_url,
    )
    keys = json.loads(Path(server.key_file).read_text())
    keys["inference"]["key"] = "stale0key"
    Path(server.key_file).write_text(json.dumps(keys))
    stale = requests.post(
        server.predict_url_for("gamut"), json={"L": 50}, headers={"Authorization": "Bearer stale0key"}, timeout=30
    )
    assert stale.status_code in (400, 401)
    with Gateway(cfg) as gw:
        r = requests.post(gw.url + "/api/guided", json={"image": photo_b64}, headers=gw.origin, timeout=60)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert server.token != "stale0key"  # TorchServe wrote the renewed key
    cfg.management = None  # no way to renew: the refusal reaches the client as it is, once
    keys = json.loads(Path(server.key_file).read_text())
    good, keys["inference"]["key"] = keys["inference"]["key"], "stale0key"
    Path(server.key_file).write_text(json.dumps(keys))
    try:
        with Gateway(cfg) as gw:
            r = requests.post(gw.url + "/api/guided", json={"image": photo_b64}, headers=gw.origin, timeout=60)
            assert r.status_code in (400, 401)
    finally:
        keys["inference"]["key"] = good
        Path(server.key_file).write_text(json.dumps(keys))
