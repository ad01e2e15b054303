"""``PairDataset``: the loader over ``prepare-pairs`` shards (input -> target pairs, e.g. edges -> photo).

    ds = PairDataset("runs/bsds/pairs", split="train", size=64)
    item = ds[0]  # {"a": uint8 (1, 64, 64) boundary map, "b": uint8 (3, 64, 64) photo, "id", "photo"}

Train: both images resized so the short side is ``load`` (default ``round(size * LOAD_RATIO)``, the original's
286/256), then the same random ``size x size`` crop and horizontal flip for both (torch RNG). Val: short side
``size``, centre crop. The input map is resized by area and binarized at :data:`EDGE_LEVEL` (255 where any
boundary pixel covers at least that share of the new pixel), so thin boundaries survive small sizes. A ``gray``
layout's input (the photo's L, ``prepare-pairs --pairs gray``) is resized like the photo, never binarized.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import Dataset

from chromaflow.data.dataset import shard_files
from chromaflow.io import read_json

LOAD_RATIO = 286 / 256  # resize-then-crop margin of the original BicycleGAN/pix2pix data loader
EDGE_LEVEL = 8  # 8-bit area coverage from which a resized boundary pixel is on (1/32 of it: a 1-px line survives 30x)
COLUMNS = ["id", "photo", "input", "target"]
SPLITS = ("train", "val", "test")


def short_side(size: tuple[int, int], short: int) -> tuple[int, int]:
    """``(w, h)`` of an image of ``size = (w, h)`` resized so its short side is ``short`` (aspect kept)."""
    w, h = size
    s = short / min(w, h)
    return max(short, round(w * s)), max(short, round(h * s))


def resize_edges(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A boundary map (``L``, boundaries bright) resized to ``size`` by area, then binarized at :data:`EDGE_LEVEL`."""
    small = img.convert("L").resize(size, Image.Resampling.BOX)
    return small.point(lambda v: 255 if v >= EDGE_LEVEL else 0)


def resize_photo(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A photo (or a gray layout's L input) resized to ``size`` (antialiased bicubic)."""
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


class PairDataset(Dataset):
    """Map-style dataset over ``<root>/shards/<split>-*.parquet`` written by ``prepare-pairs``; ``split``: one of
    :data:`SPLITS` (``test``: BSDS500's held-out photos)."""

    def __init__(self, root: str | os.PathLike, split: str = "train", size: int = 64, train: bool = True,
                 load: int | None = None) -> None:  # fmt: skip
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        load = round(size * LOAD_RATIO) if load is None else load
        if load < size:
            raise ValueError(f"load ({load}) must be >= size ({size})")
        files = shard_files(root, split)
        if not files:
            raise ValueError(f"{root}: no {split} pairs (no {split}-*.parquet shard in its manifest)")
        table = pa.concat_tables([pq.read_table(f, columns=COLUMNS) for f in files])
        self.root, self.split, self.size, self.train, self.load = Path(root), split, size, train, load
        self.edges = read_json(self.root / "manifest.json").get("pairs_layout", "edges") == "edges"
        self.ids: list[str] = table.column("id").to_pylist()
        self.photos: list[str] = table.column("photo").to_pylist()
        self.inputs = table.column("input").cast(pa.large_binary()).combine_chunks()
        self.targets = table.column("target").cast(pa.large_binary()).combine_chunks()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self.ids):
            raise IndexError(f"index {i} out of range for {len(self.ids)} pairs")
        a = Image.open(io.BytesIO(self.inputs[i].as_py()))
        b = Image.open(io.BytesIO(self.targets[i].as_py())).convert("RGB")
        c = self.size
        new = short_side(b.size, self.load if self.train else c)
        a, b = (resize_edges if self.edges else resize_photo)(a.convert("L"), new), resize_photo(b, new)
        if self.train:
            x, y = int(torch.randint(0, new[0] - c + 1, ())), int(torch.randint(0, new[1] - c + 1, ()))
        else:
            x, y = (new[0] - c) // 2, (new[1] - c) // 2
        a, b = a.crop((x, y, x + c, y + c)), b.crop((x, y, x + c, y + c))
        if self.train and bool(torch.rand(()) < 0.5):
            a, b = a.transpose(Image.Transpose.FLIP_LEFT_RIGHT), b.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        a_t = torch.frombuffer(bytearray(a.tobytes()), dtype=torch.uint8).view(1, c, c)
        b_t = torch.frombuffer(bytearray(b.tobytes()), dtype=torch.uint8).view(c, c, 3).permute(2, 0, 1)
        return {"a": a_t.clone(), "b": b_t.contiguous(), "id": self.ids[i], "photo": self.photos[i]}


def collate(items: list[dict]) -> dict:
    """Stack ``a (B, 1, S, S)`` and ``b (B, 3, S, S)`` uint8; ids and photos as lists."""
    return {
        "a": torch.stack([it["a"] for it in items]),
        "b": torch.stack([it["b"] for it in items]),
        "id": [it["id"] for it in items],
        "photo": [it["photo"] for it in items],
    }
