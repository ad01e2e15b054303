"""Data-parallel scaling of the engine: N processes (torchrun, gloo on CPU / nccl on CUDA) against one, same
global batch, plus the time of one gradient all-reduce (a tensor the size of the model's parameters).

    python bench/ddp_scaling.py                                   # CPU: 2 processes x 1 thread vs 1 x 1 thread
    python bench/ddp_scaling.py --procs 2 --width 0.25 --crop 64 --batch-size 32 --steps 12
    python bench/ddp_scaling.py --device cuda --procs 8 --width 1 --crop 176 --batch-size 256   # one GPU node

Both sides run :func:`chromaflow.train.engine.fit` on the colorization task (soft-encoded cross-entropy) over
an in-memory batch of random images (no decoding cost), and report the engine's ``images_per_s`` (steps after
the first). The all-reduce figure is ``dist.all_reduce`` of a float32 tensor of ``n_params`` elements, timed
alone (DDP buckets it and overlaps it with the backward pass, so this is the cost it hides, not an addition).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chromaflow.train import distributed  # noqa: E402
from chromaflow.train.engine import TrainConfig, fit  # noqa: E402
from chromaflow.train.tasks.colorization import ColorizationTask  # noqa: E402

ALLREDUCE_REPS = 20


class Images(torch.utils.data.Dataset):
    """``n`` random uint8 ``(3, crop, crop)`` images (fixed seed), as ``ShardDataset`` items."""

    def __init__(self, n: int, crop: int) -> None:
        self.rgb = torch.randint(0, 256, (n, 3, crop, crop), generator=torch.Generator().manual_seed(0)).byte()

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, i: int) -> dict:
        return {"rgb": self.rgb[i], "id": str(i), "label": None}


def allreduce_ms(n: int, device: torch.device) -> float | None:
    """Mean milliseconds of one all-reduce of ``n`` float32 values (None when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    t = torch.ones(n, device=device)
    for _ in range(3):
        dist.all_reduce(t)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(ALLREDUCE_REPS):
        dist.all_reduce(t)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / ALLREDUCE_REPS * 1e3


def worker(args: argparse.Namespace) -> dict:
    """One process of the measurement: train, then time the all-reduce; rank 0 returns the numbers."""
    torch.set_num_threads(args.threads)
    task = ColorizationTask(Images(args.images, args.crop), loss="softce", width=args.width)
    with tempfile.TemporaryDirectory() as out:
        m = fit(task, TrainConfig(out=out, steps=args.steps, batch_size=args.batch_size, device=args.device,
                                  log_every=args.steps))  # fmt: skip
    info = distributed.setup(args.device)
    ms = allreduce_ms(m["n_params"], info.device)
    return {"world": m["world"], "images_per_s": m.get("images_per_s"), "n_params": m["n_params"], "allreduce_ms": ms}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--device", default="cpu")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16, help="global batch (all processes)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker_out:  # a process under torchrun
        res = worker(args)
        if int(os.environ.get("RANK", "0")) == 0:
            Path(args.worker_out).write_text(json.dumps(res))
        distributed.cleanup()
        return
    one = worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "multi.json"
        argv = [a for a in sys.argv[1:]]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.procs),
               __file__, *argv, "--worker-out", str(out)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        multi = json.loads(out.read_text())
    ratio = multi["images_per_s"] / one["images_per_s"]
    print(f"device {args.device}, width {args.width}, crop {args.crop}, global batch {args.batch_size}, "
          f"{args.steps} steps, {args.threads} thread(s)/process, {one['n_params']} params")  # fmt: skip
    print(f"1 process : {one['images_per_s']:8.1f} images/s")
    print(f"{args.procs} processes: {multi['images_per_s']:8.1f} images/s  (x{ratio:.2f}; ideal x{args.procs})")
    print(f"all-reduce of the gradients ({one['n_params'] * 4 / 2**20:.1f} MiB fp32) over {args.procs} processes: "
          f"{multi['allreduce_ms']:.2f} ms/step")  # fmt: skip


if __name__ == "__main__":
    main()
