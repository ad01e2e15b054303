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
import html
import io
import json
import logging
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chromaflow.color.constants import T_ANNEAL
from chromaflow.color.upsample import DEFAULT_UPSAMPLE, UPSAMPLE_METHODS
from chromaflow.evaluate import metrics as M
from chromaflow.evaluate import report as R
from chromaflow.evaluate.bootstrap import BOOTSTRAP_REPS, CI_LEVEL, percentile_interval, resample_counts
from chromaflow.io import read_json, write_json, write_text
from chromaflow.logs import progress

log = logging.getLogger(__name__)

T_SWEEP = (1.0, 0.77, 0.58, 0.38, 0.29, 0.14, 0.0)  # thesis Fig. 2.4; T = 0 means the mode
BASELINES = ("ground_truth", "gray", "random")
BASELINE_NAMES = {"ground_truth": "Ground truth", "gray": "Gray", "random": "Random"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
GRAY_TOLERANCE = 2  # an RGB image whose channels differ by <= this everywhere counts as grayscale
# Thesis Table 2.1 (ImageNet val 10k, VGG-16 top-1) for reference beside our numbers.
THESIS_TABLE = {
    "Ground truth": (100.0, 100.0, 68.3),
    "Gray": (89.1, 58.0, 52.7),
    "Random": (84.2, 57.3, 41.0),
    "Ours (L2)": (91.2, 64.4, 54.9),
    "Ours (class)": (91.6, 65.1, 56.6),
    "Ours (full)": (89.5, 67.3, 56.0),
}
_VERSION = 2  # bump when the protocol changes (invalidates up-to-date checks)


# ----------------------------------------------------------------------------------------------- data


@dataclass
class _Item:
    id: str
    label: str | None
    source: Callable[[], Any]  # returns a path or a file-like object PIL can open


def _index_shards(root: Path, split: str, excluded: list[dict]) -> list[_Item]:
    import pyarrow.parquet as pq

    shards = sorted((root / "shards").glob(f"{split}-*.parquet"))
    if not shards:
        raise FileNotFoundError(f"data {root}: no shards/{split}-*.parquet (is split {split!r} prepared?)")
    items: list[_Item] = []
    for shard in shards:
        table = pq.read_table(shard, columns=["id", "label", "has_color", "image"])
        ids, labels = table.column("id").to_pylist(), table.column("label").to_pylist()
        colors, images = table.column("has_color").to_pylist(), table.column("image").to_pylist()
        for id_, label, has_color, data in zip(ids, labels, colors, images, strict=True):
            if not has_color:
                excluded.append({"id": id_, "reason": "grayscale (no colour ground truth)"})
                continue
            items.append(_Item(id_, label, lambda d=data: io.BytesIO(d)))
    return items


def _index_folder(root: Path) -> list[_Item]:
    items = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            rel = p.relative_to(root).as_posix()
            label = p.parent.name if p.parent != root else None
            items.append(_Item(rel, label, lambda p=p: p))
    if not items:
        raise FileNotFoundError(f"data {root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    return items


def _load_rgb(item: _Item, size: int) -> torch.Tensor:
    """Decode, resize the short side to ``size`` (bicubic), centre-crop: uint8 ``(3, size, size)``.

    Raises ValueError for grayscale images (nothing to compare colours with)."""
    from PIL import Image, ImageOps

    with Image.open(item.source()) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("1", "L", "LA", "I", "I;16", "F"):
            raise ValueError("grayscale (no colour ground truth)")
        im = im.convert("RGB")
        w, h = im.size
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        a = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    spread = int((a.max(axis=2).astype(np.int16) - a.min(axis=2)).max())
    if spread <= GRAY_TOLERANCE:
        raise ValueError("grayscale (no colour ground truth)")
    return torch.from_numpy(a.copy()).permute(2, 0, 1)


def load_eval_items(
    data: str | os.PathLike, *, split: str = "val", size: int = 256, max_images: int | None = None, seed: int = 0
) -> tuple[list[_Item], list[dict]]:
    """The evaluation set: (items sorted by id, excluded ``[{id, reason}]``).

    ``data`` is a prepared dir (``shards/<split>-*.parquet``) or a folder of images (recursive; ``split`` is
    ignored). With ``max_images``, a seeded random subset of that many candidates is taken before decoding.
    Every kept item decodes to a colour image at ``size``; the others are listed in ``excluded``.
    """
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"data {root}: not a directory")
    excluded: list[dict] = []
    prepared = (root / "shards").is_dir() or (root / "manifest.json").is_file()
    items = _index_shards(root, split, excluded) if prepared else _index_folder(root)
    items.sort(key=lambda it: it.id)
    dup = len(items) - len({it.id for it in items})
    if dup:
        raise ValueError(f"data {root}: {dup} duplicate image ids")
    if max_images is not None and max_images < len(items):
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        keep = set(random.Random(seed).sample(range(len(items)), max_images))
        items = [it for i, it in enumerate(items) if i in keep]
    good = []
    for it in items:
        try:
            _load_rgb(it, size)
        except Exception as e:  # noqa: BLE001 - every rejected record is listed with its reason
            excluded.append({"id": it.id, "reason": str(e) or type(e).__name__})
            continue
        good.append(it)
    if excluded:
        log.warning("%d images excluded (listed in metrics.json 'excluded')", len(excluded))
    return good, excluded


def eval_set_fingerprint(ids: Sequence[str]) -> str:
    """sha256 of the sorted image ids, one per line: identifies the evaluation set."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


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


def _to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb.clamp(0, 1) * 255.0).round().to(torch.uint8)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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
            pooled = counts @ np.stack(hists)  # (reps, T + 2)
            out[key] = np.cumsum(pooled, 1)[:, :-1].mean(1) / pooled.sum(1) * 100.0
        psnr = np.asarray(self.psnr, dtype=np.float64)
        if np.isfinite(psnr).all():
            out["psnr"] = counts @ psnr / len(psnr)
        hits = np.asarray(self.hits, dtype=np.float64)
        labeled = ~np.isnan(hits)
        if labeled.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                out["class_top1"] = 100.0 * (counts @ np.nan_to_num(hits)) / (counts @ labeled)
        return out


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(v), 6) for v in values]


def bootstrap_rows(accs: Mapping[str, _Acc], n: int, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> dict[str, Any]:
    """95% bootstrap intervals of every row's metrics, and of each row's difference to Gray on the same resamples
    (paired: one set of image resamples for all rows). ``{"reps", "level", "rows": {name: {metric: [lo, hi]}},
    "minus_gray": {name: {metric: [diff, lo, hi]}}}``."""
    # intervals rounded to 1e-6: BLAS may sum the weighted histograms in another order on another CPU, and the
    # DVC-hashed metrics.json should not change with the last bits
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
    dev = _pick_device(device)

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
        gt = torch.stack([_load_rgb(items[i], size) for i in idx]).to(dev)  # (B, 3, S, S) uint8
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
            outs["Gray"] = _to_uint8(lab_to_rgb(torch.cat([L, torch.zeros_like(gt_ab)], 1)))
        if "Random" in accs:
            donor = torch.stack([_load_rgb(items[donor_of[i]], size) for i in idx]).to(dev)
            d_ab = rgb_to_lab(donor)[:, 1:]
            if d_ab.shape[-2:] != gt_ab.shape[-2:]:  # resized to fit
                d_ab = F.interpolate(d_ab, size=gt_ab.shape[-2:], mode="bilinear", align_corners=False)
            outs["Random"] = _to_uint8(lab_to_rgb(torch.cat([L, d_ab], 1)))
        sweep_out: dict[float, torch.Tensor] = {}
        for k, (name, model) in enumerate(loaded):
            t, meth = main_key
            outs[name] = _to_uint8(colorize(model, gt, T=t, method=meth, size=size, upsample=upsample))
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
                        else _to_uint8(colorize(model, gt, T=key[0], method=key[1], size=size, upsample=upsample))
                    )
        for name, o in outs.items():
            accs[name].update(o, gt, gt_ab, pw, clf, targets)
        for t_s, o in sweep_out.items():
            sweep_accs[t_s].update(o, gt, gt_ab, pw, None, targets)
        if len(shown["Input (L)"]) < gallery:
            gray = outs.get("Gray")
            if gray is None:
                gray = _to_uint8(lab_to_rgb(torch.cat([L, torch.zeros_like(gt_ab)], 1)))
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
    write_text(out / "report.md", _markdown(result, rows_order))
    write_text(out / "report.html", _html(result, rows_order, shown, sweep_shown))
    write_json(done, result)  # last: its presence means the step finished
    log.info("evaluate: wrote %s (%d images)", out, len(items))
    return result


# --------------------------------------------------------------------------------------------- reports

_COLUMNS = [
    "Method",
    "AuC non-rebal (%)",
    "AuC rebal (%)",
    "Class top-1 (%)",
    "PSNR (dB)",
    "Colourfulness M3",
    "Chroma",
]


def _table_rows(result: dict, rows_order: Sequence[str]) -> list[list]:
    out = []
    for name in rows_order:
        r = result["rows"][name]
        psnr = r["psnr"] if r["psnr"] is not None else (math.inf if name == "Ground truth" else None)
        out.append([name, r["auc_raw"], r["auc_rebal"], r["class_top1"], psnr, r["colorfulness"], r["chroma"]])
    return out


def _sweep_rows(result: dict) -> list[list]:
    return [
        [f"{r['T']:g}" + (" (mode)" if r["decode"] == "mode" else ""), r["auc_raw"], r["auc_rebal"], r["psnr"],
         r["colorfulness"], r["chroma"]]
        for r in result["t_sweep"]
    ]  # fmt: skip


_SWEEP_COLUMNS = ["T", "AuC non-rebal (%)", "AuC rebal (%)", "PSNR (dB)", "Colourfulness M3", "Chroma"]


def _thesis_rows() -> list[list]:
    return [[k, *v] for k, v in THESIS_TABLE.items()]


_CI_KEYS = (("auc_raw", "AuC non-rebal"), ("auc_rebal", "AuC rebal"), ("class_top1", "Class top-1"), ("psnr", "PSNR"))


def _ci_lines(result: dict, rows_order: Sequence[str]) -> list[str]:
    """Markdown: 95% bootstrap intervals per row, and each row minus Gray (paired; significant if 0 is outside)."""
    b = result.get("bootstrap")
    if not b:
        return []

    def cell(v):
        return "-" if v is None else "[" + ", ".join(f"{x:.2f}" for x in v) + "]"

    def diff(v):
        if v is None:
            return "-"
        star = " *" if v[1] > 0 or v[2] < 0 else ""
        return f"{v[0]:+.2f} [{v[1]:+.2f}, {v[2]:+.2f}]{star}"

    keys = [(k, h) for k, h in _CI_KEYS if any(k in b["rows"].get(n, {}) for n in rows_order)]
    head = ["Method", *[h for _, h in keys]]
    lines = [
        f"{round(100 * b['level'])}% bootstrap intervals ({b['reps']} resamples of the images):",
        "",
        R.markdown_table([[n, *[cell(b["rows"][n].get(k)) for k, _ in keys]] for n in rows_order if n in b["rows"]],
                         head),
    ]  # fmt: skip
    if b["minus_gray"]:
        lines += [
            "",
            "Row minus Gray on the same resamples (paired); * = the interval excludes 0:",
            "",
            R.markdown_table([[n, *[diff(d.get(k)) for k, _ in keys]] for n, d in b["minus_gray"].items()], head),
        ]
    return lines + [""]


def _markdown(result: dict, rows_order: Sequence[str]) -> str:
    s = result["settings"]
    lines = [
        "# Colorization results (thesis Table 2.1 protocol)",
        "",
        f"- images: {result['n_images']} from `{s['data']}` (split `{s['split']}`), eval set `{result['eval_set'][:16]}`",
        f"- protocol: {s['protocol']}; decoding {s['decode']} at T={s['T']}",
        f"- rebalanced AuC: Eq. 2.4 with lambda=0 from {s['prior']}; AuC thresholds 0..150 (step 1)",
        f"- classifier: {s['classifier']} (the thesis used VGG-16)",
        f"- excluded: {len(result['excluded'])} images (listed in metrics.json)",
        "",
        R.markdown_table(_table_rows(result, rows_order), _COLUMNS),
        "",
        *_ci_lines(result, rows_order),
    ]
    if result["t_sweep"]:
        lines += [
            f"## Temperature sweep ({result.get('primary')})",
            "",
            R.markdown_table(_sweep_rows(result), _SWEEP_COLUMNS),
        ]
    lines += [
        "## Thesis Table 2.1 for reference (ImageNet val 10k, VGG-16)",
        "",
        R.markdown_table(_thesis_rows(), ["Method", "AuC non-rebal (%)", "AuC rebal (%)", "VGG top-1 (%)"], digits=1),
    ]
    return "\n".join(lines)


def _sweep_plot(result: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["t_sweep"]
    ts = [r["T"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(ts, [r["colorfulness"] for r in rows], "o-", label="ours (M3)")
    gt = result["rows"].get("Ground truth")
    if gt:
        ax[0].axhline(gt["colorfulness"], color="k", ls="--", label="ground truth")
    ax[0].set(xlabel="T (0 = mode)", ylabel="colourfulness M3")
    ax[0].legend()
    ax[1].plot(ts, [r["auc_raw"] for r in rows], "o-", label="AuC non-rebal")
    ax[1].plot(ts, [r["auc_rebal"] for r in rows], "s-", label="AuC rebal")
    ax[1].set(xlabel="T (0 = mode)", ylabel="%")
    ax[1].legend()
    return f"<img src='{R.png_data_uri(R.figure_png(fig))}' alt='T sweep'>"


def _html(result: dict, rows_order: Sequence[str], shown: dict, sweep_shown: list) -> str:
    s = result["settings"]
    intro = (
        f"<p>{result['n_images']} images from <code>{html.escape(s['data'])}</code>; "
        f"{html.escape(s['protocol'])}; decoding {html.escape(s['decode'])} at T={s['T']}; "
        f"classifier: {html.escape(s['classifier'])}; eval set <code>{result['eval_set'][:16]}</code>.</p>"
    )
    sections = [("Table 2.1 protocol", intro + R.html_table(_table_rows(result, rows_order), _COLUMNS))]
    ours = [n for n in rows_order if n.startswith("Ours")]
    if len(ours) > 1:
        cmp_rows = [[n, result["rows"][n]["auc_raw"], result["rows"][n]["auc_rebal"], result["rows"][n]["colorfulness"]]
                    for n in ours]  # fmt: skip
        sections.append((
            "Class rebalancing: models compared",
            "<p>Rebalancing trades raw AuC (dominated by desaturated pixels) for rebalanced AuC and colour.</p>"
            + R.html_table(cmp_rows, ["Model", "AuC non-rebal (%)", "AuC rebal (%)", "Colourfulness M3"]),
        ))  # fmt: skip
    cols = list(shown)
    n = len(shown["Input (L)"])
    if n:
        grid = [[shown[c][i] for c in cols] for i in range(n)]
        sections.append(("Gallery", R.image_grid(grid, cols, row_labels=result["ids"][:n])))
    if result["t_sweep"]:
        body = R.html_table(_sweep_rows(result), _SWEEP_COLUMNS) + _sweep_plot(result)
        if sweep_shown:
            heads = [f"T={r['T']:g}" if r["decode"] != "mode" else "mode" for r in result["t_sweep"]] + ["Ground truth"]
            body += R.image_grid(sweep_shown, heads)
        sections.append((f"Temperature sweep ({result.get('primary')})", body))
    sections.append((
        "Thesis Table 2.1 (ImageNet val 10k, VGG-16)",
        R.html_table(_thesis_rows(), ["Method", "AuC non-rebal (%)", "AuC rebal (%)", "VGG top-1 (%)"], digits=1),
    ))  # fmt: skip
    if result["excluded"]:
        ex = [[e["id"], e["reason"]] for e in result["excluded"]]
        sections.append((f"Excluded images ({len(ex)})", R.html_table(ex, ["id", "reason"])))
    return R.html_page("Colorization evaluation", sections)


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
