"""Cost of one click on the guided endpoint: ours vs the original interactive GUI's work per click.

    .venv/bin/python bench/guided_request.py                  # thesis width, 256 px input, 768x512 photo
    .venv/bin/python bench/guided_request.py --width 0.25 --size 64 --reps 20

A click asks for the colorized photo and the suggested colours at the clicked pixel. Ours
(``serving.guided.guided_batch`` + ``palette_at``, what the handler calls): one network pass gives both the
ab and the distribution, then weighted k-means on the 313 bins. The anchor does what the released GUI does
(ideepcolor: a colorization model and a separate distribution model, each run on the click, then 25,000
samples drawn from the distribution at the pixel and clustered by scikit-learn KMeans, K = 9): two passes of
the same network through the same functions, then ``bench/palette_kmeans.sklearn_palette``. The network's
weights are random (its cost does not depend on them); the photo is a real one (data/sample/kodim05.jpg).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from threadpoolctl import threadpool_limits

from chromaflow.models import create_model
from chromaflow.serving.guided import GuidedInput, Hint, guided_batch, palette_at
from palette_kmeans import sklearn_palette

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "data" / "sample" / "kodim05.jpg"
PHOTO_SIZE = (768, 512)  # (W, H)
N_HINTS = 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=1.0, help="siggraph17 channel multiplier (1 = thesis)")
    ap.add_argument("--size", type=int, default=256, help="network input side (handler.size)")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    threadpool_limits(1)  # sklearn's OpenMP too: both sides on one thread
    model = create_model("siggraph17", width=args.width).eval()
    rgb = torch.from_numpy(np.array(Image.open(PHOTO).convert("RGB").resize(PHOTO_SIZE))).permute(2, 0, 1)
    w, h = PHOTO_SIZE
    rng = np.random.default_rng(0)
    hints = [Hint(x=float(x), y=float(y), rgb=(200.0, 60.0, 40.0)) for x, y in rng.integers(0, (w, h), (N_HINTS, 2))]
    item = GuidedInput(rgb=rgb, hints=hints, point=(w / 3, h / 2))
    colorize = GuidedInput(rgb=rgb, hints=hints)  # the anchor's colorization model: no distribution read

    def ours() -> None:
        res = guided_batch(model, [item], size=args.size)[0]
        palette_at(res.probs, res.l_point)

    def anchor() -> None:
        guided_batch(model, [colorize], size=args.size)
        res = guided_batch(model, [item], size=args.size)[0]
        sklearn_palette(res.probs, rng)

    ours()  # warm-up: first-call allocations and imports
    anchor()
    times = {}
    for name, fn in (("ours", ours), ("anchor", anchor)):
        t0 = time.perf_counter()
        for _ in range(args.reps):
            fn()
        times[name] = (time.perf_counter() - t0) / args.reps
    print(
        f"guided click, siggraph17 width {args.width:g} at {args.size} px, {w}x{h} photo, {N_HINTS} hints, 1 thread: "
        f"ours {times['ours']:.3f} s, original GUI's work {times['anchor']:.3f} s, "
        f"speed-up {times['anchor'] / times['ours']:.2f}x"
    )


if __name__ == "__main__":
    main()
