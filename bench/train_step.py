"""Train-step throughput: our engine (``fit``: bf16 autocast + channels_last on CUDA, optional compile)
vs a plain fp32 eager loop on the same model, batch and loss (the anchor), in the same run.

    python bench/train_step.py --width 0.25 --crop 176 --batch-size 16 --steps 20 [--compile]

Both sides do the whole colorization step: RGB->Lab on the device, area-downsample + soft-encode ab,
forward, rebalanced soft-CE, backward, Adam. Prints images/s, the ratio, and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chromaflow import color  # noqa: E402
from chromaflow.models import create_model  # noqa: E402
from chromaflow.train.distributed import pick_device  # noqa: E402
from chromaflow.train.engine import TrainConfig, fit  # noqa: E402
from chromaflow.train.losses import classification_loss  # noqa: E402
from chromaflow.train.tasks.colorization import ColorizationTask  # noqa: E402


class Repeat(Dataset):
    """The same ``(B, 3, crop, crop)`` uint8 batch, item by item (no decoding cost on either side)."""

    def __init__(self, rgb: torch.Tensor) -> None:
        self.rgb = rgb

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, i: int) -> dict:
        return {"rgb": self.rgb[i], "id": str(i), "label": None}


def peak_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process max RSS (cumulative on CPU)


def plain_loop(rgb: torch.Tensor, args, dev: torch.device) -> float:
    """The anchor: fp32, eager, contiguous, one batch reused; returns images/s over the timed steps."""
    torch.manual_seed(0)
    model = create_model("eccv16", width=args.width).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, betas=(0.9, 0.99), weight_decay=1e-3)
    cw = torch.as_tensor(color.rebalance_weights(color.load_prior()), dtype=torch.float32, device=dev)
    x = rgb.to(dev)

    def step() -> None:
        lab = color.rgb_to_lab(x)
        out = model((lab[:, :1] - 50.0) / 100.0)
        ab = F.interpolate(lab[:, 1:], size=out.shape[-2:], mode="area")
        idx, w = color.encode_soft(ab, k=args.soft_k)
        loss = classification_loss(out, idx, w, cw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())  # the engine syncs on the loss each step too

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(args.steps - 1):
        step()
    return args.batch_size * (args.steps - 1) / (time.perf_counter() - t)


def engine(rgb: torch.Tensor, args, dev: torch.device) -> float:
    task = ColorizationTask(Repeat(rgb), loss="rebalanced", width=args.width, soft_k=args.soft_k)
    with tempfile.TemporaryDirectory() as out:
        m = fit(task, TrainConfig(out=out, steps=args.steps, batch_size=args.batch_size, device=str(dev),
                                  compile=args.compile, log_every=10**9))  # fmt: skip
    return m["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--crop", type=int, default=176)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--soft-k", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()
    dev = pick_device(args.device)
    rgb = torch.rand(args.batch_size, 3, args.crop, args.crop, generator=torch.Generator().manual_seed(0)) * 255
    rgb = rgb.to(torch.uint8)
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}), threads "
          f"{torch.get_num_threads()}, eccv16 width {args.width}, batch {args.batch_size} x {args.crop}px, "
          f"{args.steps} steps (first excluded)")  # fmt: skip
    anchor = plain_loop(rgb, args, dev)
    mem_anchor = peak_mb(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    ours = engine(rgb, args, dev)
    mem_ours = peak_mb(dev)
    label = "bf16+channels_last" if dev.type == "cuda" else "fp32"
    print(f"anchor  plain fp32 eager loop : {anchor:8.1f} images/s  peak {mem_anchor:8.0f} MB")
    print(f"ours    engine ({label}{', compiled' if args.compile else ''}) : {ours:8.1f} images/s  "
          f"peak {mem_ours:8.0f} MB")  # fmt: skip
    print(f"ratio   ours / anchor = {ours / anchor:.2f}x")


if __name__ == "__main__":
    main()
