"""Report helpers (Markdown / self-contained HTML) and the task dispatch of ``chromaflow evaluate``."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from chromaflow.evaluate import cli
from chromaflow.evaluate import report as R


@pytest.mark.parametrize(
    "img",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 4, 3),
        np.linspace(0, 1, 24).reshape(2, 4, 3),
        torch.arange(24, dtype=torch.uint8).reshape(2, 4, 3).permute(2, 0, 1),
        Image.fromarray(np.arange(24, dtype=np.uint8).reshape(2, 4, 3)),
        np.arange(8, dtype=np.uint8).reshape(2, 4),
    ],
    ids=["uint8", "float", "torch-chw", "pil", "gray"],
)
def test_png_data_uri_round_trip(img):
    uri = R.png_data_uri(img)
    assert uri.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert back.shape[:2] == (2, 4)
    if isinstance(img, np.ndarray) and img.dtype == np.uint8:
        np.testing.assert_array_equal(back, img)
    if isinstance(img, torch.Tensor):
        np.testing.assert_array_equal(back, img.permute(1, 2, 0).numpy())
    if isinstance(img, np.ndarray) and img.dtype == np.float64:
        np.testing.assert_array_equal(back, (img * 255 + 0.5).astype(np.uint8))


def test_png_data_uri_rejects_bad_shape():
    with pytest.raises(ValueError, match="image"):
        R.png_data_uri(np.zeros((2, 3, 5), dtype=np.uint8))


def test_markdown_table():
    md = R.markdown_table([{"m": "Gray", "auc": 89.123, "x": None}, ["a|b", math.inf, math.nan]], ["m", "auc", "x"])
    assert md.splitlines() == ["| m | auc | x |", "|---|---|---|", "| Gray | 89.12 | - |", "| a\\|b | inf | - |"]
    with pytest.raises(ValueError, match="columns"):
        R.markdown_table([[1, 2]], ["a"])


def test_html_page_is_self_contained_and_escaped():
    page = R.html_page(
        "T<1>",
        [("gallery", R.image_grid([[np.zeros((2, 2, 3), np.uint8), None]], ["a", "b"], ["row<x>"])),
         ("table", R.html_table([["<b>", 1.0]], ["k", "v"]))],
    )  # fmt: skip
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "T&lt;1&gt;" in page and "row&lt;x&gt;" in page and "&lt;b&gt;" in page
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere


def test_task_module_names():
    assert cli.task_module_name("colorization") == "chromaflow.evaluate.colorization"
    assert cli.task_module_name("lpips") == "chromaflow.evaluate.lpips_eval"
    with pytest.raises(ValueError, match="module name"):
        cli.task_module_name("../etc")
    assert "colorization" in cli.available_tasks()


def test_unknown_task_is_a_clear_error(caplog):
    from chromaflow.cli import main

    assert main(["evaluate", "--task", "nosuchtask", "--out", "x"]) == 2
    assert "nosuchtask" in caplog.text and "colorization" in caplog.text


def test_task_options_reach_the_task(tmp_path, caplog):
    """The options after --task NAME are parsed by the task's own parser (here: a missing data dir)."""
    from chromaflow.cli import main

    rc = main(["evaluate", "--task", "colorization", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "not a directory" in caplog.text
