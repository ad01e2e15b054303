"""2AFC training through the engine (tiny), the ranking network vs the official one, the endpoint core."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from chromaflow.evaluate import lpips as L
from chromaflow.serving.request import Request
from chromaflow.train.tasks import lpips as T

from .test_bapps import _write_set


def test_ranknet_matches_official():
    import lpips

    off = lpips.Dist2LogitLayer(chn_mid=32)
    ours = T.RankNet()
    ours.load_state_dict(off.state_dict(), strict=True)
    d0, d1 = torch.rand(7), torch.rand(7)
    torch.testing.assert_close(ours(d0, d1), off(d0.view(-1, 1, 1, 1), d1.view(-1, 1, 1, 1)).flatten())


@pytest.mark.parametrize("variant", ["lin", "scratch"])
def test_train_lin_scratch_tiny(tmp_path, variant):
    from chromaflow.evaluate.lpips_eval import load_any_lpips
    from chromaflow.train.engine import TrainConfig, fit

    for split in ("train", "val"):
        _write_set(tmp_path / "d" / "2afc" / split / "s", n=4, size=32, values=[0, 1, 1, 0])
    trunk = L.random_trunk_state("squeeze", seed=1)
    torch.save(trunk, tmp_path / "trunk.pth")
    task = T.LpipsTask(tmp_path / "d", variant=variant, net="squeeze", trunk=str(tmp_path / "trunk.pth"))
    model = task.build_model()
    assert all(float(w.detach().min()) >= 0 for w in model.lpips.lins)
    frozen = not any(p.requires_grad for p in model.lpips.net.parameters())
    assert frozen == (variant == "lin")
    m = fit(
        task, TrainConfig(out=str(tmp_path / "run"), steps=3, batch_size=4, lr=1e-2, weight_decay=0.0, device="cpu")
    )
    assert 0.0 <= m["val_2afc"] <= 1.0 and np.isfinite(m["final_loss"])
    lp = load_any_lpips(tmp_path / "run")
    assert all(float(w.min()) >= 0 for w in lp.lins)
    if variant == "lin":  # the frozen trunk is exactly the one given
        torch.testing.assert_close(lp.net.state_dict(), trunk)
    with pytest.raises(ValueError, match="needs --trunk"):
        T.LpipsTask(tmp_path / "d", variant="tune", net="squeeze")


def _b64(arr: np.ndarray, fmt="PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def service():
    from chromaflow.serving.lpips_core import LpipsService

    return LpipsService(L.build_lpips("alex", trunk="random"))


def test_endpoint_distance_and_map(service):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 20, a.shape), 0, 255).astype(np.uint8)
    body = json.dumps({"image0": _b64(a), "image1": _b64(b), "spatial": True}).encode()
    (r,) = service.handle([Request(body=body, content_type="application/json")])
    assert r.status == 200, r.body
    out = r.json()
    want = service.model(torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1))
    assert out["distance"] == pytest.approx(float(want[0]), abs=1e-6) and out["size"] == [48, 64]
    png = Image.open(io.BytesIO(base64.b64decode(out["spatial_png"])))
    assert png.size == (64, 48) and out["resized"] is False
    big = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)  # stated rule: image1 resized to image0's size
    (r,) = service.handle(
        [Request(body=json.dumps({"image0": _b64(a), "image1": _b64(big)}), content_type="application/json")]
    )
    assert r.status == 200 and r.json()["resized"] is True and "spatial_png" not in r.json()


@pytest.mark.parametrize(
    ("payload", "status", "kind"),
    [
        (b"", 400, "empty_body"),
        (b"{not json", 400, "bad_json"),
        (json.dumps({"image0": "x"}).encode(), 400, "missing_image"),
        (json.dumps({"image0": "@@@", "image1": "@@@"}).encode(), 400, "bad_base64"),
        (json.dumps({"image0": base64.b64encode(b"nope").decode(), "image1": "x"}).encode(), 400, "not_an_image"),
        ("small", 400, "too_small"),
        ("mismatch", 400, "size_mismatch"),
        ("spatial", 400, "bad_option"),
    ],
)
def test_endpoint_errors(service, payload, status, kind):
    a = np.zeros((40, 40, 3), np.uint8)
    if payload == "small":
        payload = json.dumps({"image0": _b64(a[:20, :20]), "image1": _b64(a[:20, :20])})
    elif payload == "mismatch":
        payload = json.dumps({"image0": _b64(a), "image1": _b64(a[:32]), "resize": "none"})
    elif payload == "spatial":
        payload = json.dumps({"image0": _b64(a), "image1": _b64(a), "spatial": "maybe"})
    (r,) = service.handle([Request(body=payload, content_type="application/json")])
    assert r.status == status and r.json()["error"] == kind, r.body
    assert r.json()["message"]
