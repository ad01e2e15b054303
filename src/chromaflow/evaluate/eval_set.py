"""The evaluation set of the colorization protocol: images from prepared shards (a split, minus excluded ids) or a
folder, loaded as centre-cropped squares, and the set's fingerprint.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
GRAY_TOLERANCE = 2  # an RGB image whose channels differ by <= this everywhere counts as grayscale


@dataclass
class EvalItem:
    id: str
    label: str | None
    source: Callable[[], Any]  # returns a path or a file-like object PIL can open


def _index_shards(root: Path, split: str, excluded: list[dict]) -> list[EvalItem]:
    import pyarrow.parquet as pq

    shards = sorted((root / "shards").glob(f"{split}-*.parquet"))
    if not shards:
        raise FileNotFoundError(f"data {root}: no shards/{split}-*.parquet (is split {split!r} prepared?)")
    items: list[EvalItem] = []
    for shard in shards:
        table = pq.read_table(shard, columns=["id", "label", "has_color", "image"])
        ids, labels = table.column("id").to_pylist(), table.column("label").to_pylist()
        colors, images = table.column("has_color").to_pylist(), table.column("image").to_pylist()
        for id_, label, has_color, data in zip(ids, labels, colors, images, strict=True):
            if not has_color:
                excluded.append({"id": id_, "reason": "grayscale (no colour ground truth)"})
                continue
            items.append(EvalItem(id_, label, lambda d=data: io.BytesIO(d)))
    return items


def _index_folder(root: Path) -> list[EvalItem]:
    items = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            rel = p.relative_to(root).as_posix()
            label = p.parent.name if p.parent != root else None
            items.append(EvalItem(rel, label, lambda p=p: p))
    if not items:
        raise FileNotFoundError(f"data {root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    return items


def load_rgb(item: EvalItem, size: int) -> torch.Tensor:
    """Decode, resize the short side to ``size`` (bicubic), centre-crop: uint8 ``(3, size, size)``.

    Raises ValueError for grayscale images (nothing to compare colours with)."""
    from PIL import Image, ImageOps

    with Image.open(item.source()) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("1", "L", "LA", "I", "I;16", "F"):
            raise ValueError("grayscale (no colour ground truth)")
        im = im.convert("RGB")
        w, h = im.size
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        a = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    spread = int((a.max(axis=2).astype(np.int16) - a.min(axis=2)).max())
    if spread <= GRAY_TOLERANCE:
        raise ValueError("grayscale (no colour ground truth)")
    return torch.from_numpy(a.copy()).permute(2, 0, 1)


def load_eval_items(
    data: str | os.PathLike, *, split: str = "val", size: int = 256, max_images: int | None = None, seed: int = 0
) -> tuple[list[EvalItem], list[dict]]:
    """The evaluation set: (items sorted by id, excluded ``[{id, reason}]``).

    ``data`` is a prepared dir (``shards/<split>-*.parquet``) or a folder of images (recursive; ``split`` is
    ignored). With ``max_images``, a seeded random subset of that many candidates is taken before decoding.
    Every kept item decodes to a colour image at ``size``; the others are listed in ``excluded``.
    """
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"data {root}: not a directory")
    excluded: list[dict] = []
    prepared = (root / "shards").is_dir() or (root / "manifest.json").is_file()
    items = _index_shards(root, split, excluded) if prepared else _index_folder(root)
    items.sort(key=lambda it: it.id)
    dup = len(items) - len({it.id for it in items})
    if dup:
        raise ValueError(f"data {root}: {dup} duplicate image ids")
    if max_images is not None and max_images < len(items):
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        keep = set(random.Random(seed).sample(range(len(items)), max_images))
        items = [it for i, it in enumerate(items) if i in keep]
    good = []
    for it in items:
        try:
            load_rgb(it, size)
        except Exception as e:  # noqa: BLE001 - every rejected record is listed with its reason
            excluded.append({"id": it.id, "reason": str(e) or type(e).__name__})
            continue
        good.append(it)
    if excluded:
        log.warning("%d images excluded (listed in metrics.json 'excluded')", len(excluded))
    return good, excluded


def eval_set_fingerprint(ids: Sequence[str]) -> str:
    """sha256 of the sorted image ids, one per line: identifies the evaluation set."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """Float RGB in [0, 1] -> uint8 (clamped, rounded)."""
    return (rgb.clamp(0, 1) * 255.0).round().to(torch.uint8)
