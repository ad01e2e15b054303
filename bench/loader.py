"""Input pipeline vs training step: ``ShardDataset`` + ``DataLoader`` images/s against the images/s of
the colorization train step on the same device, in the same run (the loader must outpace the step).

    python bench/loader.py [--source data/sample | ../shared/datasets/imagenet-sample-1000] --workers 0 2

Shards are prepared into a temporary folder with ``chromaflow.data.prepare`` (max side 256).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chromaflow.data.prepare import prepare  # noqa: E402
from chromaflow.train.distributed import pick_device  # noqa: E402
from chromaflow.train.engine import StreamSampler, TrainConfig, fit  # noqa: E402
from chromaflow.train.tasks.colorization import ColorizationTask, collate  # noqa: E402


def loader_rate(ds, batch: int, workers: int, n_batches: int) -> float:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=StreamSampler(len(ds), batch),
                                         num_workers=workers, collate_fn=collate)  # fmt: skip
    it = iter(loader)
    next(it)  # worker start-up excluded
    t = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return batch * n_batches / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=str(ROOT / "data" / "sample"))
    p.add_argument("--crop", type=int, default=176)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    from chromaflow.data import ShardDataset

    dev = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        man = prepare(args.source, Path(tmp) / "prepared", max_side=256, val_fraction=0.0)
        print(f"prepared {man['counts']} from {args.source} in {time.perf_counter() - t:.1f}s")
        ds = ShardDataset(Path(tmp) / "prepared", split="train", crop=args.crop, train=True)
        rates = {w: loader_rate(ds, args.batch_size, w, args.batches) for w in args.workers}
        task = ColorizationTask(ds, loss="rebalanced", width=args.width)
        m = fit(task, TrainConfig(out=str(Path(tmp) / "run"), steps=args.steps, batch_size=args.batch_size,
                                  device=str(dev), log_every=10**9))  # fmt: skip
    step = m["images_per_s"]
    print(f"step    eccv16 width {args.width} on {dev}, batch {args.batch_size} x {args.crop}px : {step:8.1f} images/s "
          "(includes its own loading, workers=0)")  # fmt: skip
    for w, r in rates.items():
        print(f"loader  ShardDataset+DataLoader workers={w}            : {r:8.1f} images/s  "
              f"loader/step = {r / step:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
