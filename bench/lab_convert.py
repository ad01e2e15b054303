"""Benchmark: sRGB -> Lab of a 1024x1024 uint8 photo, chromaflow (torch, uint8 LUT path) vs skimage.rgb2lab.

    .venv/bin/python bench/lab_convert.py [--image PATH] [--repeats 5] [--device cpu]

Prints ours, the anchor, and the speed ratio in one run (best of ``--repeats`` each: the run least disturbed by
other load on a shared machine), and checks agreement.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import color as skcolor
from threadpoolctl import threadpool_limits

from chromaflow.color import rgb_to_lab

REPO = Path(__file__).resolve().parents[1]


def _default_image() -> Path:
    kodak = REPO.parent / "shared" / "datasets" / "kodak24" / "kodim23.png"
    if kodak.exists():
        return kodak
    return sorted(p for p in (REPO / "data" / "sample").rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})[0]


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of both sides (default: one, like the anchor)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # the anchor's BLAS/OpenMP pools too: both sides on the same threads
    path = args.image or _default_image()
    img = np.array(Image.open(path).convert("RGB").resize((1024, 1024), Image.BICUBIC))  # (1024, 1024, 3) uint8
    x = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous().to(args.device)  # (1, 3, 1024, 1024)

    def ours() -> torch.Tensor:
        out = rgb_to_lab(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        return out

    t_ours = _time(ours, args.repeats)
    t_sk = _time(lambda: skcolor.rgb2lab(img), args.repeats)
    err = float(np.abs(ours()[0].permute(1, 2, 0).double().cpu().numpy() - skcolor.rgb2lab(img)).max())
    print(
        f"image {path.name} resized to 1024x1024 uint8, device {args.device}, torch threads {torch.get_num_threads()}"
    )
    print(f"ours    rgb_to_lab (uint8 LUT, float32): {t_ours * 1e3:8.1f} ms")
    print(f"anchor  skimage.color.rgb2lab (float64): {t_sk * 1e3:8.1f} ms")
    print(f"ratio   anchor / ours: {t_sk / t_ours:.2f}x   (goal >= 3x)   max |diff| {err:.2e}")


if __name__ == "__main__":
    main()
