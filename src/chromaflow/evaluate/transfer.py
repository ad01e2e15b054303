"""Transfer evaluation (thesis ch. 5, Tables 5.4/5.5, Fig. 5.4): linear probes on frozen conv1..conv5 features.

    chromaflow transfer --data runs/tiny --out runs/transfer/tiny --classes 20 --train-per-class 100 \\
        --model "Split-Brain (cl,cl)=runs/sb/split_cl_cl/model.safetensors" \\
        --model "Gaussian=random:splitbrain:variant=gaussian,width=0.25,fc_width=256" \\
        --model "SqueezeNet (ImageNet)=squeezenet1_1:../shared/datasets/squeezenet1_1/<file>.pth"

Protocol (after Zhang et al. [19], thesis 5.5.1): the network is frozen (eval mode, no gradients); each
layer's post-ReLU map is resized so the flattened feature has about ``target_dim`` numbers (thesis: 9,600 /
9,216): side ``X_d = min(h, round(sqrt(target_dim / C)))``, resized with **bilinear interpolation with
anti-aliasing** (``F.interpolate(mode="bilinear", antialias=True)``; maps already at or below ``X_d`` are
kept as they are). Features are cached as float16 ``.npy`` files (one per split and layer, keyed by the
model's weights and the settings; a re-run reads them back). One multinomial logistic-regression classifier
per layer (a single linear layer + softmax) is fit on standardized features by full-batch L-BFGS in torch,
minimizing ``mean cross-entropy + wd/2 ||W||^2`` (scikit-learn's objective with ``C = 1 / (wd N)``); with
several ``wd`` values the one with the best accuracy on a held-out 20% of the train split is refit on all of it.
Top-1 (%) on the val split per layer is reported.

Models (``--model LABEL=SPEC``): a ``save_weights`` file (``.safetensors``: splitbrain, eccv16, siggraph17),
``random:NAME[:k=v,...]`` (a registered model with its Gaussian initialization, seeded; e.g. the
"Gaussian" row), or ``squeezenet1_1:PATH`` (torchvision SqueezeNet 1.1, strict ``weights_only`` load;
ImageNet-normalized RGB upsampled to ``reference_size``). Layers: splitbrain conv1..conv5 (towers
concatenated); eccv16 / siggraph17 blocks conv1..conv5 (siggraph17 with no hints: ab 0, mask 0);
SqueezeNet conv1, fire3, fire5, fire7, fire9 as conv1..conv5.

Outputs in ``out``: ``metrics.json`` (``rows`` {label: {conv1..conv5: top1 %}}, ``best``, ``transfer_best_top1``
= best layer of the first model, ``settings``, sizes), ``timing.json`` (seconds per model: features, probes; kept
out of metrics.json, which DVC hashes), ``report.md`` / ``report.html`` (table shaped like Tables 5.4/5.5 and a
plot like Fig. 5.4), ``transfer.png``; all logged to the active run of the installed :mod:`chromaflow.runlog`
logger (MLflow's under ``chromaflow transfer``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chromaflow import runlog
from chromaflow.evaluate.features import LAYERS, TARGET_DIM, Extractor, extract, load_extractor, probe_subset
from chromaflow.evaluate.probe import DEFAULT_WD, select_and_fit
from chromaflow.io import TIMING_FILE, atomic_path, read_json, write_json, write_text

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- feature cache


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


@torch.no_grad()
def cached_features(
    ex: Extractor, label: str, sets: Mapping[str, tuple[Any, list[int]]], root: Path, settings_key: str,
    labels: Mapping[str, np.ndarray], **kw: Any,
) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """Features ``{split: {layer: (N, D)}}``, read from ``root/<hash>/`` when present, else extracted and cached
    (``<split>-<layer>.npy`` float16 and ``<split>-labels.npy`` class indices)."""
    key = hashlib.sha256(f"{ex.key}|{settings_key}".encode()).hexdigest()[:16]
    folder = root / key
    meta = folder / "meta.json"
    files = {(s, name): folder / f"{s}-{name}.npy" for s in sets for name in LAYERS}
    if meta.is_file() and all(f.is_file() for f in files.values()):
        log.info("%s: cached features %s", label, folder)
        return {s: {name: np.load(files[s, name]) for name in LAYERS} for s in sets}
    out = {}
    for s, (ds, idx) in sets.items():
        out[s] = extract(ex, ds, idx, desc=f"features {label} {s}", **kw)
        for name in LAYERS:
            _save_npy(files[s, name], out[s][name])
        _save_npy(folder / f"{s}-labels.npy", np.asarray(labels[s], dtype=np.int64))
    write_json(meta, {"label": label, "model_key": ex.key, "kind": ex.kind, "settings": settings_key,
                      "dims": {name: int(out[next(iter(sets))][name].shape[1]) for name in LAYERS}})  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------- the step


def _parse_models(models: Any) -> dict[str, str]:
    if isinstance(models, Mapping):
        items = list(models.items())
    else:
        items = []
        for m in [models] if isinstance(models, str) else list(models):
            label, sep, spec = m.partition("=")
            if not sep:
                label, spec = Path(m).parent.name or m, m
            elif ":" in label or "/" in label:  # "random:x:k=v" or a path with "=" in it
                label, spec = m, m
            items.append((label.strip(), spec.strip()))
    if not items:
        raise ValueError("transfer: give at least one --model LABEL=SPEC")
    labels = [lab for lab, _ in items]
    if len(set(labels)) != len(labels):
        raise ValueError(f"transfer: model labels must be unique, got {labels}")
    return dict(items)


def plot_transfer(rows: Mapping[str, Mapping[str, float]], groups: Mapping[str, Sequence[str]] | None = None,
                  title: str = "") -> bytes:  # fmt: skip
    """PNG of top-1 vs layer, one line per method (Fig. 5.4), one panel per group (default: one panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chromaflow.evaluate.report import figure_png

    groups = dict(groups) if groups else {title or "all methods": list(rows)}
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
    for ax, (name, members) in zip(axes[0], groups.items(), strict=True):
        for label in members:
            if label in rows:
                ax.plot(range(1, len(LAYERS) + 1), [rows[label].get(n) for n in LAYERS], marker="o", label=label)
        ax.set_xticks(range(1, len(LAYERS) + 1), LAYERS)
        ax.set_ylabel("top-1 (%)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return figure_png(fig)


def transfer(
    models: Any,
    data: str | Path,
    out: str | Path,
    *,
    classes: int | Sequence[str] | None = None,
    train_per_class: int | None = None,
    val_per_class: int | None = None,
    size: int = 64,
    target_dim: int = TARGET_DIM,
    wd: Sequence[float] = DEFAULT_WD,
    max_iter: int = 200,
    batch_size: int = 64,
    reference_size: int = 128,
    groups: Mapping[str, Sequence[str]] | None = None,
    title: str = "Transfer: linear classifiers on frozen features",
    device: str | None = None,
    seed: int = 0,
    force: bool = False,
) -> dict[str, Any]:
    """The ``transfer`` step: per model and layer, fit a linear probe on the train split, score the val split.

    Args:
        models: ``"LABEL=SPEC"`` strings, a list of them, or ``{label: spec}`` (first = primary model).
        data: a ``chromaflow prepare`` folder with labelled ``train`` and ``val`` splits.
        classes: an int N (first N labels of the train split, sorted) or explicit label names (default all).
        train_per_class, val_per_class: caps per class (first by sorted id).
        size: image side fed to the networks (val-style resize of the short side + centre crop).
        target_dim, wd, max_iter: feature size and probe settings (see the module docstring).
        groups: ``{panel title: [labels]}`` for the plot.
    Returns the metrics dict (also ``out/metrics.json``).
    """
    from chromaflow.data import ShardDataset

    specs = _parse_models(models)
    out = Path(out)
    if not Path(data).is_dir():
        raise FileNotFoundError(f"--data: {data} is not a folder")
    for n, v in (("size", size), ("target_dim", target_dim), ("max_iter", max_iter), ("batch_size", batch_size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"transfer: {n} must be a positive int, got {v!r}")
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_ds = ShardDataset(data, split="train", crop=size, train=False)
    val_ds = ShardDataset(data, split="val", crop=size, train=False)
    names = train_ds.labels if classes is None or isinstance(classes, int) else sorted(classes)
    names = names[:classes] if isinstance(classes, int) else names
    missing = sorted(set(names) - set(train_ds.labels))
    if missing or len(names) < 2:
        raise ValueError(f"transfer: need >= 2 classes present in the train split of {data}; missing {missing[:5]}")
    index = {c: i for i, c in enumerate(names)}
    sets = {"train": (train_ds, probe_subset(train_ds, names, train_per_class)),
            "val": (val_ds, probe_subset(val_ds, names, val_per_class))}  # fmt: skip
    if not sets["val"][1]:
        raise ValueError(f"transfer: the val split of {data} has no images of the chosen classes")
    y = {s: np.array([index[ds.label_of[i]] for i in idx]) for s, (ds, idx) in sets.items()}
    manifest = read_json(Path(data) / "manifest.json")
    settings = {"data_fingerprint": manifest.get("fingerprint"), "classes": names, "train_per_class": train_per_class,
                "val_per_class": val_per_class, "size": size, "target_dim": target_dim}  # fmt: skip
    settings_key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    probe_settings = {"wd": sorted(float(v) for v in wd), "max_iter": max_iter, "seed": seed}
    done = out / "metrics.json"
    run_key = hashlib.sha256(json.dumps([settings_key, probe_settings, specs], sort_keys=True).encode()).hexdigest()
    if done.is_file() and not force and read_json(done).get("run_key") == run_key:
        log.info("transfer: %s is up to date (same models and settings): nothing to do", done)
        return read_json(done)

    log.info("transfer: %d classes, %d train / %d val images, %d model(s)", len(names), len(y["train"]),
             len(y["val"]), len(specs))  # fmt: skip
    rows: dict[str, dict[str, float]] = {}
    detail: dict[str, dict[str, Any]] = {}
    timing: dict[str, dict[str, float]] = {}
    for label, spec in specs.items():
        t0 = time.perf_counter()
        ex = load_extractor(spec, device=dev, seed=seed, reference_size=reference_size)
        feats = cached_features(ex, label, sets, out / "features", settings_key, y, batch_size=batch_size,
                                target_dim=target_dim, device=dev)  # fmt: skip
        t1 = time.perf_counter()
        rows[label], detail[label] = {}, {}
        for name in LAYERS:
            xtr = torch.from_numpy(feats["train"][name].astype(np.float32))
            probe = select_and_fit(xtr, y["train"], len(names), wds=wd, max_iter=max_iter, seed=seed, device=dev)
            acc = 100.0 * probe.score(feats["val"][name].astype(np.float32), y["val"])
            rows[label][name] = acc
            detail[label][name] = {"top1": acc, "dim": int(xtr.shape[1]), "wd": probe.wd, "iterations": probe.iterations,
                                   "train_top1": 100.0 * probe.score(xtr, y["train"])}  # fmt: skip
            log.info("%s %s: top-1 %.1f%% (dim %d, wd %g)", label, name, acc, xtr.shape[1], probe.wd)
        timing[label] = {"features_s": t1 - t0, "probes_s": time.perf_counter() - t1}

    best = {lab: max(r.items(), key=lambda kv: kv[1]) for lab, r in rows.items()}
    primary = next(iter(specs))
    metrics = {
        "rows": rows,
        "best": {lab: {"layer": layer, "top1": acc} for lab, (layer, acc) in best.items()},
        "transfer_best_top1": best[primary][1],
        "primary": primary,
        "models": specs,
        "detail": detail,
        "settings": {**settings, **probe_settings, "resize": "bilinear, antialias", "device": str(dev)},
        "n_train": len(y["train"]),
        "n_val": len(y["val"]),
        "chance_top1": 100.0 / len(names),
        "run_key": run_key,
    }
    _write_reports(out, metrics, plot_transfer(rows, groups, title), title)
    write_json(out / TIMING_FILE, timing)  # the clock stays out of metrics.json (hashed by DVC)
    write_json(done, metrics)
    tracker = runlog.current()
    tracker.log_metrics({"transfer_best_top1": metrics["transfer_best_top1"],
                         **{f"transfer_{name}_top1": rows[primary][name] for name in LAYERS}})  # fmt: skip
    for f in ("metrics.json", "report.md", "report.html", "transfer.png"):
        tracker.log_artifact(out / f)
    return metrics


COMPARABLE = ("data_fingerprint", "classes", "train_per_class", "val_per_class", "size", "target_dim", "wd",
              "max_iter", "seed")  # settings that must agree for two transfer results to share one table  # fmt: skip


def combine_transfer(
    metrics_files: Sequence[str | Path],
    out: str | Path,
    *,
    title: str = "Transfer: linear classifiers on frozen features",
) -> dict[str, Any]:
    """Merge the ``metrics.json`` of several :func:`transfer` runs (e.g. one per split-brain variant) into one
    table, and pick the best representation.

    The candidates are the runs' primary models, in the given order; the best is the one with the highest
    ``transfer_best_top1`` (its best layer's top-1, %; first on ties). Every run must use the same probe
    settings (:data:`COMPARABLE`: data, classes, caps, size, feature size, wd, iterations, seed), else
    ``ValueError``; labels must be unique across the runs. Writes ``out/metrics.json`` (``rows``, ``best``,
    ``candidates``, ``best_index``, ``best_label``, ``transfer_best_top1`` of the best, ``eval_set`` = a
    fingerprint of the shared settings, sizes) and ``report.md`` / ``report.html`` / ``transfer.png``.
    """
    if not metrics_files:
        raise ValueError("combine_transfer: no metrics files given")
    runs = []
    for f in metrics_files:
        path = Path(f)
        if path.is_dir():
            path = path / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"combine_transfer: {path} does not exist (a transfer metrics.json)")
        m = read_json(path)
        if not isinstance(m, dict) or not {"rows", "primary", "settings", "transfer_best_top1"} <= set(m):
            raise ValueError(f"combine_transfer: {path} is not a transfer metrics.json (rows, primary, settings)")
        runs.append((path, m))
    ref = {k: runs[0][1]["settings"].get(k) for k in COMPARABLE}
    for path, m in runs[1:]:
        diff = sorted(k for k in COMPARABLE if m["settings"].get(k) != ref[k])
        if diff:
            raise ValueError(f"combine_transfer: {path} used other settings than {runs[0][0]} ({diff}): not comparable")
    rows: dict[str, dict[str, float]] = {}
    for path, m in runs:
        clash = sorted(set(m["rows"]) & set(rows))
        if clash:
            raise ValueError(
                f"combine_transfer: label(s) {clash} of {path} already in the table; labels must be unique"
            )
        rows.update(m["rows"])
    candidates = [m["primary"] for _, m in runs]
    scores = [float(m["transfer_best_top1"]) for _, m in runs]
    finite = [i for i, v in enumerate(scores) if math.isfinite(v)]
    if not finite:
        raise ValueError(f"combine_transfer: no finite transfer_best_top1 among {scores}")
    i = max(finite, key=lambda k: (scores[k], -k))
    best = {lab: max(r.items(), key=lambda kv: kv[1]) for lab, r in rows.items()}
    first = runs[0][1]
    metrics = {
        "rows": rows,
        "best": {lab: {"layer": layer, "top1": acc} for lab, (layer, acc) in best.items()},
        "candidates": candidates,
        "candidate_top1": dict(zip(candidates, scores, strict=True)),
        "best_index": i,
        "best_label": candidates[i],
        "transfer_best_top1": scores[i],
        "eval_set": hashlib.sha256(json.dumps(ref, sort_keys=True).encode()).hexdigest(),
        "settings": first["settings"],
        "n_train": first.get("n_train"),
        "n_val": first.get("n_val"),
        "chance_top1": first.get("chance_top1"),
        "sources": [str(p) for p, _ in runs],
    }
    out = Path(out)
    _write_reports(out, metrics, plot_transfer(rows, None, title), title)
    write_json(out / "metrics.json", metrics)
    log.info("combine_transfer: best of %d is %s (top-1 %.1f%%)", len(runs), candidates[i], scores[i])
    return metrics


def _write_reports(out: Path, m: Mapping[str, Any], png: bytes, title: str) -> None:
    import html

    from chromaflow.evaluate.report import html_page, html_table, markdown_table, png_data_uri

    cols = ["method", *LAYERS]
    table = [{"method": lab, **r} for lab, r in m["rows"].items()]
    note = (f"{len(m['settings']['classes'])}-way, {m['n_train']} train / {m['n_val']} val images, "
            f"chance {m['chance_top1']:.1f}%; features resized to ~{m['settings']['target_dim']} dims "
            f"(bilinear, anti-aliased); L-BFGS logistic regression, wd from {m['settings']['wd']}.")  # fmt: skip
    with atomic_path(out / "transfer.png") as tmp:
        tmp.write_bytes(png)
    md = f"# {title}\n\nTop-1 (%) per layer. {note}\n\n{markdown_table(table, cols, digits=1)}\n![transfer](transfer.png)\n"
    write_text(out / "report.md", md)
    write_text(out / "report.html", html_page(title, [
        ("Top-1 (%) per layer", f"<p>{html.escape(note)}</p>" + html_table(table, cols, digits=1)),
        ("Figure (like thesis Fig. 5.4)", f"<img src='{png_data_uri(png)}' alt='top-1 per layer'>"),
    ]))  # fmt: skip


# ------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=SPEC",
                        help="LABEL=weights.safetensors | LABEL=random:NAME[:k=v,...] | LABEL=squeezenet1_1:PATH "
                        "(repeat; the first is the primary model)")  # fmt: skip
    parser.add_argument("--data", required=True, help="prepared data folder with labelled train and val splits")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--classes", type=int, help="use the first N labels (sorted) of the train split")
    parser.add_argument("--train-per-class", type=int, help="cap on train images per class")
    parser.add_argument("--val-per-class", type=int, help="cap on val images per class")
    parser.add_argument("--size", type=int, default=64, help="image side fed to the networks, px")
    parser.add_argument("--target-dim", type=int, default=TARGET_DIM, help="features per layer after resizing")
    parser.add_argument("--wd", type=float, nargs="+", default=list(DEFAULT_WD), help="L2 penalties to select from")
    parser.add_argument("--max-iter", type=int, default=200, help="L-BFGS iterations per probe")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reference-size", type=int, default=128, help="input side of the SqueezeNet reference")
    parser.add_argument("--group", action="append", default=[], metavar="TITLE=LABEL;LABEL",
                        help="a panel of the figure: labels separated by ';' (repeat); default one panel")  # fmt: skip
    parser.add_argument("--title", default="Transfer: linear classifiers on frozen features")
    parser.add_argument("--device", help="cpu | cuda | mps (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="recompute even if out/metrics.json is up to date")


def main(args: argparse.Namespace) -> int:
    groups = {}
    for g in args.group:
        t, sep, members = g.partition("=")
        if not sep:
            log.error("transfer: --group expects TITLE=LABEL;LABEL, got %r", g)
            return 2
        groups[t] = [s.strip() for s in members.split(";") if s.strip()]  # labels may hold commas: "(cl,cl)"
    try:
        m = transfer(args.model, args.data, args.out, classes=args.classes, train_per_class=args.train_per_class,
                     val_per_class=args.val_per_class, size=args.size, target_dim=args.target_dim, wd=args.wd,
                     max_iter=args.max_iter, batch_size=args.batch_size, reference_size=args.reference_size,
                     groups=groups or None, title=args.title, device=args.device, seed=args.seed, force=args.force)  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        log.error("transfer: %s", e)
        return 2
    for lab, b in m["best"].items():
        print(f"{lab}: best {b['layer']} {b['top1']:.1f}%")
    return 0
