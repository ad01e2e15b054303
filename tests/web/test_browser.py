"""End to end in headless Chromium: ``chromaflow serve`` with the automatic and the guided archive plus the gateway,
then upload a photo, see the automatic result, click a point, pick a suggested colour, download the PNG.

Run with ``make test-browser`` (installs Debian's chromium); deselected by the default run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.serving.conftest import tiny_model
from tests.web.conftest import b64, decode_png, png_bytes

from chromaflow.export import export_mar
from chromaflow.models import save_weights
from chromaflow.serve import stop_server
from chromaflow.serving import Request
from chromaflow.serving.guided import GuidedService

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: `make browser` installs Debian's chromium"),
    pytest.mark.skipif(shutil.which("java") is None, reason="TorchServe needs Java 17 (java not on PATH)"),
]
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HANDLER = {"size": 64, "num_threads": 1}


@pytest.fixture(scope="module")
def site(guided_weights, tmp_path_factory):
    """``chromaflow serve --mar auto --mar guided --gateway 0`` as a user runs it; stopped afterwards."""
    from chromaflow.cli import main

    root = tmp_path_factory.mktemp("site")
    save_weights(tiny_model(), root / "auto.safetensors")
    auto = export_mar(root / "auto.safetensors", root / "export", handler_config=HANDLER)
    guided = export_mar(guided_weights, root / "export", handler_config=HANDLER)
    run = root / "run"
    argv = ["serve", "--mar", str(auto), "--mar", str(guided), "--run-dir", str(run)]
    argv += ["--port", "0", "--management-port", "0", "--metrics-port", "0", "--gateway", "0"]
    try:
        assert main(argv) == 0
        state = json.loads((run / "server.json").read_text())
        assert state["model_names"] == ["colorize", "colorize_guided", "palette", "gamut"]
        yield state
    finally:
        stop_server(run)


def test_upload_hint_palette_pick_and_download(site, photo, guided_weights, tmp_path):
    from playwright.sync_api import sync_playwright

    photo_path = tmp_path / "kodim23_small.png"
    Image.fromarray(photo).save(photo_path)
    errors: list[str] = []
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS, accept_downloads=True
        )
        try:
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(site["gateway_url"])
            # empty state: a sentence, not an <img> without src (a broken-image icon)
            assert page.is_hidden("#result") and page.is_visible("#result-empty")
            page.set_input_files("#file", str(photo_path))
            page.wait_for_selector('#result[data-renders="1"]', timeout=60_000)  # the automatic colorization
            assert page.is_visible("#result") and page.is_hidden("#result-empty")
            assert page.evaluate("window.chromaflow.state.endpoints.colorize") is True
            page.click("#input-canvas", position={"x": 60, "y": 40})  # canvas is 144x96: 1 px = 1 image px
            page.wait_for_selector("#palette .swatch", timeout=60_000)
            assert 1 <= page.locator("#palette .swatch").count() <= 9
            page.locator("#palette .swatch").first.click()  # the most likely suggested colour
            page.wait_for_selector('#result[data-renders="2"]', timeout=60_000)
            assert page.text_content("#hint-count") == "1 point"
            hints = page.evaluate("window.chromaflow.state.hints")
            assert page.locator("#status.error").count() == 0, page.text_content("#status")
            with page.expect_download() as dl:
                page.click("#download")
            assert dl.value.suggested_filename == "kodim23_small_colorized.png"
            downloaded = decode_png(Path(dl.value.path()).read_bytes())
        finally:
            ctx.close()
    assert errors == []
    assert len(hints) == 1 and (hints[0]["x"], hints[0]["y"]) == (60, 40)
    # the download is what the handler gives for that one hint, computed here in-process
    svc = GuidedService.from_weights(guided_weights, HANDLER, device="cpu")
    body = {"image": b64(png_bytes(photo)), "hints": [{k: hints[0][k] for k in ("x", "y", "a", "b")}]}
    ref = decode_png(svc.handle([Request(body=body, content_type="application/json")])[0].body)
    assert downloaded.shape == photo.shape
    assert np.abs(downloaded.astype(int) - ref.astype(int)).max() <= 1
