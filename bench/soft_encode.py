"""Benchmark: soft-encoding 1 Mpx of real ab values, chromaflow.encode_soft vs the original algorithm.

    .venv/bin/python bench/soft_encode.py [--image PATH] [--k 10] [--device cpu]

Anchor = the original colorization code's NNEncode: sklearn NearestNeighbors(algorithm="ball_tree") over the
313 bins, Gaussian weights exp(-d^2 / (2 sigma^2)) normalized, scattered into a dense (P, 313) float64 target.
Prints both times and the ratio, and asserts identical indices and weights within 1e-6.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from chromaflow.color import ab_bins_numpy, encode_soft, rgb_to_lab
from chromaflow.color.constants import SOFT_K_REFERENCE, SOFT_SIGMA, Q

REPO = Path(__file__).resolve().parents[1]


def original_nnencode(ab_flat: np.ndarray, k: int, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference algorithm on ``(P, 2)`` float64 ab: (inds (P, k), wts (P, k), dense (P, Q))."""
    nbrs = NearestNeighbors(n_neighbors=k, algorithm="ball_tree").fit(ab_bins_numpy())
    dists, inds = nbrs.kneighbors(ab_flat)
    wts = np.exp(-(dists**2) / (2 * sigma**2))
    wts = wts / np.sum(wts, axis=1)[:, None]
    dense = np.zeros((ab_flat.shape[0], Q))
    dense[np.arange(ab_flat.shape[0])[:, None], inds] = wts
    return inds, wts, dense


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=REPO.parent / "shared" / "datasets" / "kodak24" / "kodim23.png")
    ap.add_argument("--k", type=int, default=SOFT_K_REFERENCE)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of both sides (default: one, like the anchor)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # the anchor's BLAS/OpenMP pools too: both sides on the same threads
    img = np.array(Image.open(args.image).convert("RGB").resize((1024, 1024), Image.BICUBIC))
    ab = rgb_to_lab(torch.from_numpy(img).permute(2, 0, 1)[None].contiguous())[:, 1:]  # (1, 2, 1024, 1024) float32
    ab64 = ab.double()
    flat = ab64.permute(0, 2, 3, 1).reshape(-1, 2).numpy()

    x = ab64.to(args.device)
    encode_soft(x[..., :8, :8], k=args.k)  # builds the lookup table once (cached), as in training
    t = time.perf_counter()
    idx, w = encode_soft(x, k=args.k, sigma=SOFT_SIGMA)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    t_ours = time.perf_counter() - t

    tracemalloc.start()
    t = time.perf_counter()
    inds, wts, dense = original_nnencode(flat, args.k, SOFT_SIGMA)
    t_ref = time.perf_counter() - t
    peak_ref = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    oi = idx.cpu().permute(0, 2, 3, 1).reshape(-1, args.k).numpy()
    ow = w.cpu().permute(0, 2, 3, 1).reshape(-1, args.k).numpy()
    same_order = float((oi == inds).all(1).mean())
    assert np.array_equal(np.sort(oi, 1), np.sort(inds, 1)), "neighbour sets differ"
    assert np.abs(ow - wts).max() < 1e-6, f"weights differ by {np.abs(ow - wts).max():.2e}"
    ours_bytes = idx.element_size() * idx.numel() + w.element_size() * w.numel()
    print(f"{flat.shape[0]:,} px of ab from {args.image.name}, k={args.k}, sigma={SOFT_SIGMA}, device {args.device}")
    print(f"ours    encode_soft (fine-cell ranks):       {t_ours:7.3f} s   output {ours_bytes / 2**20:6.1f} MiB")
    print(f"anchor  NearestNeighbors ball_tree + dense:  {t_ref:7.3f} s   peak {peak_ref / 2**20:6.1f} MiB")
    print(f"ratio   anchor / ours: {t_ref / t_ours:.1f}x   (goal >= 20x)")
    print(
        f"identical: neighbour sets 100%, same order {same_order:.4%} (rest: exact ties), max |dw| {np.abs(ow - wts).max():.1e}"
    )


if __name__ == "__main__":
    main()
