"""The LPIPS endpoint end to end: ``lpips`` weights file -> ``export_mar`` -> a real TorchServe.

One server for the module: LPIPS-squeeze with a seeded random trunk (``random_trunk_state``, no download) and
the official v0.1 linear weights. Served distances are compared with the model run in-process on the same
decoded pixels (``chromaflow.models.lpips``; the metric itself is checked against the official package in
test_metric.py).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import torch
from PIL import Image
from tests.serving.conftest import HOSTILE_JSON, png_claiming_size

from chromaflow.export import export_mar
from chromaflow.models import lpips as L
from chromaflow.models import save_weights
from chromaflow.serve import archive_names, start_server

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="TorchServe needs Java 17 (java not on PATH)")


@pytest.fixture(scope="module")
def lpips_file(tmp_path_factory):
    model = L.build_lpips("squeeze", trunk=L.random_trunk_state("squeeze", seed=3), lin="official")
    path = tmp_path_factory.mktemp("lpips-model") / "squeeze.safetensors"
    save_weights(model, path)
    return path


@pytest.fixture(scope="module")
def model(lpips_file):
    return L.load_distance(lpips_file)


@pytest.fixture(scope="module")
def server(lpips_file, tmp_path_factory):
    if shutil.which("java") is None:
        pytest.skip("TorchServe needs Java 17 (java not on PATH)")
    root = tmp_path_factory.mktemp("ts-lpips")
    mar = export_mar(lpips_file, root / "export", handler_config={"num_threads": 1, "max_pixels": 1_000_000})
    assert mar.name == "lpips.mar" and archive_names(mar) == ["lpips"]
    with start_server(mar, root / "run", timeout_s=150) as srv:
        yield srv


@pytest.fixture(scope="module")
def crops(sample_dir) -> dict[str, np.ndarray]:
    """Real photo crops (H, W, 3) uint8: two crops of kodim01, the second shifted by (3, 2) px; one of kodim05
    at the same place; a smaller 40 x 56 crop of kodim23."""
    k1 = np.asarray(Image.open(sample_dir / "kodim01.jpg").convert("RGB"))
    k5 = np.asarray(Image.open(sample_dir / "kodim05.jpg").convert("RGB"))
    k23 = np.asarray(Image.open(sample_dir / "kodim23.jpg").convert("RGB"))
    return {
        "a": k1[100:164, 200:296].copy(),
        "a_shift": k1[103:167, 202:298].copy(),
        "b": k5[100:164, 200:296].copy(),
        "small": k23[200:240, 300:356].copy(),
        "small2": k23[210:250, 310:366].copy(),
    }


def png_b64(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def post(srv, body, content_type="application/json", **headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {**srv.auth_headers(content_type), **headers}
    return requests.post(srv.predict_url, data=data, headers=h, timeout=60)


def in_process(model, x0: np.ndarray, x1: np.ndarray) -> float:
    t0, t1 = (torch.from_numpy(x).permute(2, 0, 1)[None] for x in (x0, x1))
    with torch.no_grad():
        return float(model(t0, t1)[0])


# --------------------------------------------------------------------------------------------- export only


def test_archive_holds_safetensors_and_the_lpips_handler(lpips_file, tmp_path):
    mar = export_mar(lpips_file, tmp_path, batch_size=4, version="2")
    z = zipfile.ZipFile(mar)
    assert set(z.namelist()) == {
        "MAR-INF/MANIFEST.json", "lpips.safetensors", "chromaflow_model.json", "model-config.yaml", "lpips_handler.py"
    }  # fmt: skip
    assert z.read("lpips.safetensors") == lpips_file.read_bytes()  # the safetensors file as written, no pickle
    meta = json.loads(z.read("chromaflow_model.json"))
    assert meta["weights"] == "lpips.safetensors" and meta["config"]["kwargs"]["net"] == "squeeze"
    assert meta["config"]["name"] == "lpips" and meta["name"] == "lpips"
    import yaml

    cfg = yaml.safe_load(z.read("model-config.yaml"))
    assert cfg["batchSize"] == 4 and set(cfg["handler"]) == {"max_pixels", "num_threads", "max_memory_mb"}
    assert json.loads(z.read("MAR-INF/MANIFEST.json"))["model"]["handler"] == "lpips_handler.py"
    before = mar.stat().st_mtime_ns
    assert export_mar(lpips_file, tmp_path, batch_size=4, version="2") == mar and mar.stat().st_mtime_ns == before


def test_export_refuses_bad_lpips_files_and_settings(lpips_file, tmp_path):
    from safetensors.torch import load_file, save_file

    with pytest.raises(ValueError, match="unknown key"):
        export_mar(lpips_file, tmp_path, handler_config={"size": 256})  # a colorization key
    broken = tmp_path / "broken.safetensors"
    state = load_file(str(lpips_file))
    state.pop(sorted(state)[0])
    from safetensors import safe_open

    with safe_open(str(lpips_file), framework="pt") as f:
        save_file(state, str(broken), metadata=f.metadata())
    with pytest.raises(ValueError, match="broken.safetensors"):
        export_mar(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------- served


@needs_java
def test_served_distance_equals_in_process(server, model, crops):
    pairs = [("a", "a_shift"), ("a", "b"), ("small", "small2"), ("b", "a_shift"), ("small2", "small")]
    bodies = [{"image0": png_b64(crops[p]), "image1": png_b64(crops[q])} for p, q in pairs]
    with ThreadPoolExecutor(len(bodies)) as pool:  # concurrent: mixed sizes may share a batch
        answers = list(pool.map(lambda b: post(server, b), bodies))
    for (p, q), r in zip(pairs, answers, strict=True):
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["distance"] == pytest.approx(in_process(model, crops[p], crops[q]), abs=1e-5), (p, q)
        assert doc["size"] == list(crops[p].shape[:2]) and doc["resized"] is False
        assert (doc["net"], doc["version"]) == ("squeeze", "0.1") and "spatial_png" not in doc
    d = {pq: r.json()["distance"] for pq, r in zip(pairs, answers, strict=True)}
    assert 0 < d[("a", "a_shift")] < d[("a", "b")]  # a 3 px shift is closer than another photo


@needs_java
def test_identical_images_give_zero(server, crops):
    r = post(server, {"image0": png_b64(crops["b"]), "image1": png_b64(crops["b"])})
    assert r.status_code == 200 and r.json()["distance"] == pytest.approx(0.0, abs=1e-9)


@needs_java
def test_spatial_map_comes_back_as_png(server, model, crops):
    a, b = crops["a"], crops["b"]
    doc = post(server, {"image0": png_b64(a), "image1": png_b64(b), "spatial": True}).json()
    assert doc["distance"] == pytest.approx(in_process(model, a, b), abs=1e-5)
    im = Image.open(io.BytesIO(base64.b64decode(doc["spatial_png"])))
    assert im.format == "PNG" and im.size == (a.shape[1], a.shape[0]) and im.mode == "RGB"
    with torch.no_grad():
        m = model(torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1), spatial=True)
    assert doc["spatial_max"] == pytest.approx(float(m.max()), rel=1e-4)
    assert len(np.unique(np.asarray(im).reshape(-1, 3), axis=0)) > 10  # a map, not a flat image


@needs_java
def test_different_sizes_follow_the_stated_rule(server, crops):
    doc = post(server, {"image0": png_b64(crops["small"]), "image1": png_b64(crops["a"])}).json()
    assert doc["resized"] is True and doc["size"] == [40, 56]
    r = post(server, {"image0": png_b64(crops["small"]), "image1": png_b64(crops["a"]), "resize": "none"})
    assert r.status_code == 400 and r.json()["error"] == "size_mismatch"


def _bad(crops) -> dict[str, tuple[bytes, str, int]]:
    a = png_b64(crops["a"])
    j = lambda d: json.dumps(d).encode()  # noqa: E731
    return {
        "not_an_image": (j({"image0": a, "image1": base64.b64encode(b"hello, not an image").decode()}), "application/json", 400),
        "missing_image": (j({"image0": a}), "application/json", 400),
        "bad_json": (b"{not json", "application/json", 400),
        "bad_base64": (j({"image0": a, "image1": "@@not base64@@"}), "application/json", 400),
        "too_small": (j({"image0": png_b64(crops["a"][:8, :8]), "image1": png_b64(crops["a"][:8, :8])}), "application/json", 400),
        "unsupported_content_type": (b"hello", "text/plain", 415),
        "too_many_pixels": (j({"image0": a, "image1": base64.b64encode(png_claiming_size(2000, 2000)).decode()}),
                            "application/json", 413),
    }  # fmt: skip


BAD_KINDS = ("not_an_image", "missing_image", "bad_json", "bad_base64", "too_small", "unsupported_content_type",
             "too_many_pixels")  # fmt: skip


@needs_java
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_gets_4xx_json_and_serving_goes_on(server, crops, kind):
    data, ctype, status = _bad(crops)[kind]
    r = post(server, data, ctype)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["error"] == kind and err["code"] == status and err["message"]
    ok = post(server, {"image0": png_b64(crops["small"]), "image1": png_b64(crops["small2"])})
    assert ok.status_code == 200 and ok.json()["distance"] > 0


@needs_java
def test_body_over_the_request_limit_is_refused_then_serving_goes_on(server, crops):
    r = post(server, b"\0" * (21 << 20))  # over max_request_size (20 MiB): TorchServe's frontend refuses it
    assert r.status_code == 413
    assert post(server, {"image0": png_b64(crops["a"]), "image1": png_b64(crops["a"])}).status_code == 200


@needs_java
def test_without_token_is_refused(server, crops):
    body = json.dumps({"image0": png_b64(crops["a"]), "image1": png_b64(crops["b"])})
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = requests.post(
            server.predict_url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=30
        )
        # TorchServe 0.12 answers a missing/wrong token with 400 InvalidKeyException (docs say 401)
        assert r.status_code in (400, 401) and "Token Authorization failed" in r.text


@needs_java
def test_hostile_json_alone_and_in_batches_leaves_good_pairs_untouched(server, crops):
    """Every malformed body of issue 17 alone (400 JSON), then all of them fired together with good pairs three
    times (batching on): each good pair gets the distance it gets alone."""
    for case, (body, kind) in HOSTILE_JSON.items():
        r = post(server, body)
        assert r.status_code == 400 and r.json()["error"] == kind, (case, r.text[:300])
    pairs = [("a", "a_shift"), ("small", "small2"), ("a", "b")]
    goods = [json.dumps({"image0": png_b64(crops[p]), "image1": png_b64(crops[q])}).encode() for p, q in pairs]
    clean = [post(server, b).json()["distance"] for b in goods]
    jobs = [(b, i) for i, b in enumerate(goods)] + [(b, kind) for b, kind in HOSTILE_JSON.values()]
    order = [jobs[i] for i in np.random.default_rng(2).permutation(len(jobs))]
    with ThreadPoolExecutor(len(order)) as pool:
        for _ in range(3):
            for (_, want), r in zip(order, pool.map(lambda j: post(server, j[0]), order), strict=True):
                if isinstance(want, int):
                    assert r.status_code == 200 and r.json()["distance"] == pytest.approx(clean[want], abs=1e-6)
                else:
                    assert r.status_code == 400 and r.json()["error"] == want
