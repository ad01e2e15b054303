"""Against a real TorchServe (Java 17): the ``translate`` archive of a tiny bicyclegan, called as JSON, multipart
(with a style part) and a raw image with query fields; the hostile corpus and the bad inputs of the colorize
endpoint, alone and mixed into batches with good requests."""

from __future__ import annotations

import base64
import io
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image
from tests.serving.conftest import HOSTILE_JSON, encode, random_rgb
from tests.serving.test_torchserve import BAD
from tests.serving.test_translate_service import edges_png, tiny_translator

from chromaflow.export import export_mar
from chromaflow.models import save_weights
from chromaflow.serve import archive_names, start_server
from chromaflow.serving.translate import TranslateService

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="TorchServe needs Java 17 (java not on PATH)")
HANDLER = {"size": 64, "max_samples": 6, "num_threads": 1}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("bg") / "bg.safetensors"
    save_weights(tiny_translator(), path)
    return path


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    root = tmp_path_factory.mktemp("ts-translate")
    mar = export_mar(weights, root / "export", handler_config=HANDLER, max_batch_delay_ms=50)
    assert mar.name == "translate.mar" and archive_names(mar) == ["translate"]
    with start_server(mar, root / "run", timeout_s=150) as srv:
        yield srv


def post(srv, data=None, ctype="application/json", headers=None, **kw):
    auth = srv.auth_headers(ctype) if ctype else {"Authorization": srv.auth_headers("x")["Authorization"]}
    return requests.post(srv.predict_url_for("translate"), data=data, headers=auth | (headers or {}), timeout=60, **kw)


def js(body: dict) -> bytes:
    return json.dumps(body).encode()


def decoded(doc: dict) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(s)))) for s in doc["images"]]


def test_json_request_gives_n_samples_as_in_process(server, weights):
    body = {"image": base64.b64encode(edges_png()).decode(), "n": 4, "seed": 3}
    r = post(server, js(body))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["n"] == 4 and doc["model"]["name"] == "translate" and doc["seed"] == 3
    local = TranslateService.from_weights(weights, HANDLER, device="cpu")
    from chromaflow.serving import Request

    ref = local.handle([Request(js(body), "application/json")])[0].json()
    for got, want in zip(decoded(doc), decoded(ref), strict=True):
        assert got.shape == (40, 56, 3) and np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_multipart_with_a_style_part(server):
    files = {"image": ("e.png", edges_png(), "image/png"), "style": ("s.png", encode(random_rgb(40, 40)), "image/png")}
    r = post(server, data={"n": "2", "seed": "1"}, ctype=None, files=files)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["source"] == "style" and len(r.json()["images"]) == 2


def test_raw_image_with_header_fields(server):
    """TorchServe 0.12 drops a POST's query string; the fields travel as X-Chromaflow-* headers."""
    headers = {"X-Chromaflow-N": "1", "X-Chromaflow-Seed": "2", "X-Chromaflow-Format": "png"}
    r = post(server, edges_png(), "image/png", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (56, 40)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_gets_4xx_json_and_serving_goes_on(server, kind):
    data, ctype, status = BAD[kind]
    r = post(server, data, ctype)
    assert r.status_code == status, r.text[:300]
    assert r.json()["error"] == kind and r.json()["code"] == status
    assert post(server, js({"image": base64.b64encode(edges_png()).decode()})).status_code == 200


@pytest.mark.parametrize("case", sorted(HOSTILE_JSON))
def test_hostile_json_alone_gets_400_json(server, case):
    body, kind = HOSTILE_JSON[case]
    r = post(server, body)
    assert r.status_code == 400 and r.json()["error"] == kind and len(r.content) < 400


def test_bad_fields_get_400(server):
    img = base64.b64encode(edges_png()).decode()
    for change, kind in [({"n": 7}, "bad_option"), ({"z": [[1.0]]}, "bad_z"), ({"seed": "x"}, "bad_option")]:
        r = post(server, js({"image": img} | change))
        assert r.status_code == 400 and r.json()["error"] == kind


def test_hostile_bodies_mixed_into_batches_leave_good_requests_untouched(server):
    goods = [
        js({"image": base64.b64encode(edges_png(30 + 7 * i, 50, i)).decode(), "n": 2, "seed": i}) for i in range(4)
    ]
    clean = [post(server, g) for g in goods]
    assert all(r.status_code == 200 for r in clean)
    jobs = [(g, None) for g in goods] + [(body, kind) for body, kind in HOSTILE_JSON.values()]
    order = [jobs[i] for i in np.random.default_rng(0).permutation(len(jobs))]
    with ThreadPoolExecutor(len(order)) as pool:
        for _ in range(2):
            answers = list(pool.map(lambda j: post(server, j[0]), order))
            for (body, kind), r in zip(order, answers, strict=True):
                if kind is None:
                    assert r.status_code == 200, r.text[:300]
                    want = decoded(clean[goods.index(body)].json())
                    got = decoded(r.json())
                    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(got, want, strict=True))
                else:
                    assert r.status_code == 400 and r.json()["error"] == kind


# ------------------------------------------------------------------------------------------- the gateway in front


@pytest.fixture(scope="module")
def gateway(server):
    from chromaflow.gateway import Gateway, GatewayConfig
    from chromaflow.gateway.server import models_for

    cfg = GatewayConfig(upstream=server.inference_url, key_file=server.key_file, models=models_for(server.model_names))
    with Gateway(cfg) as gw:
        yield gw


def test_gateway_serves_the_variations_mode_and_proxies_translate(gateway):
    page = requests.get(gateway.url + "/", timeout=10).text
    assert 'id="mode-variations"' in page and 'id="draw"' in page
    health = requests.get(gateway.url + "/api/health", timeout=10).json()
    assert health["endpoints"]["translate"] is True and health["endpoints"]["colorize"] is False
    body = {"image": base64.b64encode(edges_png()).decode(), "n": 3, "seed": 5}
    r = requests.post(gateway.url + "/api/translate", json=body, headers=gateway.origin, timeout=60)
    assert r.status_code == 200 and r.json()["n"] == 3 and r.json()["seed"] == 5
    bad = requests.post(gateway.url + "/api/translate", json=body | {"n": 99}, headers=gateway.origin, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_option"  # upstream errors pass through
    foreign = requests.post(gateway.url + "/api/translate", json=body, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
