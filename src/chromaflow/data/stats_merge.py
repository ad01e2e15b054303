"""``chromaflow stats-merge``: add the exact counts of ``stats --part I/N`` and write the whole split's stats.

    chromaflow stats --data runs/prepared --out runs/s1 --part 1/2   # on any machines, in any order
    chromaflow stats --data runs/prepared --out runs/s2 --part 2/2
    chromaflow stats-merge --parts runs/s1 runs/s2 --out runs/stats

Parts hold int64 pixel counts per (L band, ab bin) and per L bin: functions of each pixel, so the whole
split's counts are their sum, exactly. The prior, weights, P(ab | L), ``stats.json`` and plots are then made
from the summed counts by :func:`chromaflow.data.stats.write_stats`, the code a single run uses: the outputs
are byte-identical to ``chromaflow stats`` on the same data (given the same ``--data`` spelling).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np

from chromaflow.color.constants import Q
from chromaflow.data.parts import check_cover
from chromaflow.data.stats import PART_JSON, PART_OUTPUTS, up_to_date, write_stats
from chromaflow.io import read_json

log = logging.getLogger(__name__)


def stats_merge(parts: list[str | os.PathLike], out: str | os.PathLike) -> dict:
    """Add the counts of the stats part folders ``parts`` (any order, all N of one run); write and return
    ``stats.json`` (as :func:`chromaflow.data.stats.stats`). Raises ``ValueError`` when parts are missing,
    repeated, or from different data or params."""
    if not parts:
        raise ValueError("stats-merge: no parts given")
    loaded = []
    for p in map(Path, parts):
        if not (p / PART_JSON).is_file():
            raise FileNotFoundError(
                f"{p} is not a stats part: {p / PART_JSON} is missing (run `chromaflow stats --part`)"
            )
        loaded.append((p, read_json(p / PART_JSON)))
    loaded.sort(key=lambda t: t[1]["part"]["index"])
    check_cover([(m["part"]["index"], m["part"]["count"]) for _, m in loaded], "stats-merge")
    first = loaded[0][1]
    for p, m in loaded:
        for key in ("fingerprint", "params", "data"):
            if m[key] != first[key]:
                raise ValueError(f"stats-merge: {p} has another {key!r} than {loaded[0][0]}: not one run")
    out = Path(out)
    done = up_to_date(out, first["fingerprint"])
    if done is not None:
        log.info("stats-merge: %s is up to date (fingerprint %s); nothing to do", out, first["fingerprint"][:12])
        return done
    sums = []
    for name in PART_OUTPUTS:
        arrays = [np.load(p / name, allow_pickle=False) for p, _ in loaded]
        if any(a.dtype != np.int64 or a.shape != arrays[0].shape for a in arrays):
            raise ValueError(f"stats-merge: {name} of the parts are not int64 counts of one shape")
        sums.append(np.sum(arrays, axis=0, dtype=np.int64))
    joint, l_hist = sums
    n_images = sum(m["images"] for _, m in loaded)
    return write_stats(
        out, joint, l_hist, n_images, data=Path(first["data"]), params=first["params"], fingerprint=first["fingerprint"]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", nargs="+", required=True, help="the part folders of stats --part I/N (all N)")
    parser.add_argument("--out", required=True, help="output folder for the .npy, stats.json and plots")


def main(args: argparse.Namespace) -> int:
    try:
        s = stats_merge(args.parts, args.out)
    except (ValueError, OSError) as exc:
        log.error("stats-merge failed: %s", exc)
        return 2
    print(f"{s['images']} images, {s['pixels']} pixels, {s['bins_nonzero']}/{Q} bins -> {args.out}")
    return 0
