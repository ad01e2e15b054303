"""prepare-pairs --pairs gray on real Tiny-ImageNet photos: the input is the photo's CIE L (checked against
scikit-image), gray photos are rejected and listed, and the bicyclegan task trains on the pairs (input_nc 1)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

from chromaflow.cli import main as cli_main
from chromaflow.data.pair_dataset import PairDataset, collate
from chromaflow.data.pairs import prepare_pairs

ZIP = "tiny-imagenet-200-subset.zip"
TRAIN = [f"tiny-imagenet-200/train/n01443537/n01443537_{i}.JPEG" for i in (0, 104, 112, 115, 116, 126)]
VAL = ["tiny-imagenet-200/val/n03444034/val_0.JPEG", "tiny-imagenet-200/val/n04067472/val_1.JPEG"]
GRAY = {  # Tiny-ImageNet's gray photos: one stored as L, one as RGB below prepare's gray chroma
    "tiny-imagenet-200/train/n01698640/n01698640_295.JPEG": "L",
    "tiny-imagenet-200/train/n02002724/n02002724_31.JPEG": "RGB",
}


@pytest.fixture(scope="module")
def tiny_zip(shared_file, tmp_path_factory) -> Path:
    """A zip of a few real Tiny-ImageNet members, paths and bytes unchanged (the shared zip's layout)."""
    out = tmp_path_factory.mktemp("tin") / "tiny.zip"
    with zipfile.ZipFile(shared_file(ZIP)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for name in TRAIN + VAL + list(GRAY):
            dst.writestr(name, src.read(name))
    return out


@pytest.fixture(scope="module")
def gray_pairs(tiny_zip, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("graypairs")
    return out, prepare_pairs(str(tiny_zip), out, pairs="gray", max_side=64)


def test_gray_photos_are_rejected_and_listed(tiny_zip, gray_pairs):
    _, manifest = gray_pairs
    with zipfile.ZipFile(tiny_zip) as z:
        assert {n: Image.open(z.open(n)).mode for n in GRAY} == GRAY  # both kinds really are in the fixture
    reasons = {r["path"]: r["reason"] for r in manifest["rejected"]}
    assert set(reasons) == set(GRAY) and all("a gray photo" in r for r in reasons.values())
    c = manifest["counts"]
    assert (c["pairs"], c["train"], c["val"], c["test"], c["photos"]) == (8, 6, 2, 0, 8)
    assert manifest["pairs_layout"] == "gray" and manifest["params"]["pairs"] == "gray"
    assert {p["id"]: p["split"] for p in manifest["pairs"]} == {**dict.fromkeys(TRAIN, "train"),
                                                                **dict.fromkeys(VAL, "val")}  # fmt: skip


def test_input_is_the_lightness_of_the_stored_photo(gray_pairs):
    """A == round(L / 100 * 255) of the stored B, L by scikit-image (an independent Lab implementation)."""
    out, manifest = gray_pairs
    rows = [r for s in manifest["shards"] for r in pq.read_table(out / s).to_pylist()]
    assert len(rows) == 8
    for r in rows:
        a = np.asarray(Image.open(io.BytesIO(r["input"])))
        b = np.asarray(Image.open(io.BytesIO(r["target"])).convert("RGB"))
        assert a.dtype == np.uint8 and a.shape == b.shape[:2] == (r["height"], r["width"]) == (64, 64)
        ref = rgb2lab(b.astype(np.float64) / 255.0)[..., 0] / 100.0 * 255.0
        diff = np.abs(a.astype(np.float64) - ref)
        assert diff.max() <= 0.5 + 1e-3, r["id"]  # rounding only (float32 Lab vs float64 skimage)
        assert r["target_id"] == r["id"] == r["photo"] and r["annotator"] == 0
        assert not np.array_equal(a, np.asarray(Image.fromarray(b).convert("L")))  # L, not Rec. 601 luma


def test_cli_and_rerun(tiny_zip, gray_pairs, tmp_path, capsys):
    argv = ["prepare-pairs", "--pairs", "gray", "--source", str(tiny_zip), "--out", str(tmp_path / "p"),
            "--max-side", "64"]  # fmt: skip
    assert cli_main(argv) == 0
    assert "8 pairs of 8 photos (6 train, 2 val, 0 test), 2 rejected" in capsys.readouterr().out
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["counts"] == gray_pairs[1]["counts"]
    with pytest.raises(SystemExit):  # argparse: not one of the layouts
        cli_main([argv[0], "--pairs", "bogus", *argv[3:]])
    assert prepare_pairs(str(tiny_zip), gray_pairs[0], pairs="gray", max_side=64) == gray_pairs[1]  # up to date


def test_pair_dataset_keeps_the_gray_input_continuous(gray_pairs):
    ds = PairDataset(gray_pairs[0], "train", size=48)
    torch.manual_seed(0)
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["a"].shape == (6, 1, 48, 48) and batch["b"].shape == (6, 3, 48, 48)
    assert len(batch["a"].unique()) > 50  # not binarized like a boundary map
    for a, b in zip(batch["a"], batch["b"], strict=True):  # the same crop and flip: A is B's lightness
        ref = rgb2lab(b.permute(1, 2, 0).numpy() / 255.0)[..., 0] / 100.0 * 255.0
        assert np.abs(a[0].numpy() - ref).mean() < 2.0


def test_bicyclegan_trains_on_gray_pairs(gray_pairs, tmp_path):
    out = tmp_path / "bg"
    argv = ["train", "--task", "bicyclegan", "--data", str(gray_pairs[0]), "--out", str(out), "--size", "64",
            "--width", "0.125", "--batch-size", "2", "--steps", "20", "--lr", "2e-4", "--beta1", "0.5",
            "--beta2", "0.999", "--weight-decay", "0", "--device", "cpu"]  # fmt: skip
    assert cli_main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 20 and np.isfinite(metrics["final_loss"])
    assert 0 < metrics["val_recon_l1"] < 2 and np.isfinite(metrics["val_latent_l1"])
