"""``chromaflow prepare-pairs``: paired (input -> target) images into Parquet shards with a manifest of pairs.

    chromaflow prepare-pairs --source ../shared/datasets/bsds500 --out runs/bsds/pairs --max-side 256

Layout (BSDS500's human boundaries -> photo; one photo has several inputs)::

    <source>/images/<split>/<photo>.<ext>          the target
    <source>/boundaries/<split>/<photo>_<k>.<ext>  input k (annotator k) of that photo

Every input is its own pair with the same target. Splits come from the folders as in ``prepare`` (``test``
-> ``val``). Both images go through prepare's per-file policy (:func:`chromaflow.data.images.process_image`,
longest side <= ``max_side``). An input whose size is the photo's transposed is turned a quarter clockwise
(:data:`TURN_TRANSPOSED`; listed under ``converted``): BSDS500 stores the maps of its 63 portrait photos that way
(clockwise beat the other turns for all 63, by correlation with the photo's gradient magnitude). Rejected, each listed in the manifest with its reason: unreadable or
undecodable files, inputs without a photo, photos without an input, files outside the two folders, and
pairs whose two images differ in size. Shards (``<split>-NNNNN.parquet``, :data:`PAIR_SCHEMA`) and the
manifest are written atomically; re-running with the same inputs and params does nothing.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import posixpath
import re
from pathlib import Path

import pyarrow as pa
from PIL import Image

from chromaflow.data.images import DEFAULT_MAX_PIXELS, process_image
from chromaflow.data.prepare import ShardWriter, read_entry, up_to_date
from chromaflow.data.sources import Entry, list_source
from chromaflow.io import write_json
from chromaflow.logs import printable, progress

log = logging.getLogger(__name__)

INPUT_DIR, TARGET_DIR = "boundaries", "images"
INPUT_NAME = re.compile(r"^(?P<photo>.+)_(?P<k>\d+)$")  # <photo>_<annotator>
PAIR_SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # the input's id (its path below the source)
        ("target_id", pa.string()),
        ("photo", pa.string()),  # the photo's name: the group of pairs sharing a target
        ("annotator", pa.int32()),
        ("split", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("input", pa.binary()),
        ("input_format", pa.string()),
        ("target", pa.binary()),
        ("target_format", pa.string()),
    ]
)
PAIRS_VERSION = 1
TURN_TRANSPOSED = Image.Transpose.ROTATE_270  # a quarter turn clockwise (PIL's ROTATE_* turn anticlockwise)
SPLITS = ("train", "val")


def _role(entry: Entry) -> tuple[str, str, str | None, int | None] | None:
    """``(role, split-folder key, photo, annotator)`` of a listed file from its id, or None if outside the layout."""
    parts = entry.id.split("/")
    if len(parts) < 3 or parts[-3] not in (INPUT_DIR, TARGET_DIR):
        return None
    root = "/".join(parts[:-3])
    stem = posixpath.splitext(parts[-1])[0]
    key = f"{root}/{parts[-2]}" if root else parts[-2]
    if parts[-3] == TARGET_DIR:
        return TARGET_DIR, key, stem, None
    m = INPUT_NAME.match(stem)
    return (INPUT_DIR, key, m["photo"], int(m["k"])) if m else (INPUT_DIR, key, None, None)


def match_pairs(entries: list[Entry]) -> tuple[list[tuple[Entry, Entry, str, int]], list[dict]]:
    """``(input, target, photo, annotator)`` for every input with a photo, and the rejected files with reasons."""
    targets: dict[tuple[str, str], Entry] = {}
    inputs: list[tuple[Entry, str, str, int]] = []
    rejected: list[dict] = []
    for e in entries:
        role = _role(e)
        if role is None:
            rejected.append({"path": e.id, "reason": f"not in a {INPUT_DIR}/<split>/ or {TARGET_DIR}/<split>/ folder"})
        elif role[0] == TARGET_DIR:
            targets[(role[1], role[2])] = e
        elif role[2] is None:
            rejected.append({"path": e.id, "reason": "input name is not <photo>_<annotator>.<ext>"})
        else:
            inputs.append((e, role[1], role[2], role[3]))
    pairs, used = [], set()
    for e, key, photo, k in inputs:
        t = targets.get((key, photo))
        if t is None:
            rejected.append({"path": e.id, "reason": f"no photo {photo!r} in {TARGET_DIR}/ beside it"})
            continue
        used.add(t.id)
        pairs.append((e, t, photo, k))
    rejected += [
        {"path": t.id, "reason": f"photo without any {INPUT_DIR}/ input"} for t in targets.values() if t.id not in used
    ]
    return pairs, rejected


def _decode(entry: Entry, max_side: int, max_pixels: int) -> dict:
    data = read_entry(entry)
    if isinstance(data, str):
        return {"ok": False, "reason": data}
    return process_image(data, max_side=max_side, max_pixels=max_pixels)


def turn_to(inp: dict, target: dict) -> str | None:
    """Turn a decoded input (``process_image`` result) whose size is ``target``'s transposed; return the note."""
    if (inp["width"], inp["height"]) != (target["height"], target["width"]) or inp["width"] == inp["height"]:
        return None
    img = Image.open(io.BytesIO(inp["image"]))
    buf = io.BytesIO()
    img.transpose(TURN_TRANSPOSED).save(buf, "PNG", compress_level=1)
    inp.update(image=buf.getvalue(), format="PNG", width=img.height, height=img.width)
    return "turned a quarter clockwise to the photo's orientation"


def prepare_pairs(
    source: str,
    out: str | os.PathLike,
    *,
    max_side: int = 256,
    shard_rows: int = 2048,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict:
    """Ingest the paired layout of ``source`` into shards under ``out``; return the manifest (also on disk).

    Raises ``ValueError`` when ``source`` is empty or yields no usable pair (naming the first rejects).
    """
    if not isinstance(max_side, int) or max_side < 8:
        raise ValueError(f"max_side must be an int >= 8, got {max_side!r}")
    if not isinstance(shard_rows, int) or shard_rows < 1:
        raise ValueError(f"shard_rows must be a positive int, got {shard_rows!r}")
    out = Path(out)
    params = {"layout": "pairs", "max_side": max_side, "shard_rows": shard_rows, "max_pixels": max_pixels,
              "version": PAIRS_VERSION}  # fmt: skip
    listing = list_source(source)
    fingerprint = listing.fingerprint(params)
    done = up_to_date(out, fingerprint)
    if done is not None:
        log.info("prepare-pairs: %s is up to date (fingerprint %s); nothing to do", printable(out), fingerprint[:12])
        return done
    if not listing.entries and not listing.unreadable:
        raise ValueError(f"source {source!r} is empty: no files found")

    (out / "manifest.json").unlink(missing_ok=True)  # a crash mid-run must not leave a valid-looking output
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    writers = {s: ShardWriter(shard_dir, s, shard_rows, schema=PAIR_SCHEMA) for s in SPLITS}
    pairs, rejected = match_pairs(listing.entries)
    rejected = list(listing.unreadable) + rejected
    decoded: dict[str, dict] = {}  # a photo is decoded once for all its inputs
    listed: list[dict] = []
    converted: list[dict] = []
    for e, t, photo, k in progress(pairs, total=len(pairs), desc=f"prepare-pairs {printable(source)}"):
        if t.id not in decoded:
            decoded[t.id] = _decode(t, max_side, max_pixels)
        tgt, inp = decoded[t.id], _decode(e, max_side, max_pixels)
        note = turn_to(inp, tgt) if inp["ok"] and tgt["ok"] else None
        if note:
            converted.append({"id": e.id, "notes": [note]})
        why = (
            f"input: {inp['reason']}" if not inp["ok"]
            else f"photo {t.id}: {tgt['reason']}" if not tgt["ok"]
            else f"size {inp['width']}x{inp['height']} differs from the photo's {tgt['width']}x{tgt['height']}"
            if (inp["width"], inp["height"]) != (tgt["width"], tgt["height"]) else None
        )  # fmt: skip
        if why:
            rejected.append({"path": e.id, "reason": why})
            continue
        split = e.split or "train"
        writers[split].add({
            "id": e.id, "target_id": t.id, "photo": photo, "annotator": k, "split": split,
            "width": tgt["width"], "height": tgt["height"], "input": inp["image"], "input_format": inp["format"],
            "target": tgt["image"], "target_format": tgt["format"],
        })  # fmt: skip
        listed.append({"id": e.id, "target_id": t.id, "photo": photo, "annotator": k, "split": split})
    for w in writers.values():
        w.flush()
    shards = writers["train"].written + writers["val"].written
    for stale in shard_dir.glob("*.parquet"):  # shards of an earlier run with other inputs/params
        if f"shards/{stale.name}" not in shards:
            stale.unlink()
    if not listed:
        first = "; ".join(f"{r['path']}: {r['reason']}" for r in rejected[:5])
        raise ValueError(f"source {source!r}: no usable input -> photo pair among its files ({first})")
    manifest = {
        "source": source,
        "layout": "pairs",
        "params": params,
        "fingerprint": fingerprint,
        "counts": {
            "pairs": len(listed),
            **{s: writers[s].count for s in SPLITS},
            "photos": len({p["target_id"] for p in listed}),
            "rejected": len(rejected),
            "converted": len(converted),
        },
        "shards": shards,
        "pairs": listed,
        "rejected": rejected,
        "converted": converted,
        "metadata": listing.metadata,
        "schema": {f.name: str(f.type) for f in PAIR_SCHEMA},
    }
    write_json(out / "manifest.json", manifest)
    log.info("prepare-pairs: %s", summary_line(manifest))
    for r in rejected:
        log.warning("prepare-pairs: rejected %s: %s", printable(r["path"]), printable(r["reason"]))
    return manifest


def summary_line(manifest: dict) -> str:
    """One line of a pairs manifest's counts, as the CLI prints it."""
    c = manifest["counts"]
    return f"{c['pairs']} pairs of {c['photos']} photos ({c['train']} train, {c['val']} val), {c['rejected']} rejected"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help=f"fsspec URL of a folder with {INPUT_DIR}/ and {TARGET_DIR}/")
    parser.add_argument("--out", required=True, help="output folder (shards/ and manifest.json)")
    parser.add_argument("--max-side", type=int, default=256, help="longest side of stored images, px")
    parser.add_argument("--shard-rows", type=int, default=2048, help="rows per Parquet shard")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="decompression-bomb pixel limit")


def main(args: argparse.Namespace) -> int:
    try:
        manifest = prepare_pairs(
            args.source, args.out, max_side=args.max_side, shard_rows=args.shard_rows, max_pixels=args.max_pixels
        )
    except (ValueError, OSError) as exc:
        log.error("prepare-pairs failed: %s", printable(exc))
        return 2
    print(summary_line(manifest))
    return 0
