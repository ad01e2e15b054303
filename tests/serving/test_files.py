"""``chromaflow colorize``: files on disk through the endpoint's service, with its served settings, no server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab
from tests.serving.conftest import encode, random_rgb

from chromaflow.export.mar import served_settings
from chromaflow.models import colorize, create_model, load_weights, save_weights
from chromaflow.models.shipped import shipped_weights
from chromaflow.serving.files import MANIFEST, colorize_files
from chromaflow.serving.guided import GuidedInput, guided_batch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder as users have them: photos, a subfolder, a transparent PNG, junk, a hidden file."""
    root = tmp_path_factory.mktemp("photos")
    (root / "trip").mkdir()
    (root / "a.jpg").write_bytes((REPO / "data/sample/kodim05.jpg").read_bytes())
    (root / "trip" / "b.png").write_bytes(encode(random_rgb(45, 70, seed=1)))
    rgba = np.concatenate([random_rgb(30, 40, seed=2), np.full((30, 40, 1), 128, np.uint8)], -1)
    (root / "trip" / "alpha.png").write_bytes(encode(rgba))
    (root / "notes.txt").write_text("not a photo")
    (root / "cut.jpg").write_bytes((REPO / "data/sample/kodim01.jpg").read_bytes()[:3000])
    (root / ".hidden.jpg").write_bytes((REPO / "data/sample/kodim02.jpg").read_bytes())
    return root


def lightness(path: Path) -> np.ndarray:
    return rgb2lab(np.asarray(Image.open(path).convert("RGB")))[..., 0]


def test_folder_colorized_with_served_settings_and_bad_files_listed(photos, tmp_path):
    out = tmp_path / "out"
    m = colorize_files([photos], out)
    assert json.loads((out / MANIFEST).read_text()) == json.loads(json.dumps(m))
    assert sorted(Path(w["output"]).relative_to(out).as_posix() for w in m["written"]) == [
        "a.png",
        "trip/alpha.png",
        "trip/b.png",
    ]
    assert {Path(r["input"]).name: r["error"] for r in m["rejected"]} == {
        "cut.jpg": "truncated_image",
        "notes.txt": "not_an_image",
    }  # the hidden file is neither
    served = served_settings("eccv16")
    assert m["settings"]["size"] == served.size and m["model"]["sha256"] == shipped_weights("colorization")[1]["sha256"]

    # the photo: what the library gives at the served size and method (a 256 px default would differ)
    model = load_weights(shipped_weights("colorization")[0])
    rgb = torch.from_numpy(np.array(Image.open(photos / "a.jpg").convert("RGB"))).permute(2, 0, 1)[None]
    ref = colorize(model, rgb, size=served.size, method=served.method)[0]
    got = torch.from_numpy(np.array(Image.open(out / "a.png"))).permute(2, 0, 1).float() / 255
    assert (got - ref).abs().max() <= 1 / 255 + 1e-6
    assert not torch.allclose(ref, colorize(model, rgb, size=256, method=served.method)[0], atol=2 / 255)
    # colour added, lightness kept (independent Lab: skimage), alpha kept
    assert np.abs(lightness(out / "a.png") - lightness(photos / "a.jpg")).mean() < 1.0
    assert np.abs(rgb2lab(np.asarray(Image.open(out / "a.png")))[..., 1:]).mean() > 2.0
    alpha = Image.open(out / "trip" / "alpha.png")
    assert alpha.mode == "RGBA" and np.all(np.asarray(alpha)[..., 3] == 128)


def test_guided_model_without_hints_and_jpeg_output(photos, tmp_path):
    m = colorize_files([photos / "trip" / "b.png"], tmp_path, model="guided", output="jpeg")
    assert [Path(w["output"]).name for w in m["written"]] == ["b.jpg"] and not m["rejected"]
    img = Image.open(tmp_path / "b.jpg")
    assert img.format == "JPEG" and img.size == (70, 45)
    model = load_weights(shipped_weights("guided")[0])
    rgb = torch.from_numpy(np.array(Image.open(photos / "trip" / "b.png").convert("RGB"))).permute(2, 0, 1)
    ref = guided_batch(model, [GuidedInput(rgb=rgb)], size=served_settings("siggraph17").size)[0].rgb
    got = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    assert (got - ref).abs().mean() < 3 / 255  # JPEG q95 of the same image


def test_name_collisions_and_output_folder_inside_the_input(photos, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.jpg").write_bytes((photos / "a.jpg").read_bytes())
    (src / "x.png").write_bytes((photos / "trip" / "b.png").read_bytes())
    (src / "x.v2.jpg").write_bytes((photos / "a.jpg").read_bytes())  # a dotted stem keeps its own name
    m = colorize_files([src], src / "out", size=32)
    assert [Path(w["output"]).name for w in m["written"]] == ["x.png", "x.v2.png"]
    assert [(Path(r["input"]).name, r["error"]) for r in m["rejected"]] == [("x.png", "name_collision")]
    assert m["settings"]["size"] == 32
    again = colorize_files([src], src / "out", size=32)  # its own outputs are not inputs
    assert [w["output"] for w in again["written"]] == [w["output"] for w in m["written"]]


def test_bad_models_and_options_are_refused_before_any_work(photos, tmp_path):
    splitbrain = tmp_path / "sb.safetensors"
    save_weights(create_model("splitbrain"), splitbrain)
    with pytest.raises(ValueError, match="not a colorization model"):
        colorize_files([photos / "a.jpg"], tmp_path / "o", weights=splitbrain)
    with pytest.raises(ValueError, match="--T applies"):
        colorize_files([photos / "a.jpg"], tmp_path / "o", model="guided", T=0.5)
    with pytest.raises(FileNotFoundError, match="shipped model 'nope'"):
        colorize_files([photos / "a.jpg"], tmp_path / "o", model="nope")
    with pytest.raises(FileNotFoundError, match="missing.jpg does not exist"):
        colorize_files([photos / "missing.jpg"], tmp_path / "o")
    with pytest.raises(ValueError, match="T must be in"):
        colorize_files([photos / "a.jpg"], tmp_path / "o", T=0.0)
    with pytest.raises(ValueError, match="device 'bogus'"):
        colorize_files([photos / "a.jpg"], tmp_path / "o", device="bogus")
    with pytest.raises(ValueError, match="--upsample applies to the automatic"):
        colorize_files([photos / "a.jpg"], tmp_path / "o", model="guided", upsample="guided")
    with pytest.raises(ValueError, match="upsample must be one of .*'bicubic'"):
        colorize_files([photos / "a.jpg"], tmp_path / "o", upsample="bicubic")
    assert not (tmp_path / "o").exists()


def test_upsample_option_reaches_the_photo(photos, tmp_path):
    """``--upsample guided``: the file equals the library's guided result at the served size, and the manifest says so."""
    m = colorize_files([photos / "a.jpg"], tmp_path / "g", upsample="guided")
    assert m["settings"]["upsample"] == "guided"
    served = served_settings("eccv16")
    model = load_weights(shipped_weights("colorization")[0])
    rgb = torch.from_numpy(np.array(Image.open(photos / "a.jpg").convert("RGB"))).permute(2, 0, 1)[None]
    ref = colorize(model, rgb, size=served.size, method=served.method, upsample="guided")[0]
    got = torch.from_numpy(np.array(Image.open(tmp_path / "g" / "a.png"))).permute(2, 0, 1).float() / 255
    assert (got - ref).abs().max() <= 1 / 255 + 1e-6
    assert not torch.allclose(ref, colorize(model, rgb, size=served.size, method=served.method)[0], atol=1 / 255)


def test_cli_exit_codes(photos, tmp_path, capsys, caplog):
    from chromaflow.cli import main

    assert (
        main(["colorize", str(photos / "a.jpg"), "--out", str(tmp_path / "ok"), "--T", "0.5", "--output", "jpeg"]) == 0
    )
    assert "1 colorized, 0 rejected" in capsys.readouterr().out
    assert main(["colorize", str(photos), "--out", str(tmp_path / "some")]) == 1
    assert "3 colorized, 2 rejected" in capsys.readouterr().out
    assert "cut.jpg" in caplog.text and "truncated" in caplog.text
    assert main(["colorize", str(photos / "a.jpg"), "--out", str(tmp_path / "bad"), "--model", "nope"]) == 2
    assert "shipped model 'nope'" in caplog.text


def test_an_unexpected_failure_on_one_file_is_listed_and_the_batch_goes_on(photos, tmp_path, monkeypatch):
    from chromaflow.serving.service import ColorizeService

    handle = ColorizeService.handle

    def flaky(self, requests):
        if requests[0].body[:4] == b"\x89PNG":  # a decoder bug that only PNGs trigger
            raise RuntimeError("decoder crashed")
        return handle(self, requests)

    monkeypatch.setattr(ColorizeService, "handle", flaky)
    m = colorize_files([photos / "a.jpg", photos / "trip" / "b.png"], tmp_path)
    assert [Path(w["input"]).name for w in m["written"]] == ["a.jpg"]
    assert m["rejected"] == [
        {
            "input": str(photos / "trip" / "b.png"),
            "status": 500,
            "error": "internal_error",
            "message": "RuntimeError: decoder crashed",
        }
    ]


def test_guided_hints_from_a_json_file_reach_the_model(photos, tmp_path):
    gray = np.full((48, 64, 3), 128, np.uint8)  # a flat gray photo: any colour in the output comes from the model
    src = tmp_path / "src"
    src.mkdir()
    (src / "flat.png").write_bytes(encode(gray))
    (src / "other.png").write_bytes(encode(gray))
    red = [{"x": x, "y": y, "r": 220, "g": 20, "b": 20} for x in (8, 24, 40, 56) for y in (8, 24, 40)]
    clicks = tmp_path / "clicks.json"
    clicks.write_text(json.dumps({"flat.png": red, "other.png": [{"x": 500, "y": 5, "r": 1, "g": 2, "b": 3}]}))
    m = colorize_files([src], tmp_path / "out", model="guided", hints=clicks)
    assert m["hints"] == {"flat.png": 12, "other.png": 1}
    assert [(Path(r["input"]).name, r["error"]) for r in m["rejected"]] == [("other.png", "hint_outside_image")]
    plain = colorize_files([src / "flat.png"], tmp_path / "plain", model="guided")
    a_hinted = rgb2lab(np.asarray(Image.open(tmp_path / "out" / "flat.png")))[..., 1].mean()
    a_plain = rgb2lab(np.asarray(Image.open(tmp_path / "plain" / "flat.png")))[..., 1].mean()
    assert a_hinted > a_plain + 10  # red clicks make the photo red (a* up), as on the web page
    assert plain["hints"] == {}

    with pytest.raises(ValueError, match=r"hints for \['typo.png'\], which match no input"):
        colorize_files([src], tmp_path / "x", model="guided", hints={"typo.png": red})
    with pytest.raises(ValueError, match="--hints needs the guided model"):
        colorize_files([src], tmp_path / "x", hints={"flat.png": red})
    with pytest.raises(ValueError, match="hints file"):
        colorize_files([src], tmp_path / "x", model="guided", hints=tmp_path / "missing.json")


def test_a_file_over_the_size_limit_is_listed_not_read(photos, tmp_path, monkeypatch):
    import chromaflow.data.images as images

    monkeypatch.setattr(images, "MAX_FILE_BYTES", (photos / "a.jpg").stat().st_size - 1)
    m = colorize_files([photos / "a.jpg", photos / "trip" / "b.png"], tmp_path)
    assert [Path(w["input"]).name for w in m["written"]] == ["b.png"]
    assert [(Path(r["input"]).name, r["error"]) for r in m["rejected"]] == [("a.jpg", "unreadable")]
    assert m["rejected"][0]["message"].startswith("file too large:")
