"""``chromaflow evaluate --task lpips``: 2AFC and JND scores of L2, PSNR, SSIM and LPIPS variants (thesis 6.4).

- 2AFC (sec. 6.4.1, fractional judgments; :func:`chromaflow.data.bapps.score_2afc`): per triplet
  ``score = 1 - judge`` if ``d0 < d1``, ``judge`` if ``d1 < d0``, ``0.5`` on a tie; the set's score is the
  mean (``judge`` = fraction preferring p1).
- JND: pairs sorted by ascending distance, precision/recall of ``same``, area under the curve (VOC AP, as
  in the released code), i.e. the AP of ``same`` against ``-distance``.

Writes ``<out>/metrics.json``, ``<out>/report.md`` (a Table 6.5-shaped table, 2AFC and JND columns per
set) and ``<out>/gallery.png`` (val triplets with their LPIPS spatial maps). Data: a BAPPS root (real,
or the PROXY built by :func:`chromaflow.data.bapps.build_proxy_bapps`, which the report flags).

    chromaflow evaluate --task lpips --data runs/bapps_proxy --out runs/lpips_eval \\
        --trunk squeeze=../shared/datasets/squeezenet1_1/squeezenet1_1_caffe_folded_torchvision_norm_tvkeys.pth \\
        --trunk alex=random --weights runs/lpips_alex_lin/model.safetensors
"""

from __future__ import annotations

import argparse
import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chromaflow.data.bapps import JNDDataset, TwoAFCDataset, list_sets, score_2afc
from chromaflow.io import read_json, write_bytes, write_json, write_text
from chromaflow.models import lpips as lpips_net

log = logging.getLogger(__name__)

SSIM_SIGMA, SSIM_K1, SSIM_K2 = 1.5, 0.01, 0.03  # Wang et al. 2004, Gaussian window truncated at 3.5 sigma


# ----------------------------------------------------------------------------------------------- scores


def voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """Area under the precision envelope over recall (PASCAL VOC, non-interpolated)."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def score_jnd(ds: Any, same: Any) -> float:
    """JND mAP in [0, 1]: pairs ranked by ascending distance, precision/recall of ``same`` (fractions)."""
    ds, same = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (ds, same))
    if ds.shape != same.shape or ds.size == 0:
        raise ValueError(f"score_jnd: ds {ds.shape} and same {same.shape} must be equal and non-empty")
    if same.sum() <= 0:
        raise ValueError("score_jnd: no pair is judged 'same' (recall undefined)")
    s = same[np.argsort(ds, kind="stable")]
    tp, fp = np.cumsum(s), np.cumsum(1.0 - s)
    return voc_ap(tp / same.sum(), tp / (tp + fp))


# ----------------------------------------------------------------------------------------------- low-level metrics


def _gauss_window(sigma: float, device, dtype) -> torch.Tensor:
    r = int(3.5 * sigma + 0.5)
    x = torch.arange(-r, r + 1, device=device, dtype=dtype)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Mean SSIM per image: ``x, y (B, C, H, W)`` -> ``(B,)``; Gaussian-weighted, population covariances.

    Equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range, channel_axis=...)`` (valid region only).
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim: x {tuple(x.shape)} and y {tuple(y.shape)} must both be (B, C, H, W)")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x, y = x.to(dtype), y.to(dtype)
    g = _gauss_window(sigma, x.device, dtype)
    if min(x.shape[-2:]) < g.numel():
        raise ValueError(f"ssim: images must be at least {g.numel()} px, got {tuple(x.shape[-2:])}")
    c = x.shape[1]
    gy, gx = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gy, groups=c), gx, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def l2_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, RGB in [0, 1]: ``(B, 3, H, W)`` -> ``(B,)``."""
    return ((x.float() - y.float()) ** 2).mean(dim=(1, 2, 3))


def psnr_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``-PSNR`` in dB (data range 1), so smaller means closer; identical images give ``-100``."""
    return 10 * torch.log10(l2_distance(x, y).clamp_min(1e-10))


def ssim_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` (data range 1)."""
    return 1.0 - ssim(x, y)


LOW_LEVEL: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "L2": l2_distance,
    "PSNR": psnr_distance,
    "SSIM": ssim_distance,
}


# ----------------------------------------------------------------------------------------------- evaluation


def _stack(ds, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    items = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([it[k] for it in items]) for k in keys}


def _distances(fn: Callable, a: torch.Tensor, b: torch.Tensor, batch: int, device: torch.device) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(a), batch):
            out.append(fn(a[i : i + batch].to(device), b[i : i + batch].to(device)).float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


def build_variants(
    trunks: Mapping[str, str], weights: Sequence[str], device: torch.device, version: str = "0.1"
) -> list[tuple[str, str, Callable]]:
    """``[(group, name, distance fn)]``: low-level metrics, then per net with a trunk the cosine and official-lin
    variants, then each trained checkpoint."""
    rows: list[tuple[str, str, Callable]] = [("Low-level", k, fn) for k, fn in LOW_LEVEL.items()]
    for net, src in trunks.items():
        tag = "random trunk" if src == "random" else "pretrained trunk"
        group = "Net (Random)" if src == "random" else "Net (Supervised)"
        base = lpips_net.build_lpips(net, trunk=src, lin=None, version=version, device=device)
        rows.append((group, f"{net} ({tag})", base))
        lin = lpips_net.build_lpips(net, trunk=src, lin="official", version=version, device=device)
        rows.append(("LPIPS (official w)", f"{net}-lin ({tag})", lin))
    for w in weights:
        m = lpips_net.load_distance(w, device=device)
        rows.append(("LPIPS (trained here)", f"{Path(w).parent.name or Path(w).stem}: {m.net_name}", m))
    return rows


def evaluate_lpips(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    trunks: Mapping[str, str] | None = None,
    weights: Sequence[str] = (),
    batch_size: int = 50,
    device: str | None = None,
    gallery: int = 6,
) -> dict[str, Any]:
    """Score every variant on every ``2afc/val/<set>`` and ``jnd/val/<set>`` of ``data``; write the report.

    Args:
        trunks: ``{net: torchvision state_dict path | "random"}`` for the LPIPS backbones to include.
        weights: trained LPIPS weights files (``lpips`` or ``lpips_2afc`` models: ``chromaflow train --task lpips``).
    Returns the metrics dict (also ``<out>/metrics.json``): ``{"2afc": {variant: {set: score}}, "jnd": ...}``.
    """
    data, out = Path(data), Path(out)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    variants = build_variants(dict(trunks or {}), list(weights), dev)
    manifest = read_json(data / "manifest.json") if (data / "manifest.json").is_file() else {}
    proxy = bool(manifest.get("proxy"))
    res: dict[str, Any] = {"2afc": {}, "jnd": {}, "proxy": proxy, "data": str(data), "groups": {}}
    for group, name, _ in variants:
        res["groups"][name] = group
    sets_2afc = list_sets(data, "2afc", "val")
    sets_jnd = _optional_sets(data, "jnd")
    for s in sets_2afc:
        t = _stack(TwoAFCDataset(s), ("ref", "p0", "p1", "judge"))
        for _, name, fn in variants:
            d0 = _distances(fn, t["ref"], t["p0"], batch_size, dev)
            d1 = _distances(fn, t["ref"], t["p1"], batch_size, dev)
            res["2afc"].setdefault(name, {})[s.name] = score_2afc(d0, d1, t["judge"].numpy())
        log.info("2afc/%s: %d triplets scored", s.name, len(t["judge"]))
    for s in sets_jnd:
        t = _stack(JNDDataset(s), ("p0", "p1", "same"))
        for _, name, fn in variants:
            ds = _distances(fn, t["p0"], t["p1"], batch_size, dev)
            res["jnd"].setdefault(name, {})[s.name] = score_jnd(ds, t["same"].numpy())
    for task in ("2afc", "jnd"):
        for scores in res[task].values():
            scores["All"] = float(np.mean(list(scores.values())))
    write_json(out / "metrics.json", res)
    write_text(out / "report.md", report_markdown(res))
    lp = [v for v in variants if isinstance(v[2], lpips_net.LPIPS) and v[2].lins is not None]
    if gallery and lp:
        write_bytes(out / "gallery.png", gallery_png(lp[-1][2], TwoAFCDataset(sets_2afc[0]), gallery, lp[-1][1]))
    return res


def _optional_sets(data: Path, task: str) -> list[Path]:
    try:
        return list_sets(data, task, "val")
    except FileNotFoundError:
        log.info("no %s/val sets under %s: skipped", task, data)
        return []


def report_markdown(res: Mapping[str, Any]) -> str:
    """A Table 6.5-shaped Markdown table: rows grouped by subtype, 2AFC and JND columns per set (in %)."""
    sets_2afc = sorted({s for v in res["2afc"].values() for s in v if s != "All"})
    sets_jnd = sorted({s for v in res["jnd"].values() for s in v if s != "All"})
    cols = [("2afc", s) for s in sets_2afc + ["All"]] + ([("jnd", s) for s in sets_jnd + ["All"]] if sets_jnd else [])
    head = ["Subtype", "Metric"] + [f"{t.upper()} {s}" for t, s in cols]
    lines = ["# LPIPS evaluation (thesis Table 6.5 layout; 2AFC score and JND mAP, %)", ""]
    if res.get("proxy"):
        lines += [
            "> **PROXY DATA, NOT HUMAN JUDGMENTS.** The labels are the known ordering of distortion strength",
            "> within one distortion type (see `chromaflow.data.bapps`); these numbers are not comparable to the",
            "> thesis's Table 6.5.",
            "",
        ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    last_group = None
    for name, group in res["groups"].items():
        cells = []
        for t, s in cols:
            v = res[t].get(name, {}).get(s)
            cells.append("" if v is None else f"{100 * v:.1f}")
        shown = group if group != last_group else ""
        last_group = group
        lines.append("| " + " | ".join([shown, name, *cells]) + " |")
    lines += ["", f"Data: `{res.get('data')}`."]
    return "\n".join(lines) + "\n"


def map_to_rgb(m: torch.Tensor, vmax: float | None = None) -> np.ndarray:
    """A distance map ``(H, W)`` -> uint8 ``(H, W, 3)`` (matplotlib 'viridis', 0 .. vmax)."""
    from matplotlib import colormaps

    a = m.detach().float().cpu().numpy()
    vmax = float(vmax if vmax is not None else max(a.max(), 1e-12))
    return (colormaps["viridis"](np.clip(a / vmax, 0, 1))[..., :3] * 255).round().astype(np.uint8)


def gallery_png(model: lpips_net.LPIPS, ds: TwoAFCDataset, n: int, title: str = "") -> bytes:
    """Rows of ``ref | p0 | map(ref, p0) | p1 | map(ref, p1)`` (maps share one colour scale) as PNG bytes."""
    from PIL import Image, ImageDraw

    dev = next(model.parameters()).device
    rows = []
    for i in range(min(n, len(ds))):
        it = ds[i]
        with torch.no_grad():
            m = model(
                torch.stack([it["ref"], it["ref"]]).to(dev), torch.stack([it["p0"], it["p1"]]).to(dev), spatial=True
            )
        vmax = float(m.max())
        ims = [it["ref"], it["p0"], None, it["p1"], None]
        tiles = []
        for k, im in enumerate(ims):
            arr = (
                map_to_rgb(m[0 if k == 2 else 1, 0], vmax)
                if im is None
                else (im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            )
            tiles.append(arr)
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    img = Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST)
    canvas = Image.new("RGB", (img.width, img.height + 16), "white")
    canvas.paste(img, (0, 16))
    ImageDraw.Draw(canvas).text((2, 2), f"ref | p0 | map0 | p1 | map1   {title}", fill="black")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- CLI


def _parse_trunks(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        net, sep, src = it.partition("=")
        if not sep or net not in lpips_net.NETS:
            raise ValueError(f"--trunk {it!r}: expected NET=PATH|random with NET in {sorted(lpips_net.NETS)}")
        out[net] = src
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="BAPPS root (real or proxy) with 2afc/val/<set> [jnd/val/<set>]")
    parser.add_argument("--out", required=True, help="output folder: metrics.json, report.md, gallery.png")
    parser.add_argument("--trunk", action="append", default=[], metavar="NET=SRC",
                        help="backbone to include: NET=<torchvision state_dict> or NET=random (repeatable)")  # fmt: skip
    parser.add_argument("--weights", action="append", default=[], help="trained LPIPS weights (repeatable)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", default=None, help="cpu | cuda | mps (default: cuda if available)")
    parser.add_argument("--gallery", type=int, default=6, help="triplets in gallery.png (0 = none)")


def main(args: argparse.Namespace) -> int:
    try:
        res = evaluate_lpips(args.data, args.out, trunks=_parse_trunks(args.trunk), weights=args.weights,
                             batch_size=args.batch_size, device=args.device, gallery=args.gallery)  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        log.error("evaluate lpips: %s", e)
        return 2
    for name, s in res["2afc"].items():
        log.info("%-40s 2AFC %.1f%%%s", name, 100 * s["All"],
                 f"  JND mAP {100 * res['jnd'][name]['All']:.1f}%" if name in res["jnd"] else "")  # fmt: skip
    return 0
