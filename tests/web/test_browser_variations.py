"""End to end in headless Chromium: ``chromaflow serve`` with a translate archive plus the gateway; in the
variations mode, draw black lines on the white canvas, ask for 3 samples with a seed, and get what the handler
gives in-process for the same drawing (the server inverts the drawing to the training polarity).

Run with ``make test-browser`` (installs Debian's chromium); deselected by the default run.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from tests.serving.test_translate_service import tiny_translator
from tests.web.test_browser import CHROMIUM, pytestmark  # noqa: F401  (the browser marks and skips)

from chromaflow.export import export_mar
from chromaflow.models import save_weights
from chromaflow.serve import stop_server
from chromaflow.serving import Request
from chromaflow.serving.translate import TranslateService

HANDLER = {"size": 64, "num_threads": 1}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from chromaflow.cli import main

    root = tmp_path_factory.mktemp("site-translate")
    save_weights(tiny_translator(), root / "bg.safetensors")
    mar = export_mar(root / "bg.safetensors", root / "export", handler_config=HANDLER)
    run = root / "run"
    argv = ["serve", "--mar", str(mar), "--run-dir", str(run), "--port", "0", "--management-port", "0"]
    argv += ["--metrics-port", "0", "--gateway", "0"]
    try:
        assert main(argv) == 0
        state = json.loads((run / "server.json").read_text())
        assert state["model_names"] == ["translate"]
        yield state | {"weights": root / "bg.safetensors"}
    finally:
        stop_server(run)


def test_draw_generate_three_samples(site):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(site["gateway_url"])
            page.click("#tab-variations")
            assert page.is_visible("#draw") and page.is_hidden("#mode-colorize")
            box = page.locator("#draw").bounding_box()
            for y in (60, 130, 200):  # three horizontal strokes
                page.mouse.move(box["x"] + 20, box["y"] + y)
                page.mouse.down()
                page.mouse.move(box["x"] + 230, box["y"] + y + 10, steps=8)
                page.mouse.up()
            page.fill("#n", "3")
            page.fill("#seed", "7")
            page.click("#generate")
            page.wait_for_selector('#samples[data-renders="1"]', timeout=60_000)
            shown = page.eval_on_selector_all("#samples img", "els => els.map(e => e.src)")
            drawing = page.evaluate("document.getElementById('draw').toDataURL('image/png')")
            assert page.locator("#v-status.error").count() == 0, page.text_content("#v-status")
        finally:
            browser.close()
    assert errors == [] and len(shown) == 3
    svc = TranslateService.from_weights(site["weights"], HANDLER, device="cpu")
    body = {"image": drawing.split(",", 1)[1], "n": 3, "seed": 7}
    ref = svc.handle([Request(body=body, content_type="application/json")])[0].json()
    assert ref["inverted"] is True  # black on white, as drawn
    for src, want in zip(shown, ref["images"], strict=True):
        got = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))
        exp = np.asarray(Image.open(io.BytesIO(base64.b64decode(want))))
        assert got.shape == (256, 256, 4) and (got[..., 3] == 255).all()  # the canvas's (opaque) alpha, kept
        assert np.abs(got.astype(int) - exp.astype(int)).max() <= 1
