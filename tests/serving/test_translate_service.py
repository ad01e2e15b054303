"""The ``translate`` service without a server: the three request shapes (JSON, multipart fields, raw image with
query fields), answers that reproduce from their seed / z, every refusal named, and per-request isolation with the
hostile corpus in the batch."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from tests.serving.conftest import HOSTILE_JSON, encode, random_rgb

from chromaflow.models import create_model, save_weights
from chromaflow.serving import Request, request_from_torchserve
from chromaflow.serving.translate import TranslateService

HANDLER = {"size": 64, "max_samples": 6}


def tiny_translator(encoder: str | None = "resnet") -> torch.nn.Module:
    torch.manual_seed(0)
    net = create_model("bicyclegan", num_downs=5, width=0.125, input_nc=1, paths=(), e_depth=3, encoder=encoder)
    with torch.no_grad():
        for p in net.generator.parameters():
            p.mul_(20.0)  # louder than the 0.02-gain init: samples differ visibly
    return net.eval()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    path = tmp_path_factory.mktemp("translate") / "bg.safetensors"
    save_weights(tiny_translator(), path)
    return TranslateService.from_weights(path, HANDLER, device="cpu")


def edges_png(h: int = 40, w: int = 56, seed: int = 0) -> bytes:
    m = np.full((h, w), 255, np.uint8)  # black lines on white, as people draw
    rng = np.random.default_rng(seed)
    m[rng.integers(0, h, 3), :] = 0
    m[:, rng.integers(0, w, 3)] = 0
    return encode(m)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def js(body: dict) -> Request:
    return Request(json.dumps(body).encode(), "application/json")


def images(resp) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(s)))) for s in resp.json()["images"]]


def test_json_answer_has_n_samples_that_reproduce_from_seed_and_z(service):
    r = service.handle([js({"image": b64(edges_png()), "n": 3, "seed": 11})])[0]
    assert r.status == 200 and r.content_type == "application/json"
    doc = r.json()
    assert (doc["n"], doc["seed"], doc["source"], doc["inverted"]) == (3, 11, "prior", True)
    outs = images(r)
    assert [o.shape for o in outs] == [(40, 56, 3)] * 3 and len({o.tobytes() for o in outs}) == 3
    again = service.handle([js({"image": b64(edges_png()), "n": 1, "z": doc["z"][1:2]})])[0]
    assert again.json()["source"] == "given" and again.json()["seed"] is None
    assert np.abs(images(again)[0].astype(int) - outs[1].astype(int)).max() <= 1


def test_raw_image_with_query_fields_and_raw_answer(service):
    r = service.handle([Request(edges_png(), "image/png", params={"n": "1", "seed": "4", "format": "png"})])[0]
    assert r.status == 200 and r.content_type == "image/png"
    ref = service.handle([js({"image": b64(edges_png()), "seed": 4})])[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.body))), images(ref)[0])
    headers = {"x-chromaflow-seed": "4", "X-Chromaflow-Format": "png"}
    by_header = service.handle([Request(edges_png(), "image/png", headers=headers)])[0]
    assert by_header.body == r.body


def test_multipart_fields_from_torchserve_carry_the_style_bytes(service):
    style = encode(random_rgb(50, 70, seed=3))
    item = {"image": bytearray(edges_png()), "style": bytearray(style), "n": bytearray(b"2"), "seed": b"5"}

    class Ctx:
        def get_all_request_header(self, i):
            return {"image": {"content-type": "image/png"}, "style": {"content-type": "image/png"}}

    req = request_from_torchserve(item, Ctx().get_all_request_header(0))
    assert req.files["style"] == style
    r = service.handle([req])[0]
    assert r.status == 200 and r.json()["source"] == "style" and r.json()["n"] == 2
    by_json = service.handle([js({"image": b64(edges_png()), "style": b64(style), "n": 2, "seed": 5})])[0]
    assert by_json.json()["z"] == r.json()["z"]


BAD = {
    "n_zero": ({"n": 0}, 400, "bad_option"),
    "n_over_config": ({"n": 7}, 400, "bad_option"),
    "n_text": ({"n": "four"}, 400, "bad_option"),
    "seed_negative": ({"seed": -1}, 400, "bad_option"),
    "seed_too_big": ({"seed": 2**53}, 400, "bad_option"),
    "z_shape": ({"n": 2, "z": [[0.0] * 8]}, 400, "bad_z"),
    "z_row": ({"z": [[0.0] * 3]}, 400, "bad_z"),
    "z_nan_text": ({"z": [["NaN"] + [0.0] * 7]}, 400, "bad_z"),
    "z_and_seed": ({"z": [[0.0] * 8], "seed": 1}, 400, "conflicting_options"),
    "raw_format_many": ({"n": 2, "format": "png"}, 400, "bad_option"),
    "bad_kind": ({"input_kind": "sketch"}, 400, "bad_option"),
    "bad_polarity": ({"polarity": "sideways"}, 400, "bad_option"),
    "style_not_image": ({"style": b64(b"nope" * 20)}, 400, "not_an_image"),
    "style_bad_base64": ({"style": "@@@"}, 400, "bad_base64"),
    "no_image": ({"image": None}, 400, "bad_json"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_are_named(service, case):
    change, status, kind = BAD[case]
    r = service.handle([js({"image": b64(edges_png())} | change)])[0]
    assert (r.status, r.json()["error"]) == (status, kind), r.body[:200]
    if case.startswith("style"):
        assert r.json()["message"].startswith("style:")


def test_style_on_a_model_without_encoder_is_400(tmp_path):
    path = tmp_path / "noenc.safetensors"
    save_weights(tiny_translator(encoder=None), path)
    svc = TranslateService.from_weights(path, HANDLER, device="cpu")
    r = svc.handle([js({"image": b64(edges_png()), "style": b64(encode(random_rgb(20, 20)))})])[0]
    assert (r.status, r.json()["error"]) == (400, "style_unsupported")


def test_other_architectures_are_refused(tmp_path):
    path = tmp_path / "eccv.safetensors"
    save_weights(create_model("eccv16", width=1 / 16), path)
    with pytest.raises(ValueError, match="not bicyclegan"):
        TranslateService.from_weights(path, HANDLER, device="cpu")


def test_hostile_corpus_in_the_batch_leaves_good_requests_untouched(service):
    goods = [js({"image": b64(edges_png(30 + 9 * i, 50, seed=i)), "n": 2, "seed": i}) for i in range(2)]
    clean = [service.handle([g])[0] for g in goods]
    hostile = [Request(body, "application/json") for body, _ in HOSTILE_JSON.values()]
    hostile += [Request(b"\x00\xff%zz", "application/x-www-form-urlencoded"), js({"image": b64(edges_png()), "n": 99})]
    out = service.handle([goods[0], *hostile[:4], goods[1], *hostile[4:]])
    assert out[0].body == clean[0].body and out[5].body == clean[1].body
    bad = [r for i, r in enumerate(out) if i not in (0, 5)]
    assert [r.status for r in bad] == [400] * len(HOSTILE_JSON) + [415, 400]
    assert all(b"\xff" not in r.body and len(r.body) < 400 for r in bad)


def test_a_fault_on_one_request_is_its_500_only(service, monkeypatch):
    """A server fault inside the batch (here: one item's generator pass raises) answers that request 500."""
    import chromaflow.serving.translate as mod

    real = mod.translate_batch

    def flaky(model, items, size):
        if any(it.n == 5 for it in items):
            raise RuntimeError("boom")
        return real(model, items, size=size)

    monkeypatch.setattr(mod, "translate_batch", flaky)
    good = js({"image": b64(edges_png()), "n": 2, "seed": 1})
    out = service.handle([good, js({"image": b64(edges_png()), "n": 5}), good])
    assert [r.status for r in out] == [200, 500, 200] and out[0].body == out[2].body
