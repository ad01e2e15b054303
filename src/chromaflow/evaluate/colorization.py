"""Evaluate automatic colorization with the thesis's protocol (ch. 2, sec. 2.3.1, Table 2.1).

Rows: Ground truth, Gray (ab = 0), Random (ab of another image of the set), and one row per model.
Columns: AuC non-rebalanced and rebalanced (%), classifier top-1 (%) (SqueezeNet v1.1 instead of VGG-16),
PSNR (dB), colourfulness (Hasler & Suesstrunk M3) and mean chroma. Plus a temperature sweep of the first model
(T in 1.0, 0.77, 0.58, 0.38, 0.29, 0.14, 0 = mode) and an HTML gallery.

Protocol: every image is resized (bicubic) to ``size`` (256) on its short side and centre-cropped to
``size x size``; the model sees L of that crop (``colorize``), its output is quantized to uint8 RGB, and every
metric is computed from uint8 RGB (ab re-derived with ``rgb_to_lab``), identically for every row.
Grayscale images and undecodable files are excluded and listed.

    chromaflow evaluate --task colorization --weights full=runs/full/model.safetensors \\
        --weights class=runs/class/model.safetensors --data runs/demo/prepared --out runs/demo/eval \\
        --classifier-dir ../shared/datasets/squeezenet1_1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chromaflow.color.constants import T_ANNEAL
from chromaflow.color.upsample import DEFAULT_UPSAMPLE, UPSAMPLE_METHODS
from chromaflow.evaluate import metrics as M
from chromaflow.evaluate.bootstrap import (
    BOOTSTRAP_REPS,
    CI_LEVEL,
    fixed_point,
    percentile_interval,
    resample_counts,
    resampled_sum,
)
from chromaflow.evaluate.colorization_report import html_report, markdown_report
from chromaflow.evaluate.eval_set import eval_set_fingerprint, load_eval_items, load_rgb, to_uint8
from chromaflow.io import read_json, write_json, write_text
from chromaflow.logs import progress
from chromaflow.models.inference import pick_device

log = logging.getLogger(__name__)

T_SWEEP = (1.0, 0.77, 0.58, 0.38, 0.29, 0.14, 0.0)  # thesis Fig. 2.4; T = 0 means the mode
BASELINES = ("ground_truth", "gray", "random")
BASELINE_NAMES = {"ground_truth": "Ground truth", "gray": "Gray", "random": "Random"}
# Thesis Table 2.1 (ImageNet val 10k, VGG-16 top-1) for reference beside our numbers.
_VERSION = 2  # bump when the protocol changes (invalidates up-to-date checks)


# ---------------------------------------------------------------------------------------------- models


def parse_weights(weights: Any) -> list[tuple[str, Path]]:
    """``path`` | ``"name=path"`` | list of those | ``{name: path}`` -> ``[(row name, path)]``.

    Names become rows ``Ours (name)`` (``full``, ``class``, ``L2`` as in Table 2.1); one unnamed path is ``Ours``.
    """
    if weights is None:
        return []
    if isinstance(weights, Mapping):
        pairs = [(str(k), Path(v)) for k, v in weights.items()]
    else:
        entries = [weights] if isinstance(weights, str | os.PathLike) else list(weights)
        pairs = []
        for e in entries:
            s = os.fspath(e)
            name, sep, path = s.partition("=")
            if sep and name and "/" not in name and os.sep not in name:
                pairs.append((name, Path(path)))
            else:
                pairs.append(("", Path(s)))
    out = []
    for name, path in pairs:
        if not path.is_file():
            raise FileNotFoundError(f"weights {path}: no such file")
        if not name:
            name = "Ours" if len(pairs) == 1 else f"Ours ({path.stem})"
        elif not name.startswith("Ours"):
            name = f"Ours ({name})"
        out.append((name, path))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"weights: duplicate row names {names}")
    return out


class _LogitsCache(torch.nn.Module):
    """Wraps a model so repeated ``colorize`` calls on the same input (a T-sweep) run the network once."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.config = model.config
        self._key: torch.Tensor | None = None
        self._out: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._key is None or self._key.shape != x.shape or not torch.equal(self._key, x):
            self._key, self._out = x.clone(), self.inner(x)
        return self._out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- metrics


@dataclass
class _Acc:
    """Running metrics of one row, and per image what the bootstrap intervals resample."""

    raw: M.AucMeter = field(default_factory=M.AucMeter)
    rebal: M.AucMeter = field(default_factory=M.AucMeter)
    psnr: list[float] = field(default_factory=list)
    m3: list[float] = field(default_factory=list)
    chroma: list[float] = field(default_factory=list)
    correct: int = 0
    labeled: int = 0
    hists_raw: list[np.ndarray] = field(default_factory=list)  # per image: AucMeter histogram
    hists_rebal: list[np.ndarray] = field(default_factory=list)
    hits: list[float] = field(default_factory=list)  # per image: 1 / 0 classified right / wrong, nan unlabeled

    def update(self, out: torch.Tensor, gt: torch.Tensor, gt_ab: torch.Tensor, pw: torch.Tensor, clf, targets):
        from chromaflow.color import rgb_to_lab

        ab = gt_ab if out is gt else rgb_to_lab(out)[:, 1:]
        for j in range(ab.shape[0]):
            for meter, hists, w in ((self.raw, self.hists_raw, None), (self.rebal, self.hists_rebal, pw[j : j + 1])):
                one = M.AucMeter(meter.max_threshold)
                one.update(ab[j : j + 1], gt_ab[j : j + 1], w)
                meter.hist += one.hist
                hists.append(one.hist.numpy())
        self.psnr += M.psnr(out, gt).tolist()
        self.m3 += M.colorfulness_m3(out).tolist()
        self.chroma += M.mean_chroma(ab).tolist()
        hits = [math.nan] * len(targets)
        if clf is not None:
            has = targets >= 0
            if has.any():
                from chromaflow.evaluate.classifier import classify

                pred = classify(clf, out[has]).argmax(1).to(targets.device)
                ok = (pred == targets[has]).tolist()
                for k, j in enumerate(torch.nonzero(has).flatten().tolist()):
                    hits[j] = float(ok[k])
                self.correct += int(sum(ok))
                self.labeled += int(has.sum())
        self.hits += hits

    def summary(self) -> dict[str, float | None]:
        return {
            "auc_raw": self.raw.auc(),
            "auc_rebal": self.rebal.auc(),
            "psnr": M.mean_or_nan(self.psnr),
            "colorfulness": M.mean_or_nan(self.m3),
            "chroma": M.mean_or_nan(self.chroma),
            "class_top1": 100.0 * self.correct / self.labeled if self.labeled else None,
        }

    def resampled(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric over the resamples ``counts (reps, n)``: pooled AuC, mean PSNR (finite), top-1 (labeled)."""
        out = {}
        for key, hists in (("auc_raw", self.hists_raw), ("auc_rebal", self.hists_rebal)):
            # exact: integer sums of the fixed-point histograms (the same bits on every CPU)
            fixed, _ = fixed_point(np.stack(hists), n=counts.shape[1])  # (n, T + 2)
            if np.abs(fixed).sum(1).max(initial=0) * counts.shape[1] * fixed.shape[1] >= 2**62:
                raise ValueError(f"bootstrap: {key} histograms too large for an exact int64 area")
            pooled = counts.astype(np.int64) @ fixed  # (reps, T + 2)
            area = np.cumsum(pooled, 1)[:, :-1].sum(1)  # (reps,)
            out[key] = area / (pooled.shape[1] - 1) / pooled.sum(1) * 100.0
        psnr = np.asarray(self.psnr, dtype=np.float64)
        if np.isfinite(psnr).all():
            out["psnr"] = resampled_sum(counts, psnr) / len(psnr)
        hits = np.asarray(self.hits, dtype=np.float64)
        labeled = ~np.isnan(hits)
        if labeled.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                out["class_top1"] = 100.0 * resampled_sum(counts, np.nan_to_num(hits)) / resampled_sum(counts, labeled)
        return out


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(v), 6) for v in values]


def bootstrap_rows(accs: Mapping[str, _Acc], n: int, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> dict[str, Any]:
    """95% bootstrap intervals of every row's metrics, and of each row's difference to Gray on the same resamples
    (paired: one set of image resamples for all rows). ``{"reps", "level", "rows": {name: {metric: [lo, hi]}},
    "minus_gray": {name: {metric: [diff, lo, hi]}}}``."""
    # the resampled statistics are exact (bootstrap.resampled_sum); intervals are rounded to 1e-6 for reading
    counts = resample_counts(n, reps, seed)
    samples = {name: acc.resampled(counts) for name, acc in accs.items()}
    result: dict[str, Any] = {"reps": reps, "level": CI_LEVEL, "rows": {}, "minus_gray": {}}
    for name, smp in samples.items():
        result["rows"][name] = {k: _rounded(percentile_interval(v[np.isfinite(v)])) for k, v in smp.items()}
    gray = samples.get("Gray")
    if gray is not None:
        points = {name: acc.summary() for name, acc in accs.items()}
        for name, smp in samples.items():
            if name in ("Gray", "Ground truth"):
                continue
            diffs = {}
            for k in smp.keys() & gray.keys():
                d = smp[k] - gray[k]
                if points[name][k] is not None and points["Gray"][k] is not None:
                    diffs[k] = _rounded((points[name][k] - points["Gray"][k], *percentile_interval(d[np.isfinite(d)])))
            result["minus_gray"][name] = diffs
    return result


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


# -------------------------------------------------------------------------------------------- the step


def evaluate_colorization(
    weights: Any,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "val",
    T: float = T_ANNEAL,
    decode: str = "annealed_mean",
    methods: Sequence[str] = BASELINES,
    max_images: int | None = None,
    prior: str | os.PathLike | None = None,
    classifier_dir: str | os.PathLike | None = None,
    size: int = 256,
    t_sweep: Sequence[float] | None = T_SWEEP,
    gallery: int = 8,
    batch_size: int = 16,
    seed: int = 0,
    device: str | torch.device | None = None,
    force: bool = False,
    upsample: str = DEFAULT_UPSAMPLE,
) -> dict:
    """Run the Table 2.1 protocol and write ``out/{metrics.json, report.md, report.html}``; returns the metrics.

    Args:
        weights: model weights (``save_weights`` safetensors): a path, ``"name=path"`` strings (a list compares
            e.g. ``full``, ``class``, ``L2``), or ``{name: path}``; None/[] evaluates the baselines only.
            The first one is the primary model: its numbers are the top-level keys and it gets the T-sweep.
        data: a prepared dir (Parquet shards of ``split``) or a folder of images.
        T, decode: decoding of the class head (``annealed_mean`` at T; ``T=0`` means ``mode``).
        methods: baselines to include, any of ``ground_truth``, ``gray``, ``random``.
        max_images: evaluate a seeded random subset of this many images (``seed``).
        prior: ``prior.npy`` (Q,) from ``chromaflow stats`` for the rebalanced AuC; None = the shipped ImageNet prior.
        classifier_dir: folder with the ImageNet SqueezeNet v1.1 state_dict; None or missing = skipped (logged).
        size: evaluation size (short side resize + centre crop, square).
        t_sweep: temperatures of the sweep (0 = mode); None or () to skip.
        gallery: number of images shown in the HTML gallery.
        force: recompute even if ``out/metrics.json`` was made from the same inputs.
        upsample: how the models' ab reaches the crop's size (``bilinear``, the thesis's protocol | ``guided``,
            ``chromaflow.color.upsample_ab``).

    Returns the metrics dict: ``auc_raw``, ``auc_rebal``, ``psnr``, ``colorfulness``, ``chroma`` and
    ``class_top1`` (classifier ran) of the primary model, ``eval_set`` (sha256 of the sorted ids), ``rows``
    (every row), ``t_sweep``, ``excluded``, ``settings``.
    """
    out = Path(out)
    unknown = set(methods) - set(BASELINES)
    if unknown:
        raise ValueError(f"methods: unknown {sorted(unknown)}; choose from {list(BASELINES)}")
    if decode not in ("annealed_mean", "mean", "mode"):
        raise ValueError(f"decode: expected annealed_mean | mean | mode, got {decode!r}")
    if T < 0:
        raise ValueError(f"T must be >= 0, got {T}")
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    if upsample not in UPSAMPLE_METHODS:
        raise ValueError(f"upsample: expected one of {list(UPSAMPLE_METHODS)}, got {upsample!r}")
    models = parse_weights(weights)
    dev = pick_device(device)

    items, excluded = load_eval_items(data, split=split, size=size, max_images=max_images, seed=seed)
    if not items:
        raise ValueError(f"data {data}: no usable colour images ({len(excluded)} excluded)")
    eval_set = eval_set_fingerprint([it.id for it in items])
    from chromaflow.color import lab_to_rgb, load_prior, rgb_to_lab

    prior_t = torch.as_tensor(np.load(prior) if prior is not None else load_prior(), dtype=torch.float64)
    class_w = M.auc_class_weights(prior_t).to(dev)

    clf, clf_note, clf_sha = None, "", None
    if classifier_dir is None:
        clf_note = "skipped: no classifier_dir given"
    else:
        from chromaflow.evaluate.classifier import find_classifier_weights, load_classifier

        try:
            clf_sha = _sha256(find_classifier_weights(classifier_dir))
            clf = load_classifier(classifier_dir, dev)
            clf_note = f"SqueezeNet v1.1 (ImageNet, {Path(classifier_dir).name})"
        except FileNotFoundError as e:
            clf_note = f"skipped: {e}"
    if clf is None:  # a warning only when a classifier was asked for; without one the column stays empty
        (log.info if classifier_dir is None else log.warning)("classifier metric %s", clf_note)

    rows_order = [BASELINE_NAMES[m] for m in BASELINES if m in methods]
    if "random" in methods and len(items) < 2:
        log.warning("Random baseline needs >= 2 images; skipped")
        rows_order.remove("Random")
    rows_order += [n for n, _ in models]
    sweep = list(t_sweep or []) if models else []
    settings = {
        "version": _VERSION,
        "data": str(data),
        "split": split,
        "size": size,
        "protocol": f"resize short side to {size} (bicubic), centre crop {size}x{size}; metrics on uint8 RGB",
        "T": T,
        "decode": decode,
        "t_sweep": sweep,
        "max_images": max_images,
        "seed": seed,
        "methods": list(methods),
        "weights": {n: {"path": str(p), "sha256": _sha256(p)} for n, p in models},
        "prior": str(prior) if prior is not None else "shipped ImageNet prior",
        "prior_sha256": hashlib.sha256(prior_t.numpy().tobytes()).hexdigest(),
        "classifier": clf_note,
        "classifier_sha256": clf_sha,
    }
    # recorded only off the thesis's protocol, so its records and hashes stay as they were
    if upsample != DEFAULT_UPSAMPLE:
        settings["upsample"] = upsample
    inputs_hash = hashlib.sha256(json.dumps([settings, eval_set], sort_keys=True).encode()).hexdigest()
    done = out / "metrics.json"
    if not force and done.is_file() and (out / "report.md").is_file() and (out / "report.html").is_file():
        previous = read_json(done)
        if previous.get("inputs_hash") == inputs_hash:
            log.info("evaluate: %s is up to date (same inputs); nothing to do", out)
            return previous

    from chromaflow.models import colorize, load_weights

    loaded = []
    for name, path in models:
        loaded.append((name, _LogitsCache(load_weights(path, device=dev))))

    def decode_of(t: float) -> tuple[float, str]:
        return (t, "mode") if t == 0 else (t, decode if decode != "mode" else "annealed_mean")

    main_key = decode_of(T) if decode != "mode" else (0.0, "mode")
    accs: dict[str, _Acc] = {name: _Acc() for name in rows_order}
    sweep_accs: dict[float, _Acc] = {t: _Acc() for t in sweep}
    sweep_ok = bool(sweep)
    perm = list(range(len(items)))
    random.Random(seed + 1).shuffle(perm)
    donor_of = {perm[k]: perm[(k + 1) % len(perm)] for k in range(len(perm))}  # another image, at random
    shown: dict[str, list] = {"Input (L)": []} | {n: [] for n in rows_order}
    sweep_shown: list[list] = []
    wnid_of = None
    if clf is not None:
        from chromaflow.evaluate.classifier import class_index as wnid_of

    batches = [list(range(i, min(i + batch_size, len(items)))) for i in range(0, len(items), batch_size)]
    for idx in progress(batches, total=len(batches), desc="evaluate colorization"):
        gt = torch.stack([load_rgb(items[i], size) for i in idx]).to(dev)  # (B, 3, S, S) uint8
        lab = rgb_to_lab(gt)
        L, gt_ab = lab[:, :1], lab[:, 1:]
        pw = M.pixel_class_weights(gt_ab, class_w)
        targets = torch.tensor(
            [(wnid_of(items[i].label, items[i].id) if wnid_of else None) or -1 for i in idx], device=dev
        )
        outs: dict[str, torch.Tensor] = {}
        if "Ground truth" in accs:
            outs["Ground truth"] = gt
        if "Gray" in accs:
            outs["Gray"] = to_uint8(lab_to_rgb(torch.cat([L, torch.zeros_like(gt_ab)], 1)))
        if "Random" in accs:
            donor = torch.stack([load_rgb(items[donor_of[i]], size) for i in idx]).to(dev)
            d_ab = rgb_to_lab(donor)[:, 1:]
            if d_ab.shape[-2:] != gt_ab.shape[-2:]:  # resized to fit
                d_ab = F.interpolate(d_ab, size=gt_ab.shape[-2:], mode="bilinear", align_corners=False)
            outs["Random"] = to_uint8(lab_to_rgb(torch.cat([L, d_ab], 1)))
        sweep_out: dict[float, torch.Tensor] = {}
        for k, (name, model) in enumerate(loaded):
            t, meth = main_key
            outs[name] = to_uint8(colorize(model, gt, T=t, method=meth, size=size, upsample=upsample))
            if k == 0 and sweep_ok:
                if model._out is not None and model._out.shape[1] == 2:
                    log.warning("T-sweep skipped: %s has a regression head (no distribution to anneal)", name)
                    sweep_ok = False
                    continue
                for t_s in sweep:
                    key = decode_of(t_s)
                    same = key == main_key
                    sweep_out[t_s] = (
                        outs[name]
                        if same
                        else to_uint8(colorize(model, gt, T=key[0], method=key[1], size=size, upsample=upsample))
                    )
        for name, o in outs.items():
            accs[name].update(o, gt, gt_ab, pw, clf, targets)
        for t_s, o in sweep_out.items():
            sweep_accs[t_s].update(o, gt, gt_ab, pw, None, targets)
        if len(shown["Input (L)"]) < gallery:
            gray = outs.get("Gray")
            if gray is None:
                gray = to_uint8(lab_to_rgb(torch.cat([L, torch.zeros_like(gt_ab)], 1)))
        for j in range(len(idx)):
            if len(shown["Input (L)"]) < gallery:
                shown["Input (L)"].append(gray[j].cpu())
                for name in rows_order:
                    shown[name].append(outs[name][j].cpu())
            if sweep_out and len(sweep_shown) < min(gallery, 4):
                sweep_shown.append([sweep_out[t][j].cpu() for t in sweep] + [gt[j].cpu()])

    rows = {name: accs[name].summary() for name in rows_order}
    sweep_rows = (
        [{"T": t, "decode": decode_of(t)[1]} | sweep_accs[t].summary() for t in sweep] if sweep_ok and sweep else []
    )
    result: dict[str, Any] = {
        "eval_set": eval_set,
        "n_images": len(items),
        "bootstrap": bootstrap_rows(accs, len(items), seed=seed),
        "ids": [it.id for it in items],
        "excluded": excluded,
        "rows": rows,
        "t_sweep": sweep_rows,
        "settings": settings,
        "inputs_hash": inputs_hash,
    }
    if models:
        primary = rows[models[0][0]]
        result["primary"] = models[0][0]
        result.update({k: v for k, v in primary.items() if v is not None})
    result = _json_safe(result)
    write_text(out / "report.md", markdown_report(result, rows_order))
    write_text(out / "report.html", html_report(result, rows_order, shown, sweep_shown))
    write_json(done, result)  # last: its presence means the step finished
    log.info("evaluate: wrote %s (%d images)", out, len(items))
    return result


# ------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", action="append", default=[], metavar="[NAME=]PATH",
                        help="model weights (.safetensors); repeat to compare, e.g. full=a class=b L2=c")  # fmt: skip
    parser.add_argument("--data", required=True, help="prepared dir (Parquet shards) or a folder of images")
    parser.add_argument("--out", required=True, help="output dir: metrics.json, report.md, report.html")
    parser.add_argument("--split", default="val")
    parser.add_argument("--T", type=float, default=T_ANNEAL, help="annealed-mean temperature (0 = mode)")
    parser.add_argument("--decode", default="annealed_mean", choices=["annealed_mean", "mean", "mode"])
    parser.add_argument("--methods", default=",".join(BASELINES), help="baselines, comma-separated")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--prior", default=None, help="prior.npy from `chromaflow stats` (default: ImageNet prior)")
    parser.add_argument("--classifier-dir", default=os.environ.get("CHROMAFLOW_CLASSIFIER_DIR"),
                        help="ImageNet SqueezeNet v1.1 state_dict dir (default $CHROMAFLOW_CLASSIFIER_DIR)")  # fmt: skip
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument(
        "--upsample",
        default=DEFAULT_UPSAMPLE,
        choices=UPSAMPLE_METHODS,
        help="chroma upsampling of the models' ab: bilinear (thesis) | guided by full-res L",
    )
    parser.add_argument("--t-sweep", default=",".join(f"{t:g}" for t in T_SWEEP), help="temperatures; '' to skip")
    parser.add_argument("--gallery", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--force", action="store_true", help="recompute even when up to date")


def main(args: argparse.Namespace) -> int:
    try:
        m = evaluate_colorization(
            args.weights or None,
            args.data,
            args.out,
            split=args.split,
            T=args.T,
            decode=args.decode,
            methods=[x for x in args.methods.split(",") if x],
            max_images=args.max_images,
            prior=args.prior,
            classifier_dir=args.classifier_dir,
            size=args.size,
            t_sweep=[float(x) for x in args.t_sweep.split(",") if x.strip()],
            gallery=args.gallery,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            force=args.force,
            upsample=args.upsample,
        )
    except (FileNotFoundError, ValueError) as e:
        log.error("evaluate: %s", e)
        return 2
    keys = ("auc_raw", "auc_rebal", "psnr", "colorfulness", "class_top1")
    for row, r in m["rows"].items():
        log.info("evaluate: %s: %s", row, ", ".join(f"{k}={r[k]:.2f}" for k in keys if isinstance(r.get(k), float)))
    return 0
