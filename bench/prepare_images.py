"""Benchmark: ``prepare`` on imagenet-sample-1000 vs a bare PIL decode + resize loop over the same files.

    .venv/bin/python bench/prepare_images.py [--n 1000] [--max-side 256]

Goal: <= 1.25x the bare loop with one worker, faster than it with all cores. Imports are warmed before
timing (torch is used by prepare's batched gray check); both sides read the files from disk.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

SHARED = Path(os.environ.get("CHROMAFLOW_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "datasets"


def bare_loop(files: list[Path], max_side: int, encode: bool = False) -> float:
    t = time.perf_counter()
    for f in files:
        img = Image.open(io.BytesIO(f.read_bytes())).convert("RGB")
        s = max_side / max(img.size)
        if s < 1:
            img = img.resize((round(img.size[0] * s), round(img.size[1] * s)), Image.Resampling.BICUBIC)
        if encode:  # what storing the resized image costs at prepare's JPEG settings
            img.save(io.BytesIO(), "JPEG", quality=95, subsampling=0)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--max-side", type=int, default=256)
    args = ap.parse_args()
    folder = SHARED / "imagenet-sample-1000"
    if not folder.is_dir():
        print(f"skip: {folder} not found (set CHROMAFLOW_SHARED)")
        return 0
    import torch  # noqa: F401 - warm imports (not timed on either side)

    import chromaflow.color  # noqa: F401
    from chromaflow.data.prepare import prepare

    files = sorted(folder.glob("*.jpg"))[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        lst = Path(tmp) / "list.txt"
        lst.write_text("\n".join(map(str, files)))
        bare_loop(files[:50], args.max_side)  # page cache warm-up
        t_bare = bare_loop(files, args.max_side)
        t_enc = bare_loop(files, args.max_side, encode=True)
        t0 = time.perf_counter()
        m = prepare(str(lst), Path(tmp) / "w1", max_side=args.max_side, workers=1)
        t_one = time.perf_counter() - t0
        n_cores = len(os.sched_getaffinity(0))
        t0 = time.perf_counter()
        prepare(str(lst), Path(tmp) / "wn", max_side=args.max_side, workers=n_cores)
        t_all = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepare(str(lst), Path(tmp) / "w1", max_side=args.max_side, workers=1)
        t_noop = time.perf_counter() - t0
    n = len(files)
    print(f"prepare {n} images (imagenet-sample-1000, max side {args.max_side}), {n_cores} cores")
    print(f"  anchor bare PIL decode+resize loop : {t_bare:7.2f} s  {n / t_bare:7.1f} img/s")
    print(f"  bare loop + JPEG q95 4:4:4 encode  : {t_enc:7.2f} s  {n / t_enc:7.1f} img/s  ratio {t_enc / t_bare:.2f}x")
    print(f"  prepare, 1 worker                  : {t_one:7.2f} s  {n / t_one:7.1f} img/s  ratio {t_one / t_bare:.2f}x")
    print(
        f"  prepare, {n_cores} workers                 : {t_all:7.2f} s  {n / t_all:7.1f} img/s  ratio {t_all / t_bare:.2f}x"
    )
    print(f"  re-run (no-op, fingerprint)        : {t_noop:7.2f} s")
    print(f"  counts: {m['counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
