"""Quality of the served output by network input side, measured at each photo's own resolution.

    .venv/bin/python bench/served_input_size.py                       # shipped models, 100 photos
    .venv/bin/python bench/served_input_size.py --data runs/ship/in1k --images 200 --sizes 64,128,256

Both services resize the photo's L to ``size x size`` for the network and upsample the predicted ab back
to the photo (``models.colorize`` and ``serving.guided.guided_batch``, the functions the handlers call),
so ``handler.size`` in ``serving/*model-config.yaml`` is a quality setting: a model trained on 64 px images
sees objects at another scale when fed 256 px. For each size this prints, over the colour photos of a
prepared split: the automatic model's PSNR and colourfulness (M3), and the guided model's PSNR with 0, 5,
10 and 50 hints at random pixels of the photo (the ground-truth ab of that pixel, 3x3 model-pixel patch).
Anchor: gray (ab = 0) at the photo's resolution, and the ground truth's colourfulness.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
POINTS = (0, 5, 10, 50)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "runs" / "ship" / "in1k", help="a `chromaflow prepare` folder")
    ap.add_argument("--split", default="val")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from chromaflow.color import lab_to_rgb, rgb_to_lab
    from chromaflow.data import ShardDataset
    from chromaflow.evaluate.eval_set import to_uint8
    from chromaflow.evaluate.metrics import colorfulness_m3, psnr
    from chromaflow.models import colorize
    from chromaflow.models.shipped import load_shipped
    from chromaflow.serving.guided import GuidedInput, Hint, guided_batch

    ds = ShardDataset(args.data, split=args.split, crop=8, train=True)  # decode() keeps the stored resolution
    photos = [torch.from_numpy(np.array(ds.decode(i))).permute(2, 0, 1) for i in range(min(args.images, len(ds)))]
    auto, _ = load_shipped("colorization")
    guided, _ = load_shipped("guided")
    rng = np.random.default_rng(args.seed)
    labs = [rgb_to_lab(x[None].float() / 255)[0] for x in photos]
    n_clicks = max(POINTS)
    clicks = [
        list(zip(rng.uniform(0, x.shape[2], n_clicks), rng.uniform(0, x.shape[1], n_clicks), strict=True))
        for x in photos
    ]

    gray = [to_uint8(lab_to_rgb(torch.cat([lab[:1], torch.zeros_like(lab[1:])])[None])) for lab in labs]
    gray_psnr = np.mean([float(psnr(g, x[None])) for g, x in zip(gray, photos, strict=True)])
    gt_colour = np.mean([float(colorfulness_m3(x[None])) for x in photos])
    print(f"# {len(photos)} colour photos of {args.data} ({args.split}), median side "
          f"{int(np.median([max(x.shape[1:]) for x in photos]))} px; 1 torch thread")  # fmt: skip
    print(f"anchor: gray PSNR {gray_psnr:.2f} dB; ground-truth colourfulness {gt_colour:.1f}")
    print("size | auto PSNR  colourfulness | guided PSNR at " + " / ".join(map(str, POINTS)) + " points")
    for size in map(int, args.sizes.split(",")):
        a_psnr, a_col, g_psnr = [], [], {n: [] for n in POINTS}
        for x, lab, pts in zip(photos, labs, clicks, strict=True):
            out = to_uint8(colorize(auto, x[None], size=size))
            a_psnr.append(float(psnr(out, x[None])))
            a_col.append(float(colorfulness_m3(out)))
            for n in POINTS:
                hints = [Hint(x=px, y=py, ab=(float(lab[1, int(py), int(px)]), float(lab[2, int(py), int(px)])))
                         for px, py in pts[:n]]  # fmt: skip
                res = guided_batch(guided, [GuidedInput(rgb=x, hints=hints)], size=size, patch=3)[0]
                g_psnr[n].append(float(psnr(to_uint8(res.rgb)[None], x[None])))
        cols = " / ".join(f"{np.mean(v):.2f}" for v in g_psnr.values())
        print(f"{size:4d} | {np.mean(a_psnr):9.2f}  {np.mean(a_col):13.1f} | {cols}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
