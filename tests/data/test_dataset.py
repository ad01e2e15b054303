"""ShardDataset: shapes, dtypes, crops and flips against independent PIL computations."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from tests.data.conftest import colorful, encode

from chromaflow.data.dataset import ShardDataset, collate
from chromaflow.data.prepare import prepare


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    src = root / "src"
    for split in ("train", "val"):
        for i in range(4):
            p = src / split / f"c{i % 2}" / f"{i}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(encode(colorful(120, 90, seed=i), "JPEG", quality=95))
    (src / "train" / "c0" / "small.png").write_bytes(encode(colorful(40, 30, seed=7), "PNG"))
    (src / "train" / "c0" / "gray.png").write_bytes(encode(Image.new("L", (100, 100), 128), "PNG"))
    prepare(str(src), root / "out", max_side=120, workers=1)
    return root / "out"


def test_items_shapes_and_filtering(prepared):
    ds = ShardDataset(prepared, "train", crop=64)
    assert len(ds) == 5  # gray.png excluded by default
    assert len(ShardDataset(prepared, "train", crop=64, color_only=False)) == 6
    item = ds[0]
    assert item["rgb"].dtype == torch.uint8 and item["rgb"].shape == (3, 64, 64)
    assert item["label"] in ("c0", "c1") and isinstance(item["id"], str)
    small = ds[ds.ids.index("train/c0/small.png")]  # 40x30 < crop: resized up
    assert small["rgb"].shape == (3, 64, 64)
    gray = ShardDataset(prepared, "train", crop=64, color_only=False)
    g = gray[gray.ids.index("train/c0/gray.png")]["rgb"]
    assert (g == 128).all()
    assert ds.labels == ["c0", "c1"]


def test_train_crop_is_a_window_of_the_image_maybe_flipped(prepared):
    ds = ShardDataset(prepared, "train", crop=64)
    i = ds.ids.index("train/c0/0.jpg")
    full = np.asarray(Image.open(io.BytesIO(ds.images[i].as_py())).convert("RGB"))
    torch.manual_seed(0)
    seen_flip, seen_pos = set(), set()
    for _ in range(20):
        crop = ds[i]["rgb"].permute(1, 2, 0).numpy()
        hits = []
        for f in (False, True):
            c = crop[:, ::-1] if f else crop
            ys, xs = np.nonzero((full[: full.shape[0] - 63, : full.shape[1] - 63] == c[0, 0]).all(-1))
            hits += [(y, x, f) for y, x in zip(ys, xs, strict=True) if np.array_equal(c, full[y : y + 64, x : x + 64])]
        assert hits, "crop is not a window of the stored image"
        seen_flip.add(hits[0][2])
        seen_pos.add(hits[0][:2])
    assert seen_flip == {False, True} and len(seen_pos) > 5


def test_val_is_deterministic_resize_and_center_crop(prepared):
    ds = ShardDataset(prepared, "val", crop=64, train=False)
    assert len(ds) == 4
    i = 0
    img = Image.open(io.BytesIO(ds.images[i].as_py()))
    img.draft("RGB", (85, 64))  # 120x90 is < 2x the target: draft changes nothing
    img = img.convert("RGB").resize((85, 64), Image.Resampling.BICUBIC)
    ref = np.asarray(img)[0:64, 10:74]
    np.testing.assert_array_equal(ds[i]["rgb"].permute(1, 2, 0).numpy(), ref)
    assert torch.equal(ds[i]["rgb"], ds[i]["rgb"])


def test_collate_and_dataloader(prepared):
    ds = ShardDataset(prepared, "train", crop=32)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=True, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["rgb"].shape == (3, 3, 32, 32) and batch["rgb"].dtype == torch.uint8
    assert len(batch["label"]) == 3 and len(batch["id"]) == 3


def test_bad_arguments(prepared, tmp_path):
    with pytest.raises(ValueError, match="split"):
        ShardDataset(prepared, "test")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        ShardDataset(tmp_path, "train")
    with pytest.raises(IndexError):
        ShardDataset(prepared, "val", train=False)[99]
