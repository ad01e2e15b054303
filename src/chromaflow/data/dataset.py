"""``ShardDataset``: the training/eval loader over prepare's Parquet shards.

    ds = ShardDataset("runs/demo/prepared", split="train", crop=176)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=4, collate_fn=collate)
    batch = next(iter(loader))  # {"rgb": uint8 (B, 3, 176, 176), "label": [str|None], "id": [str]}

Items are uint8 RGB; Lab conversion happens batched on the training device (``chromaflow.color.rgb_to_lab``).
Train: random ``crop x crop`` window at the stored resolution + random horizontal flip (torch RNG, so
DataLoader worker seeding applies); images whose short side is below ``crop`` are first resized up.
Val (``train=False``): short side resized to ``crop`` (JPEG decoded in DCT-reduced draft mode when it
is at least twice as large), then a centre crop. With ``resize`` set, both first resize the short side to
``resize`` (thesis-style "resize then crop").

The encoded bytes of the split are held in memory as one Arrow buffer (about the size of the shards'
image column), which forked DataLoader workers share copy-on-write.
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

from chromaflow.io import read_json

COLUMNS = ["id", "label", "has_color", "image"]


def shard_files(root: str | os.PathLike, split: str) -> list[Path]:
    """The shard files of ``split`` under a prepare output folder, from its manifest (checked to exist)."""
    root = Path(root)
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{root} is not a prepare output: {manifest} is missing (run `chromaflow prepare`)")
    names = [s for s in read_json(manifest).get("shards", []) if Path(s).name.startswith(f"{split}-")]
    files = [root / s for s in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: shards listed in manifest.json are missing: {missing[:3]}")
    return files


def _resize_short(img: Image.Image, short: int) -> Image.Image:
    w, h = img.size
    s = short / min(w, h)
    size = (max(short, round(w * s)), max(short, round(h * s)))
    return img if size == (w, h) else img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


class ShardDataset(Dataset):
    """Map-style dataset over ``<root>/shards/<split>-*.parquet``; item ``{"rgb", "label", "id"}``.

    ``rgb``: uint8 ``(3, crop, crop)``; ``label``: str or None; ``color_only`` drops ``has_color=False`` rows.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        crop: int = 176,
        train: bool = True,
        color_only: bool = True,
        resize: int | None = None,
    ):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if not isinstance(crop, int) or crop < 1:
            raise ValueError(f"crop must be a positive int, got {crop!r}")
        if resize is not None and resize < crop:
            raise ValueError(f"resize ({resize}) must be >= crop ({crop})")
        files = shard_files(root, split)
        if files:
            table = pa.concat_tables([pq.read_table(f, columns=COLUMNS) for f in files])
        else:
            table = pa.table({c: pa.array([], t) for c, t in [("id", pa.string()), ("label", pa.string()),
                              ("has_color", pa.bool_()), ("image", pa.binary())]})  # fmt: skip
        if color_only:
            table = table.filter(table.column("has_color"))
        self.root, self.split, self.crop, self.train, self.resize = Path(root), split, crop, train, resize
        self.ids: list[str] = table.column("id").to_pylist()
        self.label_of: list[str | None] = table.column("label").to_pylist()
        self.images = table.column("image").cast(pa.large_binary()).combine_chunks()
        self.labels = sorted({lab for lab in self.label_of if lab is not None})

    def __len__(self) -> int:
        return len(self.ids)

    def decode(self, i: int) -> Image.Image:
        """Decode row ``i`` to a PIL RGB image, short side scaled to what the crop needs."""
        img = Image.open(io.BytesIO(self.images[i].as_py()))
        short = self.resize or (None if self.train else self.crop)
        if short is not None and img.format == "JPEG":
            w, h = img.size
            s = short / min(w, h)
            img.draft("RGB", (max(1, round(w * s)), max(1, round(h * s))))  # no-op unless >= 2x larger
        img = img.convert("RGB") if img.mode != "RGB" else img
        if short is not None or min(img.size) < self.crop:
            img = _resize_short(img, short or self.crop)
        return img

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self.ids):
            raise IndexError(f"index {i} out of range for {len(self.ids)} items")
        img = self.decode(i)
        w, h, c = img.size[0], img.size[1], self.crop
        if self.train:
            x = int(torch.randint(0, w - c + 1, ()))
            y = int(torch.randint(0, h - c + 1, ()))
        else:
            x, y = (w - c) // 2, (h - c) // 2
        img = img.crop((x, y, x + c, y + c))
        if self.train and bool(torch.rand(()) < 0.5):
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        rgb = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(c, c, 3).permute(2, 0, 1)
        return {"rgb": rgb.contiguous(), "label": self.label_of[i], "id": self.ids[i]}


def collate(batch: list[dict]) -> dict:
    """Stack ``rgb`` into ``(B, 3, crop, crop)`` uint8; keep labels (may be None) and ids as lists."""
    return {
        "rgb": torch.stack([b["rgb"] for b in batch]),
        "label": [b["label"] for b in batch],
        "id": [b["id"] for b in batch],
    }
