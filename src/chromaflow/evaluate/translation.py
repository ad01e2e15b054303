"""``chromaflow evaluate-translation``: the diversity / realism / encoding protocol of thesis ch. 4 for a BicycleGAN run.

    chromaflow evaluate-translation --model runs/bg/bicyclegan --data runs/bsds/pairs --out runs/bg/bicyclegan/eval \\
        --classifier-dir ../shared/datasets/squeezenet1_1 [--inputs 100 --samples 20 --seed 0 --split test]

Inputs: ``--inputs`` pairs of the held-out ``--split`` (never ``train``), each from a different photo (a seeded
choice of photos, then of one annotator's map per photo), centre-cropped at ``--size``. For each input ``A``,
``--samples`` outputs ``G(A, z)`` with seeded ``z ~ N(0, I)``; the model runs in eval mode (dropout off). Metrics:

- diversity (Fig. 4.6): mean LPIPS between consecutive samples of the same input, ``inputs x (samples - 1)`` pairs
  (1,900 for the thesis's 100 x 20), and the ceiling: LPIPS between the real photos of random *different* inputs
  (as many pairs). LPIPS is the project's own (:mod:`chromaflow.models.lpips`), v0.1 official linear weights on the
  ImageNet SqueezeNet trunk (no ImageNet AlexNet is at hand; the thesis uses LPIPS-alex).
- realism PROXIES (the thesis runs a human fooling test; we have none): the Fréchet distance between Gaussians fit
  to SqueezeNet conv5 features (spatially pooled, 512-d, images resized to :data:`FEATURE_SIDE`) of the inputs'
  real photos and of all samples; and a held-out real-vs-fake classifier: logistic regression on those features,
  two-fold over inputs (train on one half, score the other, then swap), class-balanced accuracy (50% = the
  classifier cannot tell, 100% = every image told apart).
- encoding (Table 4.1) with an encoder: ``recon_l1 = |B - G(A, mu(E(B)))|``; latent recovery
  ``latent_l1 = |z - mu(E(G(A, z)))|`` (the samples' z). Both mean absolute errors on [-1, 1] images / z.

Every ``*_ci95`` is a 95% percentile bootstrap interval over inputs (:mod:`chromaflow.evaluate.bootstrap`).
Outputs: ``<out>/metrics.json`` (keys: :data:`METRIC_KEYS`) and ``<out>/report.md``, written atomically.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chromaflow.evaluate.bootstrap import mean_ci, resample_counts
from chromaflow.evaluate.eval_set import eval_set_fingerprint, to_uint8
from chromaflow.evaluate.realism import frechet_distance, gaussian_stats, real_fake_scores
from chromaflow.exact import fsum
from chromaflow.io import write_json, write_text
from chromaflow.logs import progress

log = logging.getLogger(__name__)

INPUTS, SAMPLES = 100, 20  # thesis: 1,900 pairs of samples from 100 inputs (19 per input)
FEATURE_SIDE = 128  # images are resized to this side for the SqueezeNet features (64 px samples carry no more)
FEATURE_LAYER = "conv5"  # SqueezeNet 1.1's last fire module, 512 channels, averaged over space
LPIPS_NET, LPIPS_VERSION = "squeeze", "0.1"
SPLITS = ("test", "val")  # held-out splits of prepare-pairs (BSDS500's test photos first); train is refused
METRIC_KEYS = (
    "diversity_lpips", "diversity_lpips_ci95", "real_pairs_lpips", "real_pairs_lpips_ci95", "frechet_squeezenet",
    "real_fake_accuracy", "real_fake_accuracy_ci95", "recon_l1", "recon_l1_std", "recon_l1_ci95", "latent_l1",
    "latent_l1_ci95", "n_inputs", "n_samples", "n_pairs", "size", "seed", "split", "model", "model_sha256", "model_config",
    "data", "eval_set", "input_ids", "lpips", "features", "proxies",
)  # fmt: skip
PROXIES_NOTE = (
    "frechet_squeezenet and real_fake_accuracy are automatic PROXIES of realism (the thesis measures it with a "
    "human real-vs-fake study); lower Frechet and an accuracy nearer 50% suggest more realistic samples."
)


# ------------------------------------------------------------------------------------------------- inputs


def select_inputs(photos: list[str], ids: list[str], n: int, seed: int) -> list[int]:
    """Indices of ``n`` pairs, each of a different photo: a seeded choice of photos, then of one pair per
    photo; sorted by pair id. ValueError when the split has fewer than ``n`` photos."""
    by_photo: dict[str, list[int]] = {}
    for i, p in enumerate(photos):
        by_photo.setdefault(p, []).append(i)
    names = sorted(by_photo)
    if n > len(names):
        raise ValueError(f"--inputs {n}: the split has only {len(names)} photos (one input per photo is used)")
    rng = np.random.default_rng(seed)
    chosen = [names[k] for k in sorted(rng.choice(len(names), size=n, replace=False))]
    picks = [sorted(by_photo[p], key=lambda i: ids[i])[int(rng.integers(len(by_photo[p])))] for p in chosen]
    return sorted(picks, key=lambda i: ids[i])


def _resolve_weights(model: str | os.PathLike) -> Path:
    p = Path(model)
    if p.is_dir():
        p = p / "model.safetensors"
        if not p.is_file():
            raise FileNotFoundError(f"--model {model}: no model.safetensors in it (not a finished training run)")
    elif not p.is_file():
        raise FileNotFoundError(f"--model {model}: no such training run folder or weights file")
    return p


# ---------------------------------------------------------------------------------------------- protocol


def _lpips_pairs(dist: Callable, x0: torch.Tensor, x1: torch.Tensor, batch: int = 200) -> np.ndarray:
    """LPIPS of uint8 image pairs ``(P, 3, H, W)`` -> ``(P,)`` float64."""
    out = [dist(x0[i : i + batch].float() / 255.0, x1[i : i + batch].float() / 255.0) for i in range(0, len(x0), batch)]
    return torch.cat(out).double().reshape(-1).numpy()


def _pooled_features(extractor: Any, images: torch.Tensor, batch: int = 200) -> np.ndarray:
    """SqueezeNet :data:`FEATURE_LAYER` maps averaged over space: uint8 ``(N, 3, H, W)`` -> ``(N, 512)`` float64."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(extractor.fn(images[i : i + batch])[FEATURE_LAYER].float().mean((2, 3)).double().numpy())
    return np.concatenate(out)


def _summary(values: np.ndarray, counts: np.ndarray) -> tuple[float, list[float]]:
    mean, lo, hi = mean_ci(values, counts)
    return mean, [lo, hi]


def evaluate_translation(
    model: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *, classifier_dir: str | os.PathLike,
    inputs: int = INPUTS, samples: int = SAMPLES, seed: int = 0, split: str = "test", size: int = 64,
) -> dict[str, Any]:  # fmt: skip
    """Run the protocol of the module docstring on a BicycleGAN run; write ``metrics.json`` and ``report.md``
    into ``out``; return the metrics. Errors (FileNotFoundError / ValueError) name the input at fault."""
    from chromaflow.data.pair_dataset import PairDataset
    from chromaflow.evaluate.classifier import find_classifier_weights
    from chromaflow.evaluate.features import load_extractor
    from chromaflow.models import load_weights, sha256_file
    from chromaflow.models.lpips import build_lpips

    if split not in SPLITS:
        raise ValueError(
            f"--split {split!r}: evaluate on a held-out split ({', '.join(SPLITS)}), never on training pairs"
        )
    if samples < 2:
        raise ValueError(f"--samples {samples}: need at least 2 samples per input (diversity compares pairs)")
    if inputs < 4:
        raise ValueError(f"--inputs {inputs}: need at least 4 (the real-vs-fake classifier is trained on one half)")
    weights = _resolve_weights(model)
    if not Path(data).is_dir():
        raise FileNotFoundError(f"--data {data}: not a folder (a prepare-pairs output)")
    try:
        ds = PairDataset(data, split=split, size=size, train=False)
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"--data {data}: {e}") from None
    net = load_weights(weights)
    if net.config["name"] != "bicyclegan":
        raise ValueError(f"--model {model}: a {net.config['name']!r} model, expected 'bicyclegan'")
    if size % net.stride:
        raise ValueError(f"--size {size}: not divisible by the model's stride {net.stride}")
    sq_path = find_classifier_weights(classifier_dir)
    device = torch.device("cpu")
    torch.manual_seed(seed)  # nothing below should draw from the global RNG; this pins it if something does

    idx = select_inputs(ds.photos, ds.ids, inputs, seed)
    items = [ds[i] for i in idx]
    a = torch.stack([it["a"] for it in items]).float() / 127.5 - 1.0  # (N, 1, S, S) in [-1, 1]
    real = torch.stack([it["b"] for it in items])  # (N, 3, S, S) uint8
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(inputs, samples, net.nz, generator=gen)  # (N, K, nz), drawn once in a fixed order
    fakes = torch.empty(inputs, samples, 3, size, size, dtype=torch.uint8)
    latent = np.zeros(inputs) if net.encoder is not None else None
    recon = np.zeros(inputs) if net.encoder is not None else None
    with torch.no_grad():
        for i in progress(range(inputs), total=inputs, desc="evaluate-translation: sampling"):
            ai = a[i : i + 1].expand(samples, -1, -1, -1)
            out_i = net(ai, z[i])  # (K, 3, S, S) in [-1, 1]
            fakes[i] = to_uint8((out_i + 1.0) / 2.0)
            if net.encoder is not None:
                latent[i] = float((net.encode(out_i)[0] - z[i]).abs().mean())
                b = real[i : i + 1].float() / 127.5 - 1.0
                recon[i] = float((net(a[i : i + 1], net.encode(b)[0]) - b).abs().mean())

    dist = build_lpips(LPIPS_NET, trunk=str(sq_path), lin="official", version=LPIPS_VERSION, device=device)
    k = samples - 1
    diversity = _lpips_pairs(dist, fakes[:, :-1].reshape(-1, 3, size, size), fakes[:, 1:].reshape(-1, 3, size, size))
    rng = np.random.default_rng(seed)
    other = rng.integers(0, inputs - 1, size=(inputs, k))
    other += other >= np.arange(inputs)[:, None]  # a different input, uniformly
    ceiling = _lpips_pairs(dist, real.repeat_interleave(k, 0), real[torch.from_numpy(other.reshape(-1))])

    extractor = load_extractor(f"squeezenet1_1:{sq_path}", device=device, reference_size=FEATURE_SIDE)
    f_real = _pooled_features(extractor, real)
    f_fake = _pooled_features(extractor, fakes.reshape(-1, 3, size, size))
    frechet = frechet_distance(*gaussian_stats(f_real), *gaussian_stats(f_fake))
    clf = real_fake_scores(f_real, f_fake.reshape(inputs, samples, -1), seed=seed)

    counts = resample_counts(inputs, seed=seed)
    m: dict[str, Any] = {}
    m["diversity_lpips"], m["diversity_lpips_ci95"] = _summary(fsum(diversity.reshape(inputs, k), axis=1) / k, counts)
    m["real_pairs_lpips"], m["real_pairs_lpips_ci95"] = _summary(fsum(ceiling.reshape(inputs, k), axis=1) / k, counts)
    m["frechet_squeezenet"] = frechet
    m["real_fake_accuracy"], m["real_fake_accuracy_ci95"] = _summary(clf, counts)
    m["recon_l1"], m["recon_l1_std"], m["recon_l1_ci95"] = None, None, None
    m["latent_l1"], m["latent_l1_ci95"] = None, None
    if recon is not None:
        m["recon_l1"], m["recon_l1_ci95"] = _summary(recon, counts)
        m["recon_l1_std"] = math.sqrt(fsum((recon - m["recon_l1"]) ** 2) / (inputs - 1))
        m["latent_l1"], m["latent_l1_ci95"] = _summary(latent, counts)
    ids = [ds.ids[i] for i in idx]
    m |= {
        "n_inputs": inputs, "n_samples": samples, "n_pairs": int(diversity.size), "size": size, "seed": seed,
        "split": split, "model": str(weights), "model_sha256": sha256_file(weights), "model_config": net.config["kwargs"],
        "data": str(data), "eval_set": eval_set_fingerprint(ids), "input_ids": ids,
        "lpips": f"{LPIPS_NET} v{LPIPS_VERSION} official linear weights, trunk {sq_path.name}",
        "features": f"squeezenet1_1 {FEATURE_LAYER} mean-pooled at {FEATURE_SIDE} px ({sq_path.name})",
        "proxies": PROXIES_NOTE,
    }  # fmt: skip
    out = Path(out)
    write_json(out / "metrics.json", m)
    write_text(out / "report.md", report_markdown(m))
    log.info("evaluate-translation: diversity %.4f (real pairs %.4f), Frechet %.2f, real/fake acc %.3f -> %s",
             m["diversity_lpips"], m["real_pairs_lpips"], frechet, m["real_fake_accuracy"], out)  # fmt: skip
    return m


def report_markdown(m: dict[str, Any]) -> str:
    """The small Markdown report of one evaluation (``metrics.json`` as a table)."""
    from chromaflow.evaluate.report import markdown_table

    def ci(key: str) -> str:
        v = m.get(f"{key}_ci95")
        return "" if v is None else f"[{v[0]:.4f}, {v[1]:.4f}]"

    rows = [
        ("diversity: LPIPS between samples of one input", m["diversity_lpips"], ci("diversity_lpips")),
        ("ceiling: LPIPS between real photos of different inputs", m["real_pairs_lpips"], ci("real_pairs_lpips")),
        ("realism proxy: Frechet distance (SqueezeNet conv5)", m["frechet_squeezenet"], ""),
        ("realism proxy: held-out real-vs-fake accuracy", m["real_fake_accuracy"], ci("real_fake_accuracy")),
        ("reconstruction L1 |B - G(A, E(B))|", m["recon_l1"], ci("recon_l1")),
        ("latent recovery L1 |z - E(G(A, z))|", m["latent_l1"], ci("latent_l1")),
    ]
    table = markdown_table([(n, "n/a (no encoder)" if v is None else v, c) for n, v, c in rows],
                           ["metric", "value", "95% CI (bootstrap over inputs)"], digits=4)  # fmt: skip
    return (
        f"# Translation evaluation: {m['model']}\n\n"
        f"{m['n_inputs']} inputs of split `{m['split']}` (one per photo), {m['n_samples']} samples each, "
        f"{m['n_pairs']} sample pairs, {m['size']} px, seed {m['seed']}.\n\n{table}\n"
        f"LPIPS: {m['lpips']}. Features: {m['features']}.\n\n**{m['proxies']}**\n"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a BicycleGAN training run folder (or its model.safetensors)")
    parser.add_argument("--data", required=True, help="paired data folder (output of `chromaflow prepare-pairs`)")
    parser.add_argument("--out", required=True, help="output folder (metrics.json, report.md)")
    parser.add_argument("--classifier-dir", default="../shared/datasets/squeezenet1_1",
                        help="ImageNet SqueezeNet v1.1 state_dict (folder or .pth): LPIPS trunk and realism features")  # fmt: skip
    parser.add_argument("--inputs", type=int, default=INPUTS, help="held-out inputs, one per photo (thesis: 100)")
    parser.add_argument("--samples", type=int, default=SAMPLES, help="samples per input (thesis: 20 -> 19 pairs)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the inputs, z, the real pairs and the bootstrap")
    parser.add_argument("--split", default="test",
                        help="held-out split of the pairs: test (BSDS500's held-out photos), or val where a source has none")  # fmt: skip
    parser.add_argument("--size", type=int, default=64, help="image side in px (the size the model trained at)")


def main(args: argparse.Namespace) -> int:
    try:
        evaluate_translation(
            args.model, args.data, args.out, classifier_dir=args.classifier_dir, inputs=args.inputs,
            samples=args.samples, seed=args.seed, split=args.split, size=args.size,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        log.error("evaluate-translation: %s", e)
        return 2
    return 0
