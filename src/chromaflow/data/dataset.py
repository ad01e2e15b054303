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
image column), which forked DataLoader workers share copy-on-write. They are read on first use, so a
process that trains on a share of the shards (:meth:`ShardDataset.share`, one per rank of a multi-node
run) reads only the image columns of its own shards; ids, labels and colour flags (small) are read for all.

``root`` may be a folder or an fsspec URL (``s3://``, ``gs://``, ``http://``, ``file://``): the manifest
and the shards are then read through fsspec (Parquet column reads use range requests where the store
supports them).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import Dataset

from chromaflow.io import read_json

COLUMNS = ["id", "label", "has_color", "image"]
READ_BLOCK = 2**16  # fsspec read-ahead: small, so reading the small columns does not pull the images along
META = ["id", "label", "has_color"]  # the small columns every process reads; "image" only for its share


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


def is_url(root: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (fsspec), False for a plain local path."""
    return "://" in str(root)


def shard_urls(root: str | os.PathLike, split: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """``(filesystem, shard paths)`` of ``split`` under a prepare output given as a folder or an fsspec URL."""
    if not is_url(root):
        return fsspec.filesystem("file"), [str(f) for f in shard_files(root, split)]
    fs, base = fsspec.core.url_to_fs(str(root))
    base = base.rstrip("/")
    try:
        manifest = json.loads(fs.cat_file(f"{base}/manifest.json"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{root} is not a prepare output: manifest.json is missing") from None
    names = [s for s in manifest.get("shards", []) if s.split("/")[-1].startswith(f"{split}-")]
    return fs, [f"{base}/{s}" for s in names]


def _read(fs: fsspec.AbstractFileSystem, path: str, columns: list[str]) -> pa.Table:
    with fs.open(path, "rb", block_size=READ_BLOCK) as f:
        return pq.read_table(f, columns=columns)


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
        self.fs, self.files = shard_urls(root, split)
        self.root = root if is_url(root) else Path(root)
        self.split, self.crop, self.train, self.resize = split, crop, train, resize
        metas = [_read(self.fs, f, META) for f in self.files]
        self.file_rows: list[list[int]] = []  # per file: its kept rows' positions within the file
        self.ids, self.label_of = [], []
        for t in metas:
            keep = [i for i, c in enumerate(t.column("has_color").to_pylist()) if c or not color_only]
            self.file_rows.append(keep)
            ids, labels = t.column("id").to_pylist(), t.column("label").to_pylist()
            self.ids += [ids[i] for i in keep]
            self.label_of += [labels[i] for i in keep]
        self.labels = sorted({lab for lab in self.label_of if lab is not None})
        self._mine = list(range(len(self.files)))  # the files whose images this dataset reads
        self._images: pa.Array | None = None

    def share(self, groups: list[int], count: int) -> ShardDataset:
        """The rows of the shard files ``k`` with ``k % count`` in ``groups``, group after group.

        Such a share reads only its own files' images. Its ``group_sizes`` give the rows of each group in
        order (a rank of a multi-node run takes the groups ("lanes") it owns; see ``engine.LaneSampler``).
        """
        if count < 1 or not groups or any(not 0 <= g < count for g in groups):
            raise ValueError(f"share: groups {groups} must lie in [0, {count})")
        if len(self.files) < count:
            raise ValueError(
                f"share: {self.root} has {len(self.files)} {self.split} shard(s), fewer than {count} lanes"
            )
        mine = [k for g in groups for k in range(g, len(self.files), count)]
        out = object.__new__(ShardDataset)
        out.__dict__.update(self.__dict__)
        offsets = [0]
        for rows in self.file_rows:
            offsets.append(offsets[-1] + len(rows))
        pick = [i for k in mine for i in range(offsets[k], offsets[k + 1])]
        out.ids, out.label_of = [self.ids[i] for i in pick], [self.label_of[i] for i in pick]
        out.group_sizes = [sum(len(self.file_rows[k]) for k in range(g, len(self.files), count)) for g in groups]
        out._mine, out._images = mine, None
        return out

    @property
    def images(self) -> pa.Array:
        """The encoded images of this dataset's rows (read on first use: this dataset's files only)."""
        if self._images is None:
            parts = [_read(self.fs, self.files[k], ["image"]).column("image").take(self.file_rows[k])
                     for k in self._mine]  # fmt: skip
            chunks = [c for p in parts for c in p.chunks]
            self._images = pa.chunked_array(chunks, pa.binary()).cast(pa.large_binary()).combine_chunks()
        return self._images

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
