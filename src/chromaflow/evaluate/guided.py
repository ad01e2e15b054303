"""The user-guided evaluation protocol (thesis ch. 3.4.1, Table 3.1 and Fig. 3.6): PSNR vs points.

For every image of a fixed validation set and every number of revealed points
``N in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)``, ``patch x patch`` patches (7x7 as in Fig. 3.6) of
ground-truth mean ab are revealed, and the PSNR of the colorization (ground-truth L + predicted ab,
as uint8 sRGB) is measured. Points are placed

- ``random``: uniformly at random; the first N of one fixed sequence per image, so curves are nested;
- ``oracle``: at the largest error: the ab L2 error of the current prediction averaged over a
  25x25 window, excluding pixels under revealed patches. The thesis re-predicts after every point;
  on a CPU we re-predict at each N of the sweep and add the points between two Ns greedily from the
  last prediction (non-overlapping), which is exact for N <= 2 and an approximation beyond.

Rows: the user-guided network, the same network's automatic output (N = 0), gray (ab = 0), the
automatic-colorization network when given (its N = 0 value), and Levin et al. 2004 edit propagation
(which does not learn) on the same hints. The released model's curve on ImageNet
(``reference_npy/czpt_psnrs_siggraph.npy``, 6x6 random patches) can be drawn beside ours for shape.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from chromaflow.color import lab_to_rgb, rgb_to_lab
from chromaflow.data.hints import paint_squares
from chromaflow.evaluate.edit_propagation import propagate
from chromaflow.evaluate.eval_set import eval_set_fingerprint, load_eval_items, load_rgb, to_uint8
from chromaflow.evaluate.metrics import psnr
from chromaflow.io import write_json, write_text
from chromaflow.logs import progress

log = logging.getLogger(__name__)

POINTS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)
PATCH = 7
ERROR_WINDOW = 25


def _psnr_of(l: torch.Tensor, ab: torch.Tensor, gt_rgb: torch.Tensor) -> float:
    """PSNR of ``cat(l, ab)`` (each ``(1, C, H, W)``) against uint8 ``gt_rgb (1, 3, H, W)``."""
    return float(psnr(to_uint8(lab_to_rgb(torch.cat([l, ab], 1).float())), gt_rgb)[0])


def _paint(gt_ab: torch.Tensor, ys: list[int], xs: list[int], patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hints ``(1, 2, H, W)`` and mask ``(1, 1, H, W)`` revealing the mean GT ab of each patch."""
    hint = torch.zeros_like(gt_ab)
    mask = torch.zeros_like(gt_ab[:, :1])
    means = [gt_ab[0, :, y : y + patch, x : x + patch].mean((1, 2)) for y, x in zip(ys, xs, strict=True)]
    paint_squares(hint, mask, list(zip(ys, xs, strict=True)), patch, means)
    return hint, mask


def _oracle_points(err: torch.Tensor, mask: torch.Tensor, n: int, patch: int) -> tuple[list[int], list[int]]:
    """``n`` patch corners at the largest windowed error, not overlapping revealed pixels or each other."""
    h, w = err.shape
    win = F.avg_pool2d(err[None, None], ERROR_WINDOW, stride=1, padding=ERROR_WINDOW // 2, count_include_pad=False)[
        0, 0
    ]
    taken = mask[0, 0].clone().bool()
    ys, xs = [], []
    for _ in range(n):
        # a corner is allowed if its patch covers no taken pixel
        blocked = F.max_pool2d(taken[None, None].float(), patch, stride=1, padding=patch // 2)[0, 0] > 0
        score = torch.where(blocked, torch.tensor(-1.0), win)
        score[h - patch + 1 :, :] = -1
        score[:, w - patch + 1 :] = -1
        i = int(score.flatten().argmax())
        if score.flatten()[i] < 0:
            break
        cy, cx = divmod(i, w)
        y, x = max(0, min(cy - patch // 2, h - patch)), max(0, min(cx - patch // 2, w - patch))
        ys.append(y)
        xs.append(x)
        taken[y : y + patch, x : x + patch] = True
    return ys, xs


@torch.no_grad()
def psnr_sweep(
    weights: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    points: tuple[int, ...] = POINTS,
    patch: int = PATCH,
    size: int = 256,
    split: str = "val",
    max_images: int | None = 50,
    seed: int = 0,
    placements: tuple[str, ...] = ("random", "oracle"),
    levin: bool = True,
    auto_weights: str | Path | None = None,
    reference: str | Path | None = None,
) -> dict:
    """Run the PSNR-vs-points protocol; write ``metrics.json``, ``report.md`` and ``psnr_vs_points.png``.

    Returns the metrics dict: per placement and row, the mean PSNR and its 95% CI at each N (``curves``),
    and the network's mean PSNR at each N as top-level scalars ``psnr_at_<N>_<placement>`` (dB; e.g.
    ``psnr_at_10_random``), which the registry records and the promotion gates read.
    """
    from chromaflow.models import colorize, load_weights
    from chromaflow.models.siggraph17 import guided_ab

    if size % 8:
        raise ValueError(f"psnr_sweep: size must be a multiple of 8, got {size}")
    if any(n < 0 for n in points) or list(points) != sorted(points):
        raise ValueError(f"psnr_sweep: points must be ascending and >= 0, got {points}")
    if not placements or set(placements) - {"random", "oracle"}:
        raise ValueError(f"psnr_sweep: placements must be among ('random', 'oracle'), got {placements}")
    model = load_weights(weights).eval()
    if model.config["name"] != "siggraph17":
        raise ValueError(
            f"psnr_sweep: {weights} holds a {model.config['name']!r} model, not the user-guided siggraph17"
        )
    auto = load_weights(auto_weights).eval() if auto_weights else None
    items, excluded = load_eval_items(data, split=split, size=size, max_images=max_images, seed=seed)
    if not items:
        raise ValueError(f"psnr_sweep: no colour images in {data} (split {split!r})")
    rows: dict[str, dict[str, list[list[float]]]] = {p: {} for p in placements}
    gray_psnr, auto_psnr = [], []
    for k, item in enumerate(progress(items, total=len(items), desc="psnr sweep")):
        rgb = load_rgb(item, size)[None]
        lab = rgb_to_lab(rgb)
        l, gt_ab = lab[:, :1], lab[:, 1:]
        gray_psnr.append(_psnr_of(l, torch.zeros_like(gt_ab), rgb))
        if auto is not None:
            auto_psnr.append(float(psnr(to_uint8(colorize(auto, rgb, size=size)), rgb)[0]))  # same input side
        rng = np.random.default_rng([seed, k])
        for placement in placements:
            ys: list[int] = []
            xs: list[int] = []
            ours_row, levin_row = [], []
            if placement == "random":
                all_y = rng.integers(0, size - patch + 1, max(points)).tolist()
                all_x = rng.integers(0, size - patch + 1, max(points)).tolist()
            pred_ab = mask = None  # the previous N's prediction and revealed patches
            for n in points:
                if placement == "random":
                    ys, xs = all_y[:n], all_x[:n]
                elif mask is not None and n > len(ys):
                    err = (pred_ab - gt_ab).pow(2).sum(1).sqrt()[0]
                    ny, nx = _oracle_points(err, mask, n - len(ys), patch)
                    ys, xs = ys + ny, xs + nx
                hint, mask = _paint(gt_ab, ys, xs, patch)
                pred_ab = guided_ab(model, l, hint, mask).ab
                ours_row.append(_psnr_of(l, pred_ab, rgb))
                if levin:
                    prop = propagate(l[0, 0].numpy(), hint[0].numpy(), mask[0, 0].numpy())
                    levin_row.append(_psnr_of(l, torch.from_numpy(prop)[None].float(), rgb))
            rows[placement].setdefault("Ours", []).append(ours_row)
            if levin:
                rows[placement].setdefault("Levin et al. 2004", []).append(levin_row)

    def summary(values: list[list[float]]) -> dict:
        a = np.asarray(values, np.float64)
        mean = a.mean(0)
        ci = 1.96 * a.std(0, ddof=1) / np.sqrt(len(a)) if len(a) > 1 else np.zeros_like(mean)
        return {"mean": mean.tolist(), "ci95": ci.tolist()}

    result = {
        "points": list(points),
        "patch": patch,
        "size": size,
        "n_images": len(items),
        "eval_set": eval_set_fingerprint([it.id for it in items]),
        "excluded": excluded,
        "curves": {p: {name: summary(v) for name, v in r.items()} for p, r in rows.items()},
        "gray_psnr": float(np.mean(gray_psnr)),
        "auto_psnr": float(np.mean(auto_psnr)) if auto_psnr else None,
    }
    result["psnr_auto_guided"] = result["curves"][placements[0]]["Ours"]["mean"][0] if 0 in points else None
    for placement in placements:  # top-level scalars (registry tags / promotion gates): psnr_at_10_random ...
        for n, m in zip(points, result["curves"][placement]["Ours"]["mean"], strict=True):
            result[f"psnr_at_{n}_{placement}"] = m
    out = Path(out)
    write_json(out / "metrics.json", result)
    _plot(result, out / "psnr_vs_points.png", reference)
    write_text(out / "report.md", _markdown(result))
    return result


def reference_points() -> np.ndarray:
    """The 26 point counts of ``czpt_psnrs_siggraph.npy``'s columns: ``round(10 ** arange(-0.1, 2.8, 0.1))``
    with the first set to 0, made unique (0, 1, 2, 3, 4, 5, 6, 8, 10, 13, ..., 398, 501), as in the released
    sweep script."""
    n = np.round(10 ** np.arange(-0.1, 2.8, 0.1))
    n[0] = 0
    return np.unique(n.astype(int))


def _plot(result: dict, path: Path, reference: str | Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chromaflow.evaluate.report import figure_png
    from chromaflow.io import write_bytes

    x = np.maximum(np.asarray(result["points"], float), 0.5)  # log axis: 0 points drawn at 0.5
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for placement, rows in result["curves"].items():
        for name, s in rows.items():
            m, c = np.asarray(s["mean"]), np.asarray(s["ci95"])
            style = "-" if placement == "random" else "--"
            ax.plot(x, m, style, marker="o", ms=3, label=f"{name} ({placement})")
            ax.fill_between(x, m - c, m + c, alpha=0.2)
    ax.axhline(result["gray_psnr"], color="gray", lw=1, ls=":", label="gray (ab = 0)")
    if reference is not None and Path(reference).is_file():
        ref = np.load(reference)
        ax.plot(
            np.maximum(reference_points(), 0.5),
            ref.mean(0),
            color="k",
            lw=1,
            label="released model, ImageNet, 6x6 (shape only)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("number of revealed points (0 drawn at 0.5)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    write_bytes(path, figure_png(fig))
    plt.close(fig)


def _markdown(result: dict) -> str:
    from chromaflow.evaluate.report import markdown_table

    cols = ["method"] + [str(n) for n in result["points"]]
    rows = []
    for placement, r in result["curves"].items():
        for name, s in r.items():
            rows.append(
                [f"{name}, {placement}"] + [f"{m:.2f} ± {c:.2f}" for m, c in zip(s["mean"], s["ci95"], strict=True)]
            )
    lines = [
        f"# PSNR vs revealed points ({result['n_images']} images, {result['size']} px, {result['patch']}x"
        f"{result['patch']} patches)",
        "",
        markdown_table(rows, cols),
        "",
        f"Gray (ab = 0): {result['gray_psnr']:.2f} dB. "
        + (f"Automatic colorization network: {result['auto_psnr']:.2f} dB." if result["auto_psnr"] else ""),
        "",
        "Thesis Table 3.1 (ImageNet, 256 px): gray 22.8 dB, Ours (Local) automatic 24.4 dB; Fig. 3.6 climbs to",
        "about 32 dB at 500 random points. Our data and model size differ: compare the shape, not the level.",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="siggraph17 weights (.safetensors)")
    parser.add_argument("--data", required=True, help="prepared dir or image folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--points", type=lambda s: tuple(int(v) for v in s.split(",")), default=POINTS)
    parser.add_argument("--patch", type=int, default=PATCH)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-images", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--placements", type=lambda s: tuple(p.strip() for p in s.split(",") if p.strip()),
                        default=("random", "oracle"), help="comma-separated: random, oracle")  # fmt: skip
    parser.add_argument("--no-levin", action="store_true", help="skip the edit-propagation baseline")
    parser.add_argument("--auto-weights", help="automatic colorization weights for its 0-point row")
    parser.add_argument("--reference", help="reference_npy/czpt_psnrs_siggraph.npy (drawn for shape)")


def main(args: argparse.Namespace) -> int:
    try:
        result = psnr_sweep(
            args.weights,
            args.data,
            args.out,
            points=args.points,
            patch=args.patch,
            size=args.size,
            split=args.split,
            max_images=args.max_images,
            seed=args.seed,
            placements=args.placements,
            levin=not args.no_levin,
            auto_weights=args.auto_weights,
            reference=args.reference,
        )
    except (ValueError, FileNotFoundError) as e:
        log.error("evaluate guided: %s", e)
        return 2
    print(_markdown(result))
    return 0
