"""``chromaflow translate``: N PNGs and a record that reproduces them, through the endpoint's service."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from tests.serving.conftest import encode, random_rgb
from tests.serving.test_translate_service import edges_png, tiny_translator

from chromaflow.cli import main as cli_main
from chromaflow.models import save_weights
from chromaflow.serving.translate_files import MANIFEST


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    save_weights(tiny_translator(), d / "model.safetensors")
    return d


def test_cli_writes_n_samples_that_its_codes_reproduce(run_dir, tmp_path):
    (tmp_path / "e.png").write_bytes(edges_png(36, 52))
    args = ["translate", "--model", str(run_dir), "--input", str(tmp_path / "e.png"), "--size", "64"]
    assert cli_main([*args, "--samples", "3", "--seed", "9", "--out", str(tmp_path / "a")]) == 0
    rec = json.loads((tmp_path / "a" / MANIFEST).read_text())
    assert rec["files"] == ["e_0.png", "e_1.png", "e_2.png"] and rec["seed"] == 9 and rec["source"] == "prior"
    outs = [np.asarray(Image.open(tmp_path / "a" / f)) for f in rec["files"]]
    assert all(o.shape == (36, 52, 3) for o in outs)
    (tmp_path / "z.json").write_text(json.dumps(rec["z"][2:]))
    assert cli_main([*args, "--samples", "1", "--z", str(tmp_path / "z.json"), "--out", str(tmp_path / "b")]) == 0
    again = np.asarray(Image.open(tmp_path / "b" / "e_0.png"))
    assert np.abs(again.astype(int) - outs[2].astype(int)).max() <= 1
    (tmp_path / "s.png").write_bytes(encode(random_rgb(40, 40)))
    assert cli_main([*args, "--samples", "2", "--style", str(tmp_path / "s.png"), "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / MANIFEST).read_text())["source"] == "style"


def test_cli_refusal_names_the_reason(run_dir, tmp_path, capsys):
    (tmp_path / "e.png").write_bytes(b"not an image")
    args = ["translate", "--model", str(run_dir), "--input", str(tmp_path / "e.png"), "--out", str(tmp_path / "o")]
    assert cli_main(args) == 2
    assert "not_an_image" in capsys.readouterr().err and not (tmp_path / "o" / MANIFEST).exists()
    assert cli_main([*args[:-4], "--input", str(tmp_path / "none.png"), "--out", str(tmp_path / "o")]) == 2


def test_shipped_translator_is_the_default_and_served_as_translate(tmp_path):
    """The committed weights/bicyclegan: hash-checked, served as ``translate`` with its template's settings."""
    from chromaflow.export.mar import handler_kind, served_settings
    from chromaflow.models.translation import SERVED_SIZE

    (tmp_path / "e.png").write_bytes(edges_png(60, 90))
    assert (
        cli_main(["translate", "--input", str(tmp_path / "e.png"), "--samples", "2", "--out", str(tmp_path / "o")]) == 0
    )
    rec = json.loads((tmp_path / "o" / MANIFEST).read_text())
    assert rec["model"]["name"] == "bicyclegan" and rec["size"] == served_settings("bicyclegan").size == SERVED_SIZE
    assert handler_kind("bicyclegan").default_name == "translate"


def test_serve_exports_the_shipped_translator_as_translate(tmp_path, monkeypatch):
    """``chromaflow serve`` with no --mar serves every shipped model with a handler: bicyclegan as ``translate``."""
    import shutil

    from chromaflow.models.shipped import weights_root
    from chromaflow.serve import archive_names, shipped_archives

    shutil.copytree(weights_root() / "bicyclegan", tmp_path / "weights" / "bicyclegan")
    monkeypatch.setenv("CHROMAFLOW_WEIGHTS", str(tmp_path / "weights"))
    [(name, mar)] = shipped_archives(tmp_path / "mar")
    assert name is None and mar.name == "translate.mar" and archive_names(mar) == ["translate"]
