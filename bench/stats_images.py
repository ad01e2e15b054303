"""Benchmark: ``stats`` and the ``ShardDataset`` loader on imagenet-sample-1000 (prepared at max side 256).

    .venv/bin/python bench/stats_images.py [--n 1000]

Prints images/s and peak memory (RSS high-water mark) of stats vs the brute-force anchor (skimage rgb2lab
+ argmin over the 313 bins per pixel, timed on a subset), and the loader's images/s (train random crop
176 and val resize + centre crop, one process, no DataLoader workers).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(os.environ.get("CHROMAFLOW_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "datasets"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def brute_force(images: list[bytes], bins: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    counts = np.zeros(len(bins), np.int64)
    for data in images:
        lab = rgb2lab(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))).reshape(-1, 3)
        q = ((lab[:, None, 1:] - bins[None]) ** 2).sum(-1).argmin(1)
        counts += np.bincount(q, minlength=len(bins))
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--anchor-n", type=int, default=20, help="images for the brute-force anchor")
    args = ap.parse_args()
    folder = SHARED / "imagenet-sample-1000"
    if not folder.is_dir():
        print(f"skip: {folder} not found (set CHROMAFLOW_SHARED)")
        return 0
    import pyarrow.parquet as pq

    from chromaflow.color import ab_bins
    from chromaflow.data.dataset import ShardDataset
    from chromaflow.data.prepare import prepare
    from chromaflow.data.stats import stats

    files = sorted(folder.glob("*.jpg"))[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        lst = Path(tmp) / "list.txt"
        lst.write_text("\n".join(map(str, files)))
        prepare(str(lst), Path(tmp) / "prep", max_side=256, val_fraction=0.1)
        rss0 = rss_mb()
        t0 = time.perf_counter()
        s = stats(Path(tmp) / "prep", Path(tmp) / "stats", plots=False)
        t_stats = time.perf_counter() - t0
        rss1 = rss_mb()
        shard = sorted((Path(tmp) / "prep" / "shards").glob("train-*.parquet"))[0]
        imgs = [r["image"] for r in pq.read_table(shard).to_pylist() if r["has_color"]][: args.anchor_n]
        t0 = time.perf_counter()
        brute_force(imgs, ab_bins().numpy().astype(np.float64))
        t_brute = (time.perf_counter() - t0) / len(imgs)
        loader = {}
        for name, kw in {
            "train crop 176": dict(split="train", train=True),
            "val crop 176": dict(split="val", train=False),
        }.items():
            ds = ShardDataset(Path(tmp) / "prep", crop=176, **kw)
            t0 = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            loader[name] = len(ds) / (time.perf_counter() - t0)
    n = s["images"]
    print(f"stats on {n} colour images of imagenet-sample-1000 (max side 256), {s['pixels'] / 1e6:.1f} M pixels")
    print(
        f"  ours (exact, RGB histogram)  : {t_stats:6.2f} s  {n / t_stats:8.1f} img/s  {s['pixels'] / t_stats / 1e6:6.2f} Mpx/s"
    )
    print(
        f"  anchor skimage + argmin      : {t_brute * n:6.2f} s  {1 / t_brute:8.1f} img/s  (extrapolated from {len(imgs)} images)"
    )
    print(f"  speed-up vs anchor           : {t_brute * n / t_stats:.1f}x")
    print(f"  peak RSS: {rss1:.0f} MB after stats (before: {rss0:.0f} MB; the RGB histogram is 128 MiB)")
    for name, ips in loader.items():
        print(f"  loader {name:15s}: {ips:8.1f} img/s (one process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
