"""``chromaflow prepare-merge``: join the part folders of ``prepare --part I/N`` into one prepared dataset.

    chromaflow prepare --source data/sample --out runs/p1 --part 1/2   # on any machines, in any order
    chromaflow prepare --source data/sample --out runs/p2 --part 2/2
    chromaflow prepare-merge --parts runs/p1 runs/p2 --out runs/prepared

The result equals the single-machine ``prepare`` of the same source and params: the same rows in the same
order per split, and the same manifest (fingerprint, counts, rejects, gray and converted lists) except the
shard file names, which keep their part (``train-part00001of00002-00000.parquet``). Shards are hard-linked
from the parts when they share a filesystem, else copied.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

from chromaflow.data.parts import check_cover
from chromaflow.data.prepare import build_manifest, summary_line, up_to_date
from chromaflow.data.sources import fingerprint_of
from chromaflow.io import atomic_path, read_json, write_json
from chromaflow.logs import printable

log = logging.getLogger(__name__)

SAME = ("source", "params", "metadata", "schema")  # manifest fields every part of one run has alike


def _read_parts(parts: list[Path]) -> list[dict]:
    manifests = []
    for p in parts:
        path = Path(p) / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(f"{p} is not a prepare part: {path} is missing (run `chromaflow prepare --part`)")
        m = read_json(path)
        if "part" not in m:
            raise ValueError(f"{p} is a whole prepared dataset, not a part (made without --part)")
        manifests.append(m)
    order = sorted(range(len(parts)), key=lambda k: manifests[k]["part"]["index"])
    check_cover([(manifests[k]["part"]["index"], manifests[k]["part"]["count"]) for k in order], "prepare-merge")
    for k in order:
        for key in SAME:
            if manifests[k][key] != manifests[order[0]][key]:
                raise ValueError(f"prepare-merge: {parts[k]} has another {key!r} than {parts[order[0]]}: not one run")
    return [(Path(parts[k]), manifests[k]) for k in order]


def _link_or_copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(src, tmp)


def prepare_merge(parts: list[str | os.PathLike], out: str | os.PathLike) -> dict:
    """Join the part folders ``parts`` (any order, all N of one run) into ``out``; return the manifest.

    Rows per split: part 1's, then part 2's, ... (the single run's order: parts are contiguous shares of the
    sorted listing). Rejected: the listing's shared rejects once, then each part's listing rejects, then each
    part's decode rejects (the single run's order). Raises ``ValueError`` when parts are missing, repeated,
    from different runs, or when no image of any part is usable.
    """
    if not parts:
        raise ValueError("prepare-merge: no parts given")
    loaded = _read_parts([Path(p) for p in parts])
    out = Path(out)
    first = loaded[0][1]
    shared = first["rejected"][: first["listing"]["shared_rejects"]]
    records, listing_rejects, decode_rejects = [], [], []
    grayscale, converted, labels = [], [], set()
    rows = {"train": 0, "val": 0}
    for path, m in loaded:
        k, e = m["listing"]["shared_rejects"], m["listing"]["entry_rejects"]
        if m["rejected"][:k] != shared:
            raise ValueError(f"prepare-merge: {path} listed other shared rejects than part 1: the source changed")
        listing_rejects += m["rejected"][k : k + e]
        decode_rejects += m["rejected"][k + e :]
        records += [r.encode("utf-8", "surrogateescape") for r in m["listing"]["records"]]
        grayscale += m["grayscale"]
        converted += m["converted"]
        labels.update(m["labels"])
        for s in rows:
            rows[s] += m["counts"][s]
    fingerprint = fingerprint_of(first["params"], records, first["metadata"], shared + listing_rejects)
    done = up_to_date(out, fingerprint)
    if done is not None:
        log.info("prepare-merge: %s is up to date (fingerprint %s); nothing to do", printable(out), fingerprint[:12])
        return done
    (out / "manifest.json").unlink(missing_ok=True)
    srcs = [
        (path, s)
        for split in ("train", "val")
        for path, m in loaded
        for s in m["shards"]
        if Path(s).name.startswith(f"{split}-")
    ]
    manifest = build_manifest(
        first["source"],
        first["params"],
        fingerprint,
        [s for _, s in srcs],
        rows,
        rejected=shared + listing_rejects + decode_rejects,
        grayscale=grayscale,
        converted=converted,
        metadata=first["metadata"],
        labels=labels,
    )
    (out / "shards").mkdir(parents=True, exist_ok=True)
    for path, s in srcs:
        _link_or_copy(path / s, out / s)
    for stale in (out / "shards").glob("*.parquet"):
        if f"shards/{stale.name}" not in manifest["shards"]:
            stale.unlink()
    write_json(out / "manifest.json", manifest)
    c = manifest["counts"]
    log.info(
        "prepare-merge: %d parts, %d images (%d train, %d val), %d rejected -> %s",
        len(loaded),
        c["images"],
        c["train"],
        c["val"],
        c["rejected"],
        printable(out),
    )
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", nargs="+", required=True, help="the part folders of prepare --part I/N (all N)")
    parser.add_argument("--out", required=True, help="output folder (shards/ and manifest.json)")


def main(args: argparse.Namespace) -> int:
    try:
        manifest = prepare_merge(args.parts, args.out)
    except (ValueError, OSError) as exc:
        log.error("prepare-merge failed: %s", printable(exc))
        return 2
    print(summary_line(manifest))
    return 0
