"""Bilinear vs guided chroma upsampling, at each photo's full resolution, with the shipped colorizer.

    PYTHONPATH=src .venv/bin/python bench/upsampling.py --tune       # choose radius/eps on BSDS500 val (100)
    PYTHONPATH=src .venv/bin/python bench/upsampling.py --out docs/upsampling.json   # Kodak24 + BSDS500 test

Protocol: each photo at its own resolution (Kodak 768x512, BSDS 481x321); the served path
(``models.colorize``: L resized to the served network input, ``handler.size`` = 64 px, annealed mean T = 0.38,
predicted 16x16 ab upsampled to the photo by ``upsample``, recombined with the photo's L), output quantized to
uint8 RGB and every metric computed from it against the uint8 ground truth. Per set: AuC raw and rebalanced
(pixels pooled; rebalanced with the shipped ImageNet prior, Eq. 2.4 lambda 0), PSNR (dB), LPIPS to the ground
truth (squeeze v0.1, official linear weights on the ImageNet SqueezeNet trunk of ``../shared``), and edge
bleeding: mean ab error (L2, ab units) within ``EDGE_BAND`` px of strong lightness edges of the ground truth
(Sobel magnitude of L >= ``EDGE_L_PER_PX`` L units per px) and farther away. 95% bootstrap intervals
(10,000 image resamples; pooled statistics recomputed per resample) for each method and for the paired
difference guided - bilinear on the same resamples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from chromaflow import color
from chromaflow.evaluate import metrics as M
from chromaflow.evaluate.bootstrap import percentile_interval, resample_counts
from chromaflow.models import colorize
from chromaflow.models.lpips import build_lpips
from chromaflow.models.shipped import load_shipped

SHARED = Path("../shared/datasets")
SETS = {"Kodak24": SHARED / "kodak24", "BSDS500 test": SHARED / "bsds500/images/test"}
TUNE_SET = SHARED / "bsds500/images/val"
SQUEEZE = SHARED / "squeezenet1_1/squeezenet1_1_caffe_folded_torchvision_norm_tvkeys.pth"
EDGE_L_PER_PX = 8.0  # |grad L| (Sobel / 8, L units per px) at or above this is a strong edge
EDGE_BAND = 3  # px around a strong edge counted as "near"
TUNE_RADII = (0.125, 0.25, 0.5, 1.0)  # guided radius in ab cells
TUNE_EPS = (1e-4, 1e-2)


def load_photos(folder: Path) -> list[tuple[str, torch.Tensor]]:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    return [(p.name, torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy()).permute(2, 0, 1)) for p in files]


def edge_masks(L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``L (1, 1, H, W)`` -> (near, far) boolean ``(1, H, W)``: within ``EDGE_BAND`` px of a strong L edge, or not."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
    k = torch.stack([kx, kx.T])[:, None]
    g = F.conv2d(F.pad(L, (1, 1, 1, 1), mode="replicate"), k)
    strong = (g.square().sum(1, keepdim=True).sqrt() >= EDGE_L_PER_PX).float()
    near = F.max_pool2d(strong, 2 * EDGE_BAND + 1, stride=1, padding=EDGE_BAND)[:, 0] > 0
    return near, ~near


def ab_of(model, gt: torch.Tensor, size: int, upsample: str, **kw) -> torch.Tensor:
    """uint8 RGB output of the served path; ``kw`` (radius_cells, eps) only for tuning."""
    if not kw:
        out = colorize(model, gt[None], size=size, upsample=upsample)
    else:  # the same maths as colorize with other guided parameters: checked equal at the defaults in main
        L = color.rgb_to_lab(gt[None].float() / 255.0)[:, :1]
        small = F.interpolate(L, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        c = model.config["contract"]
        with torch.inference_mode():
            ab = color.decode_ab(model(((small - c["l_cent"]) / c["l_norm"]).float()).float(), T=c["T"])
        out = color.lab_to_rgb(torch.cat([L, color.upsample_ab(ab, L, upsample, **kw)], 1))
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)


def measure(model, size, photos, methods, lp, pw_of) -> dict:
    """Per image and method: AuC histograms (raw, rebalanced), PSNR, LPIPS, edge errors."""
    res = {m: {"raw": [], "rebal": [], "psnr": [], "lpips": [], "near": [], "far": []} for m in methods}
    for _, gt in photos:
        lab = color.rgb_to_lab(gt[None])
        gt_ab, pw = lab[:, 1:], pw_of(lab[:, 1:])
        near, far = edge_masks(lab[:, :1])
        for m, kw in methods.items():
            out = ab_of(model, gt, size, kw["upsample"], **kw.get("params", {}))
            ab = color.rgb_to_lab(out)[:, 1:]
            r = res[m]
            for key, w in (("raw", None), ("rebal", pw)):
                meter = M.AucMeter()
                meter.update(ab, gt_ab, w)
                r[key].append(meter.hist.numpy().copy())
            r["psnr"].append(float(M.psnr(out, gt[None])[0]))
            if lp is not None:
                r["lpips"].append(float(lp(out.float() / 255, gt[None].float() / 255)))
            d = M.ab_distance(ab, gt_ab)
            r["near"].append((float(d[near].sum()), int(near.sum())))
            r["far"].append((float(d[far].sum()), int(far.sum())))
    return res


def _auc_from_hists(hists: np.ndarray) -> np.ndarray:
    """``(..., T + 2)`` pooled histograms -> AuC (%) ``(...)`` (as ``AucMeter.auc``)."""
    c = np.cumsum(hists, -1)[..., :-1] / hists.sum(-1, keepdims=True)
    return c.mean(-1) * 100


def summarize(res: dict, counts: np.ndarray) -> dict:
    """Point value, 95% interval per method, and the paired difference (second - first method)."""
    stats = {}
    for m, r in res.items():
        s = {}
        for key in ("raw", "rebal"):
            h = np.stack(r[key])  # (n, T+2)
            s[f"auc_{key}"] = (_auc_from_hists(h.sum(0)), _auc_from_hists(counts @ h))
        for key in ("psnr", "lpips"):
            if r[key]:
                v = np.asarray(r[key])
                s[key] = (v.mean(), counts @ v / len(v))
        for key in ("near", "far"):
            a = np.asarray(r[key], dtype=np.float64)  # (n, 2): error sum, pixel count
            s[f"ab_err_{key}"] = (a[:, 0].sum() / a[:, 1].sum(), (counts @ a[:, 0]) / (counts @ a[:, 1]))
        stats[m] = s
    names = list(res)
    out = {m: {k: [float(v), *percentile_interval(b)] for k, (v, b) in s.items()} for m, s in stats.items()}
    if len(names) == 2:
        a, b = (stats[n] for n in names)
        out[f"{names[1]} - {names[0]}"] = {
            k: [float(b[k][0] - a[k][0]), *percentile_interval(b[k][1] - a[k][1])] for k in a
        }
    return out


_COLS = (("auc_raw", "AuC raw (%)"), ("auc_rebal", "AuC rebal (%)"), ("psnr", "PSNR (dB)"), ("lpips", "LPIPS"),
         ("ab_err_near", "ab err near edges"), ("ab_err_far", "ab err away"))  # fmt: skip


def to_markdown(report: dict) -> str:
    """One table per set: each method's value [95% interval], then the paired difference."""
    lines = []
    for name, s in report.get("sets", {}).items():
        rows = [m for m in s if m != "n_images"]
        cols = [(k, h) for k, h in _COLS if k in s[rows[0]]]
        lines += [f"**{name}** ({s['n_images']} photos)", "", "| | " + " | ".join(h for _, h in cols) + " |",
                  "|---|" + "---|" * len(cols)]  # fmt: skip
        for m in rows:
            sign = "+" if " - " in m else ""
            fmt = {k: f"{sign}.{4 if k == 'lpips' else 2}f" for k, _ in cols}
            lines.append(f"| {m} | " + " | ".join(
                f"{s[m][k][0]:{fmt[k]}} [{s[m][k][1]:{fmt[k]}}, {s[m][k][2]:{fmt[k]}}]" for k, _ in cols) + " |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tune", action="store_true", help="grid of radius x eps on BSDS500 val (no test set)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--max-images", type=int, default=None, help="first N photos of each set (smoke runs)")
    ap.add_argument("--no-lpips", action="store_true")
    ap.add_argument("--markdown", type=Path, default=None, help="print the tables of a JSON written by --out")
    args = ap.parse_args()
    if args.markdown:
        print(to_markdown(json.loads(args.markdown.read_text())))
        return 0
    torch.set_grad_enabled(False)
    model, card = load_shipped("colorization")
    from chromaflow.export.mar import served_settings

    size = int(served_settings("eccv16").size)
    prior_w = M.auc_class_weights(torch.as_tensor(color.load_prior(), dtype=torch.float64))

    def pw_of(ab):
        return M.pixel_class_weights(ab, prior_w)

    lp = None if args.no_lpips else build_lpips("squeeze", trunk=SQUEEZE)
    # the tuning path equals the served path at the defaults
    _, probe = load_photos(SETS["Kodak24"])[0]
    assert torch.equal(ab_of(model, probe, size, "guided"), ab_of(model, probe, size, "guided", radius_cells=1.0))
    report: dict = {"model": card["sha256"], "network_input": size, "prior": "shipped ImageNet prior"}
    if args.tune:
        photos = load_photos(TUNE_SET)[: args.max_images]
        methods = {"bilinear": {"upsample": "bilinear"}}
        for r in TUNE_RADII:
            for e in TUNE_EPS:
                methods[f"guided r={r} eps={e:g}"] = {"upsample": "guided", "params": {"radius_cells": r, "eps": e}}
        res = measure(model, size, photos, methods, lp, pw_of)
        counts = resample_counts(len(photos), reps=1000)
        report["tune"] = {m: summarize({m: r}, counts)[m] for m, r in res.items()}
        for m, s in report["tune"].items():
            print(f"{m:28s} " + "  ".join(f"{k} {v[0]:.3f}" for k, v in s.items()))
    else:
        methods = {"bilinear": {"upsample": "bilinear"}, "guided": {"upsample": "guided"}}
        report["sets"] = {}
        for name, folder in SETS.items():
            t0 = time.time()
            photos = load_photos(folder)[: args.max_images]
            res = measure(model, size, photos, methods, lp, pw_of)
            s = summarize(res, resample_counts(len(photos)))
            s["n_images"] = len(photos)
            report["sets"][name] = s
            print(f"{name} ({len(photos)} photos, {time.time() - t0:.0f} s)")
            for m, row in s.items():
                if m != "n_images":
                    print(f"  {m:20s} " + "  ".join(f"{k} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for k, v in row.items()))
            if args.out:  # after each set: a long run keeps what it has measured
                args.out.write_text(json.dumps(report, indent=1) + "\n")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
