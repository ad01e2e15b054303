"""``chromaflow stats``: the Lab quantization statistics of a prepared split (thesis section 2.2.2, Fig. 2.3).

    chromaflow stats --data runs/demo/prepared --out runs/demo/stats

Every pixel of every colour image (``has_color``) of the split is converted to Lab (float64, matches
skimage) and hard-encoded to the nearest of the Q=313 in-gamut ab bins. Outputs, all under ``out``:

- ``counts.npy`` int64 ``(Q,)``: exact pixel counts per bin; ``prior.npy`` float64 ``(Q,)``: counts / total
  (the empirical prior p); ``weights.npy`` float64 ``(Q,)``: rebalancing weights w (Eq. 2.4, lambda=1/2,
  sigma=5), with sum(p_smoothed * w) = 1;
- ``l_hist.npy`` int64 ``(l_bins,)``: L histogram over [0, 100]; ``counts_given_l.npy`` int64 ``(l_bands, Q)``
  and ``prior_given_l.npy`` float64 ``(l_bands, Q)``: P(ab | L band) (rows with no pixels are 0);
- ``stats.json`` (counts, params, fingerprint, summary), ``prior.png`` (Fig. 2.3b), ``prior_given_l.png``
  (Fig. 2.3c), ``l_hist.png``.

Exact and scalable: a pixel's bins are a function of its 8-bit RGB value, so pixels are first counted per
RGB colour (a 2^24 int64 histogram: 128 MiB, constant memory whatever the data size), then each distinct
colour present is converted once. Streams row group by row group; decoding runs in a thread pool (PIL
releases the GIL), one row group ahead of the counting. Re-running with the same data and params does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from chromaflow import exact
from chromaflow.color import ab_bins, encode_hard, load_prior, rebalance_weights, rgb_to_lab
from chromaflow.color.constants import Q
from chromaflow.data.dataset import shard_files
from chromaflow.data.parts import check_part, parse_part, part_name, part_range
from chromaflow.io import read_json, write_bytes, write_json
from chromaflow.logs import progress

log = logging.getLogger(__name__)

PART_OUTPUTS = ("counts_given_l.npy", "l_hist.npy")  # what a part writes: exact, merged by addition
PART_JSON = "stats-part.json"
OUTPUTS = ("counts.npy", "prior.npy", "weights.npy", "l_hist.npy", "counts_given_l.npy", "prior_given_l.npy")
CHUNK_PIXELS = 1 << 18  # colours per Lab/encode call: bounds the temporary memory of encode_hard
FLUSH_PIXELS = 1 << 22  # pixels buffered before a bincount into the RGB histogram


def _decode_codes(data: bytes) -> np.ndarray:
    """Encoded image -> packed 24-bit RGB codes ``(H*W,)`` uint32 (``r << 16 | g << 8 | b``)."""
    with Image.open(io.BytesIO(data)) as img:
        rgb = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(np.uint32)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


class _Accumulator:
    """Exact pixel counts per 8-bit RGB colour (a ``2^24`` int64 histogram, 128 MiB, whatever the data size).

    A pixel's ab bin and L bin are functions of its RGB value, so :meth:`finish` converts each distinct
    colour present once (at most 2^24 conversions for any dataset) and scatters its count.
    """

    def __init__(self):
        self.hist = np.zeros(1 << 24, dtype=np.int64)
        self.buf: list[np.ndarray] = []
        self.size = 0

    def add(self, codes: np.ndarray) -> None:
        self.buf.append(codes)
        self.size += codes.size
        if self.size >= FLUSH_PIXELS:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.hist += np.bincount(np.concatenate(self.buf), minlength=1 << 24)
            self.buf, self.size = [], 0

    def finish(self, l_bins: int, l_bands: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
        """-> (joint counts ``(l_bands, Q)`` int64, L histogram ``(l_bins,)`` int64)."""
        self.flush()
        colours = np.flatnonzero(self.hist)
        joint = torch.zeros(l_bands * Q, dtype=torch.int64, device=device)
        l_hist = torch.zeros(l_bins, dtype=torch.int64, device=device)
        for start in range(0, colours.size, CHUNK_PIXELS):
            c = torch.from_numpy(colours[start : start + CHUNK_PIXELS]).to(device)
            n = torch.from_numpy(self.hist[colours[start : start + CHUNK_PIXELS]]).to(device)
            rgb = torch.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255]).reshape(1, 3, 1, -1)
            lab = rgb_to_lab(rgb.to(torch.float64) / 255.0)  # (1, 3, 1, N) float64, as skimage
            idx = encode_hard(lab[:, 1:]).reshape(-1)  # (N,) in [0, Q)
            L = lab[0, 0, 0]
            band = (L * (l_bands / 100.0)).floor().long().clamp_(0, l_bands - 1)
            lbin = (L * (l_bins / 100.0)).floor().long().clamp_(0, l_bins - 1)
            joint.index_add_(0, band * Q + idx, n)
            l_hist.index_add_(0, lbin, n)
        return _as_np(joint).reshape(l_bands, Q), _as_np(l_hist)


def _groups(files: list[Path], part: tuple[int, int] | None) -> list[tuple[Path, int, int, int]]:
    """``(file, row group, first row, end row)`` of the split in order; with ``part``, only the rows of its
    contiguous share of all the split's rows (:func:`~chromaflow.data.parts.part_range`)."""
    groups, start = [], 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            groups.append((f, g, start, start + n))
            start += n
    share = part_range(start, *part) if part is not None else range(start)
    return [
        (f, g, max(lo, share.start) - lo, min(hi, share.stop) - lo)
        for f, g, lo, hi in groups
        if lo < share.stop and hi > share.start
    ]


def _row_groups(groups: list[tuple[Path, int, int, int]]):
    for f, g, lo, hi in groups:
        t = pq.ParquetFile(f).read_row_group(g, columns=["image", "has_color"]).slice(lo, hi - lo)
        t = t.filter(t.column("has_color"))
        yield t.column("image").to_pylist()


def _count(groups: list[tuple[Path, int, int, int]], workers: int | None, l_bins: int, l_bands: int, device, desc: str):
    """Exact int64 counts of the colour pixels of ``groups``: (joint ``(l_bands, Q)``, L histogram, images)."""
    acc = _Accumulator()
    n_images = 0
    n_threads = workers or len(os.sched_getaffinity(0))
    with ThreadPoolExecutor(n_threads) as pool:
        pending = None
        it = _row_groups(groups)
        for _ in progress(range(len(groups) + 1), total=len(groups) + 1, desc=desc):
            nxt = next(it, None)
            fut = pool.map(_decode_codes, nxt) if nxt else None  # decodes this group while we count the last
            for codes in pending or ():
                n_images += 1
                acc.add(codes)
            pending = fut
    joint, l_hist = acc.finish(l_bins, l_bands, torch.device(device))
    return joint, l_hist, n_images


def _fingerprint(data: Path, split: str, params: dict) -> str:
    manifest = read_json(data / "manifest.json")
    blob = json.dumps({"data": manifest.get("fingerprint"), "split": split, "params": params}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def _save_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    write_bytes(path, buf.getvalue())


def _as_np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def stats(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "train",
    l_bins: int = 100,
    l_bands: int = 10,
    workers: int | None = None,
    plots: bool = True,
    device: str | torch.device = "cpu",
    part: tuple[int, int] | None = None,
) -> dict:
    """Compute the ab prior, P(ab | L), the L histogram and the rebalancing weights of a prepared split.

    ``data``: a prepare output folder; ``out``: output folder; ``split``: "train" | "val"; ``l_bins``: L
    histogram bins over [0, 100]; ``l_bands``: L bands for P(ab | L); ``workers``: decode threads (None:
    all cores). Returns the content of ``stats.json``. Raises ``ValueError`` when the split has no colour pixel.

    ``part``: ``(index, count)``, 0-based: count only that contiguous share of the split's rows and write
    the exact counts (``counts_given_l.npy``, ``l_hist.npy``) and ``stats-part.json`` (returned); ``stats-merge``
    adds the parts' counts and writes what a single run writes, byte for byte.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if l_bins < 1 or l_bands < 1:
        raise ValueError(f"l_bins and l_bands must be >= 1, got {l_bins}, {l_bands}")
    data, out = Path(data), Path(out)
    files = shard_files(data, split)
    params = {"split": split, "l_bins": l_bins, "l_bands": l_bands, "plots": plots, "version": 1}
    fingerprint = _fingerprint(data, split, params)
    done = up_to_date(out, fingerprint) if part is None else _part_up_to_date(out, fingerprint, check_part(part))
    if done is not None:
        log.info("stats: %s is up to date (fingerprint %s); nothing to do", out, fingerprint[:12])
        return done
    desc = f"stats {data.name}/{split}" + (f" {part_name(part)}" if part else "")
    joint, l_hist, n_images = _count(_groups(files, part), workers, l_bins, l_bands, device, desc)
    if part is not None:
        out.mkdir(parents=True, exist_ok=True)
        _save_npy(out / "counts_given_l.npy", joint)
        _save_npy(out / "l_hist.npy", l_hist)
        summary = {"part": {"index": part[0], "count": part[1]}, "fingerprint": fingerprint, "params": params}
        summary.update(data=str(data), images=n_images, pixels=int(joint.sum()))
        write_json(out / PART_JSON, summary)
        return summary
    return write_stats(out, joint, l_hist, n_images, data=data, params=params, fingerprint=fingerprint)


def write_stats(
    out: Path, joint: np.ndarray, l_hist: np.ndarray, n_images: int, *, data: Path, params: dict, fingerprint: str
) -> dict:
    """The stats outputs from exact counts (``joint`` int64 ``(l_bands, Q)``, ``l_hist`` int64 ``(l_bins,)``):
    the single way every derived float is made, for one run and for a merge of parts alike."""
    split, l_bins, l_bands, plots = params["split"], params["l_bins"], params["l_bands"], params["plots"]
    if joint.sum() == 0:
        raise ValueError(f"{data}: split {split!r} has no colour image (has_color=True) to count")

    counts = joint.sum(0)
    prior = counts / counts.sum()
    band_tot = joint.sum(1, keepdims=True)
    cond = np.divide(joint, band_tot, out=np.zeros(joint.shape), where=band_tot > 0)
    weights = _as_np(rebalance_weights(torch.from_numpy(prior))).astype(np.float64)
    out.mkdir(parents=True, exist_ok=True)
    for name, arr in zip(
        OUTPUTS, (counts, prior, weights, l_hist, joint, cond), strict=True
    ):  # fmt: skip
        _save_npy(out / name, arr)

    bins = _as_np(ab_bins()).astype(np.float64)
    ref = _as_np(load_prior()).astype(np.float64)
    top = np.argsort(-prior, kind="stable")[:10]  # numpy's default sort orders ties by CPU (AVX-512 sort)
    nz = prior[prior > 0]
    summary = {
        "split": split,
        "fingerprint": fingerprint,
        "params": params,
        "data": str(data),
        "images": n_images,
        "pixels": int(counts.sum()),
        "bins_nonzero": int((counts > 0).sum()),
        "entropy_bits": -exact.fsum(nz * exact.log(nz, base=2)),  # exact: the same bits on every CPU
        "corr_with_shipped_prior": exact.corr(prior, ref),
        "top_bins": [{"bin": int(q), "ab": bins[q].tolist(), "p": float(prior[q])} for q in top],
        "weights": {"min": float(weights.min()), "max": float(weights.max())},
        "l_edges": np.linspace(0, 100, l_bins + 1).tolist(),
        "l_band_edges": np.linspace(0, 100, l_bands + 1).tolist(),
        "pixels_per_l_band": band_tot.ravel().astype(int).tolist(),
        "files": list(OUTPUTS) + ["prior.png", "prior_given_l.png", "l_hist.png"] * plots,
    }
    if plots:
        from chromaflow.data import plots as P

        P.plot_prior(prior, bins, out / "prior.png", title=f"log10 P(ab), {n_images} images")
        P.plot_prior_given_l(cond, np.asarray(summary["l_band_edges"]), bins, out / "prior_given_l.png")
        P.plot_l_hist(l_hist, np.asarray(summary["l_edges"]), out / "l_hist.png")
    write_json(out / "stats.json", summary)
    log.info(
        "stats: %d images, %d pixels, %d/%d bins used, corr with shipped prior %.3f -> %s",
        n_images,
        summary["pixels"],
        summary["bins_nonzero"],
        Q,
        summary["corr_with_shipped_prior"],
        out,
    )
    return summary


def up_to_date(out: Path, fingerprint: str) -> dict | None:
    """The ``stats.json`` of ``out`` if it has ``fingerprint`` and all outputs exist, else None."""
    if (out / "stats.json").is_file() and all((out / o).is_file() for o in OUTPUTS):
        old = read_json(out / "stats.json")
        if old.get("fingerprint") == fingerprint:
            return old
    return None


def _part_up_to_date(out: Path, fingerprint: str, part: tuple[int, int]) -> dict | None:
    path = out / PART_JSON
    if not (path.is_file() and all((out / o).is_file() for o in PART_OUTPUTS)):
        return None
    old = read_json(path)
    same = old.get("fingerprint") == fingerprint and old.get("part") == {"index": part[0], "count": part[1]}
    return old if same else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="a prepare output folder (manifest.json + shards/)")
    parser.add_argument("--out", required=True, help="output folder for the .npy, stats.json and plots")
    parser.add_argument("--split", default="train", choices=["train", "val"])
    parser.add_argument("--l-bins", type=int, default=100, help="L histogram bins over [0, 100]")
    parser.add_argument("--l-bands", type=int, default=10, help="L bands for P(ab | L)")
    parser.add_argument("--workers", type=int, default=None, help="decode threads (default: all cores)")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    parser.add_argument(
        "--part",
        type=parse_part,
        default=None,
        metavar="I/N",
        help="count only part I of N (1-based) of the split's rows; add the parts with stats-merge",
    )


def main(args: argparse.Namespace) -> int:
    try:
        s = stats(
            args.data,
            args.out,
            split=args.split,
            l_bins=args.l_bins,
            l_bands=args.l_bands,
            workers=args.workers,
            plots=args.plots,
            part=args.part,
        )
    except (ValueError, OSError) as exc:
        log.error("stats failed: %s", exc)
        return 2
    if args.part is not None:
        print(f"part {args.part[0] + 1}/{args.part[1]}: {s['images']} images, {s['pixels']} pixels -> {args.out}")
        return 0
    print(f"{s['images']} images, {s['pixels']} pixels, {s['bins_nonzero']}/{Q} bins -> {args.out}")
    return 0
