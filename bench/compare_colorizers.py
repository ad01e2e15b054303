"""Colorizers side by side on held-out photos, each at its own network input size, with bootstrap CIs.

    .venv/bin/python bench/compare_colorizers.py \\
        --model "eccv16 w1/4=weights/colorization/model.safetensors@64" \\
        --model "squeeze=weights/squeeze_colorizer/model.safetensors@128" \\
        --images ../shared/datasets/imagenet-sample-1000 --held-out-half --size 256 \\
        --prior tin=runs/ship/tin_stats/prior.npy --out runs/compare/in1k.json

``chromaflow evaluate`` feeds every model the same network size (its ``--size``, also the evaluation size);
here each model sees L resized to its own served size (``NAME=PATH@SIZE``) and its ab is upsampled bilinearly
(``@SIZE:guided``: by the guided filter) to the evaluation image by ``models.colorize`` (the served path), so
models trained at different scales are compared as they are served. Evaluation images: the short side resized to ``--size`` (bicubic) and centre-
cropped (``--size 0``: each photo at its own resolution), grayscale photos excluded (``evaluate``'s loader).
``--held-out-half`` keeps only the photos that ``chromaflow prepare --val-fraction 0.5`` puts in ``val`` (the
imagenet-sample half that no shipped model trained on). Metrics on uint8 RGB as in ``evaluate``: AuC raw and
rebalanced (Eq. 2.4, lambda 0; ImageNet prior and each ``--prior``), pixels pooled over the set; PSNR and
LPIPS (SqueezeNet trunk, official linear weights v0.1) to the ground truth, mean over photos. CIs: 95%
percentile bootstrap over photos (``--boot`` resamples, paired: every row uses the same resample), and the
paired difference of each model to the first one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SQUEEZE = REPO.parent / "shared/datasets/squeezenet1_1/squeezenet1_1_caffe_folded_torchvision_norm_tvkeys.pth"


def _photo(source) -> torch.Tensor:
    """uint8 ``(3, H, W)`` of a photo at its own resolution (``source``: a path or an open file)."""
    from PIL import Image, ImageOps

    with Image.open(source) as im:
        return torch.from_numpy(np.asarray(ImageOps.exif_transpose(im).convert("RGB")).copy()).permute(2, 0, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, metavar="NAME=PATH@SIZE[:guided]",
                    help="a model, its network input side, and optionally :guided chroma upsampling")  # fmt: skip
    ap.add_argument("--images", required=True, help="a folder of photos (or a prepared dir, split val)")
    ap.add_argument("--held-out-half", action="store_true", help="keep hash_split(id, 0.5) == 'val' only")
    ap.add_argument("--size", type=int, default=256, help="evaluation side (0: each photo's own resolution)")
    ap.add_argument("--prior", action="append", default=[], metavar="NAME=prior.npy")
    ap.add_argument("--lpips-trunk", default=str(SQUEEZE))
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="JSON of the table and per-photo values")
    ap.add_argument("--reuse", help="an earlier --out JSON of the same photos: its rows are taken, not recomputed")
    args = ap.parse_args()

    from chromaflow.color import lab_to_rgb, load_prior, rgb_to_lab
    from chromaflow.data.prepare import hash_split
    from chromaflow.evaluate import metrics as M
    from chromaflow.evaluate.eval_set import load_eval_items, load_rgb, to_uint8
    from chromaflow.models import colorize, load_weights
    from chromaflow.models.lpips import build_lpips

    old = json.loads(Path(args.reuse).read_text()) if args.reuse else {"per_photo": {}, "models": {}}
    models = []
    for spec in args.model:
        name, rest = spec.split("=", 1)
        path, size = rest.rsplit("@", 1)
        size, _, upsample = size.partition(":")  # NAME=PATH@SIZE[:guided]
        models.append((name, load_weights(path), int(size), path, upsample or "bilinear"))
    priors = {"ImageNet": torch.as_tensor(load_prior(), dtype=torch.float64)}
    for spec in args.prior:
        name, path = spec.split("=", 1)
        priors[name] = torch.as_tensor(np.load(path), dtype=torch.float64)
    class_w = {k: M.auc_class_weights(p) for k, p in priors.items()}
    lp = build_lpips("squeeze", trunk=args.lpips_trunk, lin="official")

    items, excluded = load_eval_items(args.images, split="val", size=max(args.size, 32))
    if args.held_out_half:
        items = [it for it in items if hash_split(it.id, 0.5) == "val"]
    ids = [it.id for it in items]
    reused = [r for r in old["per_photo"] if r != "ids"]
    if reused and old["per_photo"]["ids"] != ids:
        raise ValueError(f"--reuse {args.reuse}: computed on other photos")
    if reused and set(old["priors"]) != {"ImageNet", *(s.split("=", 1)[0] for s in args.prior)}:
        raise ValueError(f"--reuse {args.reuse}: other priors {sorted(old['priors'])}")
    rows = [*reused, *(r for r in ["Gray", *(m[0] for m in models)] if r not in reused)]
    todo = [r for r in rows if r not in reused]
    per = {r: old["per_photo"][r] for r in reused} | {r: {"psnr": [], "lpips": [], "hist": {}} for r in todo}
    for r in todo:
        per[r]["hist"] = {k: [] for k in ("raw", *priors)}  # per photo: (AUC_MAX + 2,) histograms
    for it in items:
        if not todo:
            break
        gt = (load_rgb(it, args.size) if args.size else _photo(it.source()))[None]
        lab = rgb_to_lab(gt)
        L, gt_ab = lab[:, :1], lab[:, 1:]
        pw = {k: M.pixel_class_weights(gt_ab, w) for k, w in class_w.items()}
        outs = {}
        if "Gray" in todo:
            outs["Gray"] = to_uint8(lab_to_rgb(torch.cat([L, torch.zeros_like(gt_ab)], 1)))
        for name, model, size, _, upsample in models:
            if name in todo:
                outs[name] = to_uint8(colorize(model, gt, size=size, upsample=upsample))
        for r, o in outs.items():
            ab = rgb_to_lab(o)[:, 1:]
            for key in ("raw", *priors):
                m = M.AucMeter()
                m.update(ab, gt_ab, None if key == "raw" else pw[key])
                per[r]["hist"][key].append(m.hist.tolist())
            per[r]["psnr"].append(float(M.psnr(o, gt)[0]))
            with torch.no_grad():
                per[r]["lpips"].append(float(lp(o.float() / 255, gt.float() / 255).flatten()[0]))

    n = len(items)
    rng = np.random.default_rng(args.seed)
    boots = [rng.integers(0, n, n) for _ in range(args.boot)]

    def auc_of(h: np.ndarray, idx) -> float:
        s = h[idx].sum(0)
        return float(np.cumsum(s)[: M.AUC_MAX_THRESHOLD + 1].mean() / s.sum() * 100)

    def stat(r: str, key: str, idx) -> float:
        if key in per[r]:
            return float(np.mean(np.asarray(per[r][key])[idx]))
        return auc_of(np.asarray(per[r]["hist"][key]), idx)

    keys = ["raw", *priors, "psnr", "lpips"]
    table = {}
    everything = np.arange(n)
    first = next(r for r in rows if r != "Gray")  # the reference of the paired differences
    for r in rows:
        table[r] = {}
        for k in keys:
            b = np.array([stat(r, k, i) for i in boots])
            entry = {"value": stat(r, k, everything), "ci95": [float(x) for x in np.percentile(b, [2.5, 97.5])]}
            if r not in ("Gray", first):
                d = b - np.array([stat(first, k, i) for i in boots])
                entry["diff_vs_" + first] = stat(r, k, everything) - stat(first, k, everything)
                entry["diff_ci95"] = [float(x) for x in np.percentile(d, [2.5, 97.5])]
            table[r][k] = entry
    result = {
        "images": args.images,
        "n_images": n,
        "held_out_half": args.held_out_half,
        "size": args.size,
        "excluded": len(excluded),
        "models": old["models"]
        | {name: {"path": path, "network_size": size, "upsample": up} for name, _, size, path, up in models},
        "priors": {"ImageNet": "shipped ImageNet prior", **dict(s.split("=", 1) for s in args.prior)},
        "lpips": "squeeze trunk (same ImageNet SqueezeNet 1.1 as the new model's trunk), official lin v0.1",
        "boot": args.boot,
        "table": table,
        "per_photo": {"ids": ids, **per},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    heads = ["AuC raw", *(f"AuC rebal ({k} prior)" for k in priors), "PSNR", "LPIPS"]
    print(f"{args.images}: {n} photos, eval size {args.size or 'native'}, 95% bootstrap CIs ({args.boot})")
    print("| row | net px | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 2) + "|")
    sizes = {name: m["network_size"] for name, m in result["models"].items()}
    for r in rows:
        cells = []
        for k in keys:
            e = table[r][k]
            c = (
                f"{e['value']:.2f} [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}]"
                if k != "lpips"
                else (f"{e['value']:.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]")
            )
            if "diff_ci95" in e:
                f = ".3f" if k == "lpips" else ".2f"
                c += f" (d {e['diff_vs_' + first]:+{f}} [{e['diff_ci95'][0]:+{f}}, {e['diff_ci95'][1]:+{f}}])"
            cells.append(c)
        print(f"| {r} | {sizes.get(r, '-')} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
