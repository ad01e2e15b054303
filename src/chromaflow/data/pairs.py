"""``chromaflow prepare-pairs``: paired (input -> target) images into Parquet shards with a manifest of pairs.

    chromaflow prepare-pairs --source ../shared/datasets/bsds500 --out runs/bsds/pairs --max-side 256
    chromaflow prepare-pairs --pairs gray --source ../shared/datasets/tiny-imagenet-200-subset.zip --out runs/tin/gray

Two layouts (``--pairs``, :data:`LAYOUTS`):

- ``edges`` (BSDS500's human boundaries -> photo; one photo has several inputs)::

      <source>/images/<split>/<photo>.<ext>          the target
      <source>/boundaries/<split>/<photo>_<k>.<ext>  input k (annotator k) of that photo

  Every input is its own pair with the same target. An input whose size is the photo's transposed is turned a
  quarter clockwise (:data:`TURN_TRANSPOSED`; listed under ``converted``): BSDS500 stores the maps of its 63
  portrait photos that way (clockwise beat the other turns for all 63, by correlation with the photo's gradient
  magnitude). An input must be a 1-bit or 8-bit gray file (a colour, alpha, palette or 16-bit map is rejected:
  converting it would guess which pixels are boundaries).
- ``gray`` (gray -> colour): any image source ``prepare`` reads (folder, archive, file list;
  :mod:`chromaflow.data.sources`); one pair per colour photo, the input is the photo's CIE L (``L / 100 * 255``,
  8-bit gray, computed from the stored photo). Gray photos (prepare's gray check) are rejected: no colour to learn.

Splits come from the first split folder of a file's path (``train``, ``val``/``valid*``, and ``test`` kept as its
own held-out ``test`` split, not merged into ``val``); files below no split folder are hash-split by photo
(``val_fraction``). Both images go through prepare's per-file policy (:func:`chromaflow.data.images.process_image`,
longest side <= ``max_side``; a photo's conversions are listed under ``converted``). Rejected, each listed in the
manifest with its reason, the rest proceeding: unreadable, truncated or undecodable files, inputs without a photo,
photos without an input, files outside the two folders, paths with ``.`` / ``..`` parts, links and special
files (:func:`chromaflow.data.sources.walk_folder`), and pairs whose two images differ in size. Shards
(``<split>-NNNNN.parquet``, :data:`PAIR_SCHEMA`) and the manifest are written atomically; re-running with the
same inputs and params does nothing.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from chromaflow.color.lab import lightness_u8
from chromaflow.data.images import DEFAULT_MAX_PIXELS, process_image
from chromaflow.data.prepare import ShardWriter, gray_flags, hash_split, read_entry, up_to_date
from chromaflow.data.sources import SPLIT_DIRS, Entry, list_source
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
PAIRS_VERSION = 2  # 2: test/ is its own split; layouts; unsplit sources hash-split by photo
TURN_TRANSPOSED = Image.Transpose.ROTATE_270  # a quarter turn clockwise (PIL's ROTATE_* turn anticlockwise)
SPLITS = ("train", "val", "test")
PAIR_SPLIT_DIRS = {**SPLIT_DIRS, "test": "test"}  # prepare's split folders, with test held out
LAYOUTS = ("edges", "gray")
VAL_FRACTION = 0.1
INPUT_MODE = "L"  # the one mode an edges input may decode to (1-bit files decode to it without a note)


def split_of(id_: str, group: str, val_fraction: float) -> str:
    """The split of a file: its first split folder (:data:`PAIR_SPLIT_DIRS`), else ``hash_split(group)``, so that
    all pairs of one photo (``group``) land in one split."""
    for d in id_.split("/")[:-1]:
        if d.lower() in PAIR_SPLIT_DIRS:
            return PAIR_SPLIT_DIRS[d.lower()]
    return hash_split(group, val_fraction)


def hostile_path(id_: str) -> str | None:
    """Why a listed id is refused (an absolute path or one with ``.`` / ``..`` parts, as an archive member or a
    file list can spell it), or None."""
    if id_.startswith("/") or any(p in (".", "..") for p in id_.split("/")):
        return "a path with '.' or '..' parts or an absolute path: refused (it could name a file outside the source)"
    return None


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
        why = hostile_path(e.id)
        role = None if why else _role(e)
        if why:
            rejected.append({"path": e.id, "reason": why})
        elif role is None:
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


def map_problem(inp: dict) -> str | None:
    """Why a decoded edges input (``process_image`` result) is not a boundary map, or None: it must be a 1-bit or
    8-bit gray file (no colour, alpha, palette or 16-bit conversion)."""
    changed = [n for n in inp["notes"] if not n.startswith(("EXIF orientation", "frame 0"))]
    if inp["mode"] != INPUT_MODE or changed:
        what = "; ".join(changed) or f"decoded as {inp['mode']}"
        return f"input: a boundary map must be a 1-bit or 8-bit gray image ({what})"
    return None


def turn_to(inp: dict, target: dict) -> str | None:
    """Turn a decoded input (``process_image`` result) whose size is ``target``'s transposed; return the note."""
    if (inp["width"], inp["height"]) != (target["height"], target["width"]) or inp["width"] == inp["height"]:
        return None
    img = Image.open(io.BytesIO(inp["image"]))
    buf = io.BytesIO()
    img.transpose(TURN_TRANSPOSED).save(buf, "PNG", compress_level=1)
    inp.update(image=buf.getvalue(), format="PNG", width=img.height, height=img.width)
    return "turned a quarter clockwise to the photo's orientation"


def lightness_png(photo: bytes) -> bytes:
    """The A image of the gray -> colour pairs: :func:`chromaflow.color.lightness_u8` of an encoded sRGB photo,
    as a PNG."""
    level = lightness_u8(np.asarray(Image.open(io.BytesIO(photo)).convert("RGB")))
    buf = io.BytesIO()
    Image.fromarray(level, "L").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _edge_rows(
    entries: list[Entry], opts: dict, rejected: list[dict], converted: list[dict]
) -> Iterator[tuple[dict, dict, dict]]:
    """``(manifest row, decoded input, decoded photo)`` of the ``edges`` layout, one per usable input; rejects and
    conversions are appended to the lists."""
    pairs, bad = match_pairs(entries)
    rejected += bad
    decoded: dict[str, dict] = {}  # a photo is decoded once for all its inputs
    for e, t, photo, k in progress(pairs, total=len(pairs), desc="prepare-pairs edges"):
        if t.id not in decoded:
            decoded[t.id] = _decode(t, opts["max_side"], opts["max_pixels"])
            if decoded[t.id]["ok"] and decoded[t.id]["notes"]:
                converted.append({"id": t.id, "notes": decoded[t.id]["notes"]})
        tgt, inp = decoded[t.id], _decode(e, opts["max_side"], opts["max_pixels"])
        why = f"input: {inp['reason']}" if not inp["ok"] else map_problem(inp)
        note = turn_to(inp, tgt) if why is None and tgt["ok"] else None
        if note:
            converted.append({"id": e.id, "notes": [note]})
        why = why or (
            f"photo {t.id}: {tgt['reason']}" if not tgt["ok"]
            else f"size {inp['width']}x{inp['height']} differs from the photo's {tgt['width']}x{tgt['height']}"
            if (inp["width"], inp["height"]) != (tgt["width"], tgt["height"]) else None
        )  # fmt: skip
        if why:
            rejected.append({"path": e.id, "reason": why})
            continue
        yield {"id": e.id, "target_id": t.id, "photo": photo, "annotator": k,
               "split": split_of(t.id, t.id, opts["val_fraction"])}, inp, tgt  # fmt: skip


def _gray_rows(
    entries: list[Entry], opts: dict, rejected: list[dict], converted: list[dict]
) -> Iterator[tuple[dict, dict, dict]]:
    """``(manifest row, L input, decoded photo)`` of the ``gray`` layout, one per colour photo."""
    for e in progress(entries, total=len(entries), desc="prepare-pairs gray"):
        why = hostile_path(e.id)
        tgt = None if why else _decode(e, opts["max_side"], opts["max_pixels"])
        if tgt is not None and not tgt["ok"]:
            why = tgt["reason"]
        elif tgt is not None and gray_flags([tgt])[0]:
            why = "a gray photo: no colour to learn for a gray -> colour pair"
        if why:
            rejected.append({"path": e.id, "reason": why})
            continue
        if tgt["notes"]:
            converted.append({"id": e.id, "notes": tgt["notes"]})
        try:
            inp = {"image": lightness_png(tgt["image"]), "format": "PNG"}
        except Exception as exc:  # noqa: BLE001 - one photo PIL decoded once but not twice must not stop the step
            rejected.append({"path": e.id, "reason": f"cannot compute its lightness: {type(exc).__name__}: {exc}"})
            continue
        yield {"id": e.id, "target_id": e.id, "photo": e.id, "annotator": 0,
               "split": split_of(e.id, e.id, opts["val_fraction"])}, inp, tgt  # fmt: skip


ROWS = {"edges": _edge_rows, "gray": _gray_rows}


def prepare_pairs(
    source: str,
    out: str | os.PathLike,
    *,
    pairs: str = "edges",
    max_side: int = 256,
    val_fraction: float = VAL_FRACTION,
    shard_rows: int = 2048,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict:
    """Ingest ``source`` in layout ``pairs`` (:data:`LAYOUTS`) into shards under ``out``; return the manifest
    (also on disk). ``val_fraction`` in [0, 1): val share of photos below no split folder.

    Raises ``ValueError`` when ``source`` is empty or yields no usable pair (naming the first rejects).
    """
    if pairs not in LAYOUTS:
        raise ValueError(f"pairs must be one of {list(LAYOUTS)}, got {pairs!r}")
    if not isinstance(max_side, int) or max_side < 8:
        raise ValueError(f"max_side must be an int >= 8, got {max_side!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if not isinstance(shard_rows, int) or shard_rows < 1:
        raise ValueError(f"shard_rows must be a positive int, got {shard_rows!r}")
    out = Path(out)
    params = {"layout": "pairs", "pairs": pairs, "max_side": max_side, "val_fraction": val_fraction,
              "shard_rows": shard_rows, "max_pixels": max_pixels, "version": PAIRS_VERSION}  # fmt: skip
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
    rejected: list[dict] = list(listing.unreadable)
    converted: list[dict] = []
    listed: list[dict] = []
    opts = {"max_side": max_side, "max_pixels": max_pixels, "val_fraction": val_fraction}
    for row, inp, tgt in ROWS[pairs](listing.entries, opts, rejected, converted):
        writers[row["split"]].add({
            **row, "width": tgt["width"], "height": tgt["height"], "input": inp["image"],
            "input_format": inp["format"], "target": tgt["image"], "target_format": tgt["format"],
        })  # fmt: skip
        listed.append(row)
    for w in writers.values():
        w.flush()
    shards = [s for w in writers.values() for s in w.written]
    for stale in shard_dir.glob("*.parquet"):  # shards of an earlier run with other inputs/params
        if f"shards/{stale.name}" not in shards:
            stale.unlink()
    if not listed:
        first = "; ".join(f"{r['path']}: {r['reason']}" for r in rejected[:5])
        raise ValueError(f"source {source!r}: no usable input -> photo pair among its files ({first})")
    manifest = {
        "source": source,
        "layout": "pairs",
        "pairs_layout": pairs,
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
    splits = ", ".join(f"{c.get(s, 0)} {s}" for s in SPLITS)
    return f"{c['pairs']} pairs of {c['photos']} photos ({splits}), {c['rejected']} rejected"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="fsspec URL: a folder, archive (zip:// tar://) or .txt list")
    parser.add_argument("--out", required=True, help="output folder (shards/ and manifest.json)")
    parser.add_argument(
        "--pairs", choices=LAYOUTS, default="edges",
        help=f"edges: {INPUT_DIR}/<split>/<photo>_<k> -> {TARGET_DIR}/<split>/<photo>; gray: each photo's L -> it",
    )  # fmt: skip
    parser.add_argument("--max-side", type=int, default=256, help="longest side of stored images, px")
    parser.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                        help="val share of the photos below no split folder (hash of the photo's path)")  # fmt: skip
    parser.add_argument("--shard-rows", type=int, default=2048, help="rows per Parquet shard")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="decompression-bomb pixel limit")


def main(args: argparse.Namespace) -> int:
    try:
        manifest = prepare_pairs(
            args.source, args.out, pairs=args.pairs, max_side=args.max_side, val_fraction=args.val_fraction,
            shard_rows=args.shard_rows, max_pixels=args.max_pixels,
        )  # fmt: skip
    except (ValueError, OSError) as exc:
        log.error("prepare-pairs failed: %s", printable(exc))
        return 2
    print(summary_line(manifest))
    return 0
