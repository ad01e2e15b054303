"""Benchmark: one linear probe (transfer step) vs scikit-learn LogisticRegression on the same cached features.

    .venv/bin/python bench/transfer_probe.py --features runs/splitbrain/transfer/tiny/features/<hash> \\
        [--layer conv3] [--wd 1e-2] [--max-iter 200] [--threads 1]

Anchor: ``sklearn.linear_model.LogisticRegression(C=1/(wd N), solver="lbfgs")`` (multinomial) on the same
standardized float32 features: the same objective as ``chromaflow.evaluate.probe.fit_linear_probe``
(``mean CE + wd/2 ||W||^2``, bias unpenalized). Prints fit time of each, the ratio, val top-1 of each and
their difference (expected within 1 point), and the objective value each reached. Both run with the same
number of threads (``--threads``, default 1: the machine is shared). Without ``--features`` it uses
synthetic Gaussian-blob features of the same size as a Tiny-ImageNet run (2000 x 9216, 20 classes).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def _load(folder: Path, layer: str):
    import numpy as np

    f = lambda s: np.load(folder / f"{s}-{layer}.npy").astype(np.float32)  # noqa: E731
    return f("train"), np.load(folder / "train-labels.npy"), f("val"), np.load(folder / "val-labels.npy")


def _synthetic(n: int = 2000, d: int = 9216, k: int = 20, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32) * 0.05
    y, yv = rng.integers(0, k, n), rng.integers(0, k, n // 2)
    x = centres[y] + rng.normal(size=(n, d)).astype(np.float32)
    xv = centres[yv] + rng.normal(size=(n // 2, d)).astype(np.float32)
    return x, y, xv, yv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", help="a cached-feature folder written by `chromaflow transfer` (out/features/<hash>)")
    ap.add_argument("--layer", default="conv3")
    ap.add_argument("--wd", type=float, default=1e-2)
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(a.threads)

    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from chromaflow.evaluate.probe import fit_linear_probe

    torch.set_num_threads(a.threads)
    x, y, xv, yv = _load(Path(a.features), a.layer) if a.features else _synthetic()
    k = int(max(y.max(), yv.max())) + 1
    src = f"{a.features} [{a.layer}]" if a.features else "synthetic blobs"
    print(f"features: {src}: train {x.shape}, val {xv.shape}, {k} classes, wd {a.wd}, threads {a.threads}")

    t = time.perf_counter()
    probe = fit_linear_probe(x, y, k, wd=a.wd, max_iter=a.max_iter)
    t_ours = time.perf_counter() - t
    acc_ours = 100 * probe.score(xv, yv)

    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    xs, xvs = (x - mean) / std, (xv - mean) / std
    t = time.perf_counter()
    ref = LogisticRegression(C=1.0 / (a.wd * len(y)), solver="lbfgs", max_iter=a.max_iter).fit(xs, y)
    t_ref = time.perf_counter() - t
    acc_ref = 100 * float((ref.predict(xvs) == yv).mean())

    def objective(w: np.ndarray, b: np.ndarray) -> float:
        z = xs @ w.T + b
        z = z - z.max(1, keepdims=True)
        ce = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean()
        return float(ce + 0.5 * a.wd * (w.astype(np.float64) ** 2).sum())

    print(f"ours    (torch L-BFGS, {probe.iterations} it): {t_ours:8.2f} s  top-1 {acc_ours:5.1f}%  "
          f"objective {objective(probe.weight.numpy(), probe.bias.numpy()):.5f}")  # fmt: skip
    print(f"sklearn (lbfgs, {int(ref.n_iter_[0])} it)        : {t_ref:8.2f} s  top-1 {acc_ref:5.1f}%  "
          f"objective {objective(ref.coef_.astype(np.float32), ref.intercept_.astype(np.float32)):.5f}")  # fmt: skip
    print(f"speed-up (sklearn / ours): {t_ref / t_ours:.2f}x   top-1 difference: {acc_ours - acc_ref:+.2f} points "
          f"({'within' if abs(acc_ours - acc_ref) <= 1 else 'NOT within'} 1 point)")  # fmt: skip


if __name__ == "__main__":
    main()
