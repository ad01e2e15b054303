"""prepare-pairs on broken and hostile copies of the committed BSDS sample: each bad file is rejected with its
reason and listed, the rest of the source still becomes pairs, and no file is dropped silently."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chromaflow.data.pairs import prepare_pairs

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "bsds-sample"
MAPS = "boundaries/train"


def _copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(SAMPLE, src)
    return src


def _map(src: Path, name: str) -> Image.Image:
    return Image.open(src / MAPS / name).convert("L")


def _all_ids(src: Path) -> set[str]:
    return {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    return prepare_pairs(str(SAMPLE), tmp_path_factory.mktemp("clean"), max_side=64)


def test_committed_sample_is_a_clean_pairs_source(clean):
    c = clean["counts"]
    assert (c["pairs"], c["photos"], c["train"], c["val"], c["test"]) == (84, 16, 43, 21, 20)
    assert clean["rejected"] == [{"path": "ATTRIBUTION.md", "reason": clean["rejected"][0]["reason"]}]
    assert {p["split"] for p in clean["pairs"] if "/test/" in p["id"]} == {"test"}  # held out, not val
    assert {c["id"].split("/")[-1].split("_")[0] for c in clean["converted"]} == {"100080"}  # transposed maps


def test_bad_files_are_rejected_with_reasons_and_the_rest_proceeds(tmp_path, clean):
    src = _copy(tmp_path)
    data = (src / MAPS / "100075_0.png").read_bytes()
    (src / MAPS / "100075_0.png").write_bytes(data[: len(data) // 2])  # truncated map
    photo = (src / "images/train/105019.jpg").read_bytes()
    (src / "images/train/105019.jpg").write_bytes(photo[: len(photo) // 2])  # truncated photo: its maps fail
    _map(src, "113044_0.png").convert("RGBA").save(src / MAPS / "113044_0.png")
    hi = np.asarray(_map(src, "113044_1.png"), np.uint16) * 257
    Image.fromarray(hi).save(src / MAPS / "113044_1.png")  # 16-bit gray PNG
    assert Image.open(src / MAPS / "113044_1.png").mode.startswith("I")
    _map(src, "113044_2.png").convert("P").save(src / MAPS / "113044_2.png")
    _map(src, "118035_0.png").resize((100, 60)).save(src / MAPS / "118035_0.png")  # size differs from the photo
    shutil.copy(src / MAPS / "12003_0.png", src / MAPS / "999999_0.png")  # a map without a photo
    for m in (src / MAPS).glob("124084_*.png"):  # a photo without maps
        m.unlink()
    Image.open(src / "images/train/135069.jpg").convert("RGBA").save(src / "images/train/135069.png")
    (src / "images/train/135069.jpg").unlink()  # an RGBA photo: converted (listed), its maps still pair
    n_105019 = len(list((src / MAPS).glob("105019_*.png")))

    m = prepare_pairs(str(src), tmp_path / "out", max_side=64)
    reasons = {r["path"]: r["reason"] for r in m["rejected"]}
    assert reasons[f"{MAPS}/100075_0.png"].startswith("input: corrupt or truncated image")
    assert all(reasons[f"{MAPS}/105019_{k}.png"].startswith("photo images/train/105019.jpg: corrupt or truncated")
               for k in range(n_105019))  # fmt: skip
    for name, why in (("113044_0", "alpha composited"), ("113044_1", "I;16 scaled"), ("113044_2", "palette")):
        assert reasons[f"{MAPS}/{name}.png"].startswith("input: a boundary map must be a 1-bit or 8-bit gray"), name
        assert why in reasons[f"{MAPS}/{name}.png"], name
    assert reasons[f"{MAPS}/118035_0.png"] == "size 64x38 differs from the photo's 64x42"
    assert "no photo '999999'" in reasons[f"{MAPS}/999999_0.png"]
    assert "photo without any" in reasons["images/train/124084.jpg"]
    assert {"id": "images/train/135069.png", "notes": ["alpha composited on white"]} in m["converted"]
    n_124084 = sum(p["photo"] == "124084" for p in clean["pairs"])
    lost = 1 + n_105019 + 3 + 1 + n_124084
    assert m["counts"]["pairs"] == clean["counts"]["pairs"] - lost  # every other pair is still there
    listed = {p["id"] for p in m["pairs"]} | {p["target_id"] for p in m["pairs"]} | set(reasons)
    assert listed == _all_ids(src) - {"images/train/105019.jpg"}  # that photo is named in its maps' reasons


def test_links_out_of_the_source_are_rejected_and_listed(tmp_path):
    src = _copy(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(src / MAPS / "100075_0.png", outside / "100075_9.png")
    os.symlink(outside / "100075_9.png", src / MAPS / "100075_9.png")  # a file link to outside
    os.symlink(outside, src / "boundaries" / "escape")  # a folder link to outside
    os.symlink("../../images/train/100075.jpg", src / MAPS / "100075_8.png")  # a link inside: not followed either
    m = prepare_pairs(str(src), tmp_path / "out", max_side=64)
    reasons = {r["path"]: r["reason"] for r in m["rejected"]}
    for link in (f"{MAPS}/100075_9.png", "boundaries/escape", f"{MAPS}/100075_8.png"):
        assert "symbolic link" in reasons[link], link
    assert not {p["id"] for p in m["pairs"]} & set(reasons)
    assert m["counts"]["pairs"] == 84


def test_dot_dot_and_absolute_member_names_are_refused(tmp_path):
    """An archive can name members ``a/../../x``; they are refused, never matched or read."""
    z = tmp_path / "evil.zip"
    photo = (SAMPLE / "images/train/100075.jpg").read_bytes()
    edge = (SAMPLE / MAPS / "100075_0.png").read_bytes()
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("images/train/100075.jpg", photo)
        f.writestr(f"{MAPS}/100075_0.png", edge)
        f.writestr(f"{MAPS}/../train/100075_1.png", edge)
        f.writestr("images/./train/100075.jpg", photo)
        f.writestr(f"/{MAPS}/100075_2.png", edge)
    m = prepare_pairs(str(z), tmp_path / "out", max_side=64)
    reasons = {r["path"]: r["reason"] for r in m["rejected"]}
    assert set(reasons) == {f"{MAPS}/../train/100075_1.png", "images/./train/100075.jpg", f"/{MAPS}/100075_2.png"}
    assert all("'..' parts" in r for r in reasons.values())
    assert [p["id"] for p in m["pairs"]] == [f"{MAPS}/100075_0.png"]
