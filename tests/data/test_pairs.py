"""prepare-pairs on real BSDS500 files and on generated odd layouts; PairDataset crops both images alike."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from chromaflow.cli import main as cli_main
from chromaflow.data.pair_dataset import EDGE_LEVEL, PairDataset, collate, resize_edges
from chromaflow.data.pairs import PAIR_SCHEMA, prepare_pairs

PHOTOS = {"train": ["100075", "100080"], "val": ["101085"]}  # 100080 is portrait: its maps are stored transposed


def bsds_subset(shared: Path, root: Path) -> Path:
    """A few real BSDS500 photos with all their annotators' maps, in the shared layout."""
    for split, ids in PHOTOS.items():
        for pid in ids:
            for src, sub in ((shared / "images" / split / f"{pid}.jpg", "images"),):
                (root / sub / split).mkdir(parents=True, exist_ok=True)
                shutil.copy(src, root / sub / split / src.name)
            (root / "boundaries" / split).mkdir(parents=True, exist_ok=True)
            for m in sorted((shared / "boundaries" / split).glob(f"{pid}_*.png")):
                shutil.copy(m, root / "boundaries" / split / m.name)
    return root


@pytest.fixture(scope="module")
def bsds(shared_file, tmp_path_factory) -> Path:
    return bsds_subset(shared_file("bsds500"), tmp_path_factory.mktemp("bsds"))


@pytest.fixture(scope="module")
def prepared(bsds, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pairs")
    return out, prepare_pairs(str(bsds), out, max_side=96)


def test_every_annotator_is_a_pair_of_the_same_photo(bsds, prepared):
    out, manifest = prepared
    maps = sorted(p.relative_to(bsds).as_posix() for p in bsds.glob("boundaries/*/*.png"))
    assert sorted(p["id"] for p in manifest["pairs"]) == maps
    assert manifest["counts"]["pairs"] == len(maps) and manifest["counts"]["photos"] == 3
    assert manifest["counts"]["rejected"] == 0 and manifest["rejected"] == []
    for p in manifest["pairs"]:
        stem = Path(p["id"]).stem
        assert stem == f"{p['photo']}_{p['annotator']}" and p["target_id"].endswith(f"/{p['photo']}.jpg")
    rows = [r for s in manifest["shards"] for r in pq.read_table(out / s).to_pylist()]
    assert pq.read_schema(out / manifest["shards"][0]).names == PAIR_SCHEMA.names
    assert sorted(r["id"] for r in rows) == maps
    assert {r["split"] for r in rows if r["photo"] == "101085"} == {"val"}


def test_transposed_maps_are_turned_to_the_photo_and_listed(prepared):
    out, manifest = prepared
    turned = sorted(c["id"] for c in manifest["converted"])
    assert turned and all("/100080_" in t for t in turned)
    rows = [r for s in manifest["shards"] for r in pq.read_table(out / s).to_pylist() if r["photo"] == "100080"]
    for r in rows:
        a, b = Image.open(io.BytesIO(r["input"])), Image.open(io.BytesIO(r["target"]))
        assert a.size == b.size == (r["width"], r["height"])


def test_turned_map_lines_up_with_the_photo(prepared):
    """Stored maps follow the photo's gradients better than the same maps turned the other way."""
    out, manifest = prepared
    rows = [r for s in manifest["shards"] for r in pq.read_table(out / s).to_pylist() if r["photo"] == "100080"]
    grad = np.hypot(*np.gradient(np.asarray(Image.open(io.BytesIO(rows[0]["target"])).convert("L"), float)))
    edges = np.mean([np.asarray(Image.open(io.BytesIO(r["input"])), float) for r in rows], axis=0)
    other_way = edges[::-1, ::-1]  # turned anticlockwise instead of clockwise (a half turn from the result)
    assert (edges * grad).sum() > 1.1 * (other_way * grad).sum()  # 1.26 measured; the wrong turn gives 1/1.26


def test_rerun_is_a_noop_and_bad_layouts_are_listed(bsds, prepared, tmp_path):
    out, manifest = prepared
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert prepare_pairs(str(bsds), out, max_side=96) == manifest
    assert (out / "manifest.json").stat().st_mtime_ns == stamp

    src = tmp_path / "odd"
    shutil.copytree(bsds, src)
    (src / "images" / "train" / "999.jpg").write_bytes(b"not a jpeg")  # a photo without maps, unreadable too
    shutil.copy(src / "boundaries/train/100075_0.png", src / "boundaries/train/555_0.png")  # a map without photo
    shutil.copy(src / "boundaries/train/100075_0.png", src / "boundaries/train/nounderscore.png")
    (src / "boundaries" / "train" / "100075_9.png").write_bytes(b"\x89PNG broken")
    (src / "images" / "train" / "777.jpg").write_bytes(b"\xff\xd8 not a jpeg either")  # maps of a broken photo
    shutil.copy(src / "boundaries/train/100075_0.png", src / "boundaries/train/777_0.png")
    (src / "stray.png").write_bytes((src / "boundaries/train/100075_0.png").read_bytes())
    m = prepare_pairs(str(src), tmp_path / "out", max_side=96)
    reasons = {r["path"]: r["reason"] for r in m["rejected"]}
    assert "no photo '555'" in reasons["boundaries/train/555_0.png"]
    assert "not <photo>_<annotator>" in reasons["boundaries/train/nounderscore.png"]
    assert reasons["boundaries/train/100075_9.png"].startswith("input: not an image")
    assert reasons["boundaries/train/777_0.png"].startswith("photo images/train/777.jpg: not an image")
    assert "photo without any" in reasons["images/train/999.jpg"]
    assert "not in a boundaries/<split>/" in reasons["stray.png"]
    assert m["counts"]["pairs"] == manifest["counts"]["pairs"]


def test_empty_source_and_no_pairs_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        prepare_pairs(str(tmp_path / "empty"), tmp_path / "o1")
    (tmp_path / "lonely" / "images" / "train").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "lonely" / "images" / "train" / "1.png")
    with pytest.raises(ValueError, match="no usable input -> photo pair.*1.png: photo without any"):
        prepare_pairs(str(tmp_path / "lonely"), tmp_path / "o2")
    assert not (tmp_path / "o2" / "manifest.json").exists()


def test_cli_prepare_pairs(bsds, tmp_path, capsys):
    assert cli_main(["prepare-pairs", "--source", str(bsds), "--out", str(tmp_path / "p"), "--max-side", "64"]) == 0
    assert "pairs of 3 photos" in capsys.readouterr().out
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["layout"] == "pairs"
    assert cli_main(["prepare-pairs", "--source", str(tmp_path / "nothing"), "--out", str(tmp_path / "q")]) == 2


def test_pair_dataset_crops_and_flips_both_alike(prepared):
    ds = PairDataset(prepared[0], "train", size=48)
    torch.manual_seed(0)
    batch = collate([ds[i] for i in range(4)])
    assert batch["a"].shape == (4, 1, 48, 48) and batch["a"].dtype == torch.uint8
    assert batch["b"].shape == (4, 3, 48, 48)
    assert set(batch["a"].unique().tolist()) <= {0, 255}
    # the same crop and flip for both: the map's boundaries sit on the photo's strong gradients
    for i in range(4):
        grad = np.hypot(*np.gradient(batch["b"][i].float().mean(0).numpy()))
        on = batch["a"][i, 0].numpy() > 0
        assert grad[on].mean() > grad[~on].mean(), batch["id"][i]
    with pytest.raises(ValueError, match="no test pairs"):  # a valid split this subset has no photo of
        PairDataset(prepared[0], "test")
    with pytest.raises(ValueError, match="split must be one of"):
        PairDataset(prepared[0], "holdout")


def test_resize_edges_keeps_thin_lines():
    img = Image.new("L", (400, 300))
    img.paste(255, (200, 0, 201, 300))  # a 1-pixel vertical line
    small = np.asarray(resize_edges(img, (40, 30)))
    assert (small[:, 20] == 255).all() and small.sum() == 255 * 30  # one column on, nothing else
    assert EDGE_LEVEL < 255 / 10  # a 1-px line covers 1/10 of a pixel at this scale and must survive


def test_unsplit_sources_split_by_photo(tmp_path):
    """Below no split folder, a photo's pairs all land in one split (hash of the photo), never straddle two."""
    sample = Path(__file__).resolve().parents[2] / "data" / "bsds-sample"
    for sub in ("images", "boundaries"):
        shutil.copytree(sample / sub / "train", tmp_path / "src" / sub / "all")
    m = prepare_pairs(str(tmp_path / "src"), tmp_path / "out", max_side=64, val_fraction=0.5)
    by_photo: dict[str, set[str]] = {}
    for p in m["pairs"]:
        by_photo.setdefault(p["photo"], set()).add(p["split"])
    assert len(by_photo) == 8 and all(len(s) == 1 for s in by_photo.values())
    assert {s for v in by_photo.values() for s in v} == {"train", "val"}
    with pytest.raises(ValueError, match="val_fraction"):
        prepare_pairs(str(tmp_path / "src"), tmp_path / "o2", val_fraction=1.0)
    with pytest.raises(ValueError, match="pairs must be one of"):
        prepare_pairs(str(tmp_path / "src"), tmp_path / "o3", pairs="depth")
