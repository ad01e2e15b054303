"""``chromaflow prepare``: ingest images from any fsspec URL into Parquet shards with a manifest.

    chromaflow prepare --source data/sample --out runs/demo/prepared
    chromaflow prepare --source "zip://tiny-imagenet-200::../shared/datasets/tiny-imagenet-200-subset.zip" \\
        --out runs/tiny --max-side 64

Output (schema in docs/contracts.md): ``<out>/shards/<split>-NNNNN.parquet`` and ``<out>/manifest.json``
with counts, params, every rejected file with its reason, the grayscale ids, the converted files and
a fingerprint of the input listing + params. Re-running with the same inputs and params does nothing.

Split: the source's own ``train/ val/ test/`` folders when present (test -> val), else a stable hash:
``sha1(id)`` as a number in [0, 1) below ``val_fraction`` goes to val. Gray: single-channel sources, or
RGB images whose 99th percentile of chroma ``sqrt(a^2 + b^2)`` (over a pixel sample) is below
``gray_chroma`` (2.0 by default; JPEG noise on gray photos stays under ~1). Gray images are kept with
``has_color=False`` and listed in the manifest. Per-file policy for odd inputs: ``chromaflow.data.images``; for
links, fifos, devices and names that are not UTF-8: ``chromaflow.data.sources``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from chromaflow.data.images import DEFAULT_MAX_PIXELS, percentile, process_image, too_large
from chromaflow.data.parts import parse_part, part_name
from chromaflow.data.sources import Entry, list_source, read_regular
from chromaflow.io import atomic_path, read_json, write_json
from chromaflow.logs import printable, progress

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("split", pa.string()),
        ("label", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("has_color", pa.bool_()),
        ("image", pa.binary()),
        ("format", pa.string()),
    ]
)
MANIFEST_VERSION = 1
GRAY_CHROMA = 2.0  # ab units: an image whose 99th-percentile chroma is below this counts as gray
GRAY_PERCENTILE = 99.0
RGB_SPREAD_COLOUR = 9  # 8-bit max(R,G,B) - min(R,G,B) from which every sRGB colour has chroma >= SHORTCUT_MAX_CHROMA
SHORTCUT_MAX_CHROMA = 2.04
ROW_GROUP = 256  # rows per Parquet row group (random access granularity for readers)


def hash_split(id_: str, val_fraction: float) -> str:
    """Deterministic split: ``sha1(id)`` read as a number in [0, 1); below ``val_fraction`` -> ``"val"``."""
    u = int.from_bytes(hashlib.sha1(id_.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return "val" if u < val_fraction else "train"


def gray_flags(results: list[dict], gray_chroma: float = GRAY_CHROMA) -> list[bool]:
    """Which decoded images are gray (``results`` from ``process_image``).

    Gray: a single-channel image, or an RGB pixel sample whose 99th-percentile chroma ``hypot(a, b)`` is
    below ``gray_chroma``. Shortcut (exact): any sRGB colour with ``max - min >= RGB_SPREAD_COLOUR`` has chroma
    >= 2.04 (checked over all 2^24 colours), so a sample whose 99th-pct spread reaches it is colour without
    a Lab conversion. The rest go to Lab in one batch with ``chromaflow.color.rgb_to_lab``.
    """
    flags = [r["sample"] is None for r in results]
    shortcut = gray_chroma <= SHORTCUT_MAX_CHROMA
    todo = [
        i
        for i, r in enumerate(results)
        if r["sample"] is not None and not (shortcut and r["spread_p99"] >= RGB_SPREAD_COLOUR)
    ]
    if not todo:
        return flags
    import torch

    from chromaflow.color import rgb_to_lab

    flat = torch.from_numpy(np.concatenate([results[i]["sample"].reshape(-1, 3) for i in todo]))
    lab = rgb_to_lab(flat.T.reshape(3, 1, -1))[:, 0]  # (3, N) from uint8 (3, 1, N)
    chroma = torch.hypot(lab[1], lab[2]).numpy()
    start = 0
    for i in todo:
        n = results[i]["sample"].shape[0] * results[i]["sample"].shape[1]
        flags[i] = percentile(chroma[start : start + n], GRAY_PERCENTILE) < gray_chroma
        start += n
    return flags


class ShardWriter:
    """Buffers rows of one split and writes ``<split>-NNNNN.parquet`` atomically every ``rows`` rows.

    ``schema``: the rows' columns; binary columns (image bytes) are stored uncompressed, the rest ZSTD.
    """

    def __init__(self, folder: Path, split: str, rows: int, prefix: str = "", schema: pa.Schema = SCHEMA):
        self.folder, self.split, self.rows, self.prefix, self.schema = folder, split, rows, prefix, schema
        self.buf: list[dict] = []
        self.written: list[str] = []
        self.count = 0

    def add(self, row: dict) -> None:
        self.buf.append(row)
        self.count += 1
        if len(self.buf) >= self.rows:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        name = f"{self.split}-{self.prefix}{len(self.written):05d}.parquet"
        table = pa.Table.from_pylist(self.buf, schema=self.schema)
        with atomic_path(self.folder / name) as tmp:
            pq.write_table(
                table,
                tmp,
                row_group_size=ROW_GROUP,
                compression={f.name: ("NONE" if f.type == pa.binary() else "ZSTD") for f in self.schema},
                use_dictionary=[f.name for f in self.schema if f.type != pa.binary()],
            )
        self.written.append(f"shards/{name}")
        self.buf = []


def read_entry(entry: Entry) -> bytes | str:
    """The bytes of one file, or the reason it cannot be read."""
    why = too_large(entry.size)
    if why:
        return why
    try:
        if isinstance(entry.fs, LocalFileSystem):  # a regular file only, even if swapped since it was listed
            return read_regular(entry.path, follow_symlinks=entry.follow)
        return entry.fs.cat_file(entry.path)
    except ValueError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the step
        return f"unreadable: {type(exc).__name__}: {exc}"


def up_to_date(out: Path, fingerprint: str) -> dict | None:
    """The manifest of ``out`` if it has ``fingerprint`` and all its shards exist, else None."""
    path = out / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = read_json(path)
    except (OSError, ValueError):
        return None
    if manifest.get("fingerprint") != fingerprint:
        return None
    if not all((out / s).is_file() for s in manifest.get("shards", [])):
        return None
    return manifest


def prepare(
    source: str,
    out: str | os.PathLike,
    *,
    max_side: int = 256,
    val_fraction: float = 0.1,
    shard_rows: int = 2048,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    gray_chroma: float = GRAY_CHROMA,
    follow_symlinks: bool = False,
    part: tuple[int, int] | None = None,
) -> dict:
    """Ingest ``source`` into Parquet shards under ``out``; return the manifest (also ``out/manifest.json``).

    ``max_side``: longest side of stored images (px); ``val_fraction`` in [0, 1): hash-split share for
    sources without split folders; ``shard_rows``: rows per shard file; ``workers``: decode processes
    (None: all cores, 1: no pool); ``max_pixels``: decompression-bomb limit; ``follow_symlinks``: follow the
    symbolic links of a local source folder that stay inside it (else they are rejected, listed). Raises ``ValueError`` when the
    source is empty or no file in it is a usable image.

    ``part``: ``(index, count)``, 0-based: ingest only that share of the source's listing
    (:mod:`chromaflow.data.parts`) into a part folder (shards ``<split>-partIIIIIofNNNNN-KKKKK.parquet``, a part
    manifest with its share's rejects, gray list and listing records); ``prepare-merge`` joins the parts into
    the single-machine dataset. A part whose share has no usable image is not an error (the merge checks).
    """
    if not isinstance(max_side, int) or max_side < 8:
        raise ValueError(f"max_side must be an int >= 8, got {max_side!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if not isinstance(shard_rows, int) or shard_rows < 1:
        raise ValueError(f"shard_rows must be a positive int, got {shard_rows!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    out = Path(out)
    params = {
        "max_side": max_side,
        "val_fraction": val_fraction,
        "shard_rows": shard_rows,
        "max_pixels": max_pixels,
        "gray_chroma": gray_chroma,
        "version": MANIFEST_VERSION,
    }
    if follow_symlinks:  # only when set: the fingerprint and manifest of a default run stay what they were
        params["follow_symlinks"] = True
    listing = list_source(source, follow_symlinks=follow_symlinks, part=part)
    fingerprint = listing.fingerprint(params if part is None else {**params, "part": list(part)})
    done = up_to_date(out, fingerprint)
    if done is not None:
        log.info(
            "prepare: %s is up to date with %s (fingerprint %s); nothing to do",
            printable(out),
            printable(source),
            fingerprint[:12],
        )
        return done
    entries = listing.entries
    if not (len(entries) if part is None else listing.total) and not listing.unreadable:
        raise ValueError(f"source {source!r} is empty: no files found")

    (out / "manifest.json").unlink(missing_ok=True)  # a crash mid-run must not leave a valid-looking output
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"{part_name(part)}-" if part is not None else ""
    writers = {s: ShardWriter(shard_dir, s, shard_rows, prefix) for s in ("train", "val")}
    rejected = list(listing.unreadable)
    grayscale, converted = [], []
    labels: set[str] = set()
    n_workers = workers or len(os.sched_getaffinity(0))
    n_workers = max(1, min(n_workers, len(entries) // 16 or 1))
    batch = max(64, 32 * n_workers)
    work = functools.partial(process_image, max_side=max_side, max_pixels=max_pixels)
    pool = ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) if n_workers > 1 else None
    try:
        batches = [entries[i : i + batch] for i in range(0, len(entries), batch)]

        def submit(chunk: list[Entry]) -> tuple[list[Entry], list, object]:
            datas = [read_entry(e) for e in chunk]
            todo = [d for d in datas if isinstance(d, bytes)]
            return chunk, datas, (pool.map(work, todo, chunksize=8) if pool else map(work, todo))

        pending = None
        # the pool decodes batch k+1 while this process gray-checks and writes batch k
        for chunk in progress([*batches, None], total=len(batches) + 1, desc=f"prepare {printable(source)}"):
            nxt = submit(chunk) if chunk is not None else None
            if pending is None:
                pending = nxt
                continue
            chunk_k, datas, results = pending
            pending = nxt
            results = iter(results)
            res = [next(results) if isinstance(d, bytes) else {"ok": False, "reason": d} for d in datas]
            oks = [(e, r) for e, r in zip(chunk_k, res, strict=True) if r["ok"]]
            flags = gray_flags([r for _, r in oks], gray_chroma)
            for e, r in zip(chunk_k, res, strict=True):
                if not r["ok"]:
                    rejected.append({"path": e.id, "reason": r["reason"]})
            for (e, r), gray in zip(oks, flags, strict=True):
                split = e.split or hash_split(e.id, val_fraction)
                if gray:
                    grayscale.append(e.id)
                if r["notes"]:
                    converted.append({"id": e.id, "notes": r["notes"]})
                if e.label is not None:
                    labels.add(e.label)
                writers[split].add(
                    {
                        "id": e.id,
                        "source": source,
                        "split": split,
                        "label": e.label,
                        "width": r["width"],
                        "height": r["height"],
                        "has_color": not gray,
                        "image": r["image"],
                        "format": r["format"],
                    }
                )
        for w in writers.values():
            w.flush()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    shards = writers["train"].written + writers["val"].written
    for stale in shard_dir.glob("*.parquet"):  # shards of an earlier run with other inputs/params
        if f"shards/{stale.name}" not in shards:
            stale.unlink()
    manifest = build_manifest(
        source,
        params,
        fingerprint,
        shards,
        {s: w.count for s, w in writers.items()},
        rejected=rejected,
        grayscale=grayscale,
        converted=converted,
        metadata=listing.metadata,
        labels=labels,
        check_usable=part is None,
    )
    if part is not None:
        shared = listing.shared_rejects
        manifest["part"] = {"index": part[0], "count": part[1]}
        manifest["labels"] = sorted(labels)
        manifest["listing"] = {  # what prepare-merge needs to rebuild the single listing's fingerprint
            "records": [r.decode("utf-8", "surrogateescape") for r in listing.records()],
            "shared_rejects": shared,
            "entry_rejects": len(listing.unreadable) - shared,
        }
    counts = manifest["counts"]
    write_json(out / "manifest.json", manifest)
    log.info(
        "prepare: %d images (%d train, %d val, %d gray), %d rejected -> %s",
        counts["images"],
        counts["train"],
        counts["val"],
        counts["grayscale"],
        counts["rejected"],
        printable(out),
    )
    for r in rejected:
        log.warning("prepare: rejected %s: %s", printable(r["path"]), printable(r["reason"]))
    return manifest


def build_manifest(
    source: str,
    params: dict,
    fingerprint: str,
    shards: list[str],
    rows: dict[str, int],
    *,
    rejected: list[dict],
    grayscale: list[str],
    converted: list[dict],
    metadata: list[str],
    labels: set[str],
    check_usable: bool = True,
) -> dict:
    """The manifest of a prepared dataset (``rows``: rows per split); ``check_usable``: raise ``ValueError``
    naming the first rejects when no image is usable."""
    n_ok = rows["train"] + rows["val"]
    if check_usable and n_ok == 0:
        first = "; ".join(f"{r['path']}: {r['reason']}" for r in rejected[:5])
        raise ValueError(f"source {source!r}: none of its {len(rejected)} files is a usable image ({first})")
    counts = {
        "images": n_ok,
        "train": rows["train"],
        "val": rows["val"],
        "rejected": len(rejected),
        "grayscale": len(grayscale),
        "color": n_ok - len(grayscale),
        "converted": len(converted),
        "labels": len(labels),
    }
    return {
        "source": source,
        "params": params,
        "fingerprint": fingerprint,
        "counts": counts,
        "shards": shards,
        "rejected": rejected,
        "grayscale": grayscale,
        "converted": converted,
        "metadata": metadata,
        "schema": {f.name: str(f.type) for f in SCHEMA},
    }


def summary_line(manifest: dict) -> str:
    """One line of a manifest's counts, as the CLI prints it."""
    c = manifest["counts"]
    return f"{c['images']} images ({c['train']} train, {c['val']} val, {c['grayscale']} gray), {c['rejected']} rejected"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="fsspec URL: folder, archive (zip:// tar://), or .txt list")
    parser.add_argument("--out", required=True, help="output folder (shards/ and manifest.json)")
    parser.add_argument("--max-side", type=int, default=256, help="longest side of stored images, px")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="hash-split share of val (no split folders)")
    parser.add_argument("--shard-rows", type=int, default=2048, help="rows per Parquet shard")
    parser.add_argument("--workers", type=int, default=None, help="decode processes (default: all cores; 1: no pool)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="decompression-bomb pixel limit")
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="follow symbolic links that stay inside the source folder (default: list them as rejected)",
    )
    parser.add_argument(
        "--part",
        type=parse_part,
        default=None,
        metavar="I/N",
        help="ingest only part I of N (1-based) of the source listing; join the parts with prepare-merge",
    )


def main(args: argparse.Namespace) -> int:
    try:
        manifest = prepare(
            args.source,
            args.out,
            max_side=args.max_side,
            val_fraction=args.val_fraction,
            shard_rows=args.shard_rows,
            workers=args.workers,
            max_pixels=args.max_pixels,
            follow_symlinks=args.follow_symlinks,
            part=args.part,
        )
    except (ValueError, OSError) as exc:
        log.error("prepare failed: %s", printable(exc))
        return 2
    print(summary_line(manifest))
    return 0
