"""Train-step throughput: our engine (``fit``: bf16 autocast + channels_last on CUDA, optional compile) against
the network alone and a plain fp32 eager loop on the same model, batch and loss (the anchor), in the same run.

    python bench/train_step.py --width 0.25 --crop 176 --batch-size 16 --steps 20 [--compile]   # engine vs anchor
    python bench/train_step.py --stages            # per-stage table, eccv16 + siggraph17, width 1, 64/176 px, b256
    python bench/train_step.py --stages --quick    # the same table at toy sizes (CPU, seconds)

Both sides do the whole step: RGB->Lab on the device, area-downsample + soft-encode ab (and, for siggraph17, the
simulated hints), forward, loss, backward, Adam. ``--stages`` also times each stage alone, the network-only step
(targets precomputed: the ceiling), and the model FLOP utilization (MFU) of the network and the engine against a
bf16 matmul rate measured on the same device. It imports nothing beyond torch and numpy (and chromaflow's
training path, which needs pyarrow, safetensors and pillow; no mlflow, kfp or dvc).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chromaflow import color  # noqa: E402
from chromaflow.data.hints import simulate_local_hints  # noqa: E402
from chromaflow.train.distributed import pick_device  # noqa: E402
from chromaflow.train.engine import TrainConfig, fit  # noqa: E402
from chromaflow.train.losses import classification_loss  # noqa: E402
from chromaflow.train.tasks.colorization import ColorizationTask  # noqa: E402
from chromaflow.train.tasks.guided import GuidedTask  # noqa: E402


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


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn: Callable[[], object], dev: torch.device, reps: int, warmup: int = 2) -> float:
    """Seconds per call of ``fn`` (device work included), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(dev)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(dev)
    return (time.perf_counter() - t) / reps


def make_task(model: str, width: float, rgb: torch.Tensor, soft_k: int) -> ColorizationTask:
    if model == "eccv16":
        return ColorizationTask(Repeat(rgb), loss="rebalanced", width=width, soft_k=soft_k)
    return GuidedTask(Repeat(rgb), width=width)


def plain_loop(task: ColorizationTask, rgb: torch.Tensor, steps: int, dev: torch.device) -> float:
    """The anchor: fp32, eager, contiguous, one batch reused, the task's own loss; images/s over the timed steps."""
    torch.manual_seed(0)
    model = task.build_model().to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, betas=(0.9, 0.99), weight_decay=1e-3)
    batch = {"rgb": rgb.to(dev)}

    def step() -> None:
        loss, _ = task.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())  # the engine syncs on the loss each step too

    return len(rgb) / timed(step, dev, max(steps - 1, 1), warmup=1)


def engine(task: ColorizationTask, steps: int, batch: int, dev: torch.device, compile_: bool, workers: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(out=out, steps=steps, batch_size=batch, device=str(dev), compile=compile_,
                          log_every=10**9, workers=workers)  # fmt: skip
        return fit(task, cfg)["images_per_s"]


def matmul_rate(dev: torch.device, n: int) -> float:
    """Measured bf16 matmul FLOP/s of ``n x n`` products on ``dev`` (the MFU denominator)."""
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    return 2 * n**3 / timed(lambda: a @ b, dev, reps=20 if dev.type == "cuda" else 3)


def flops_per_image(task: ColorizationTask, size: int) -> float:
    """Forward + backward FLOPs of the network for one ``size`` px image, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = task.build_model()
    x = torch.zeros(1, 1, size, size, device="meta")
    extra = () if isinstance(task, ColorizationTask) and not isinstance(task, GuidedTask) else (
        torch.zeros(1, 2, size, size, device="meta"), torch.zeros(1, 1, size, size, device="meta"), None)  # fmt: skip
    with FlopCounterMode(display=False) as counter:
        out = model(x, *extra)
        out = out if isinstance(out, torch.Tensor) else out.logits + out.ab.sum()
        out.float().sum().backward()
    return counter.get_total_flops()


def stages(args: argparse.Namespace, dev: torch.device) -> None:
    cuda = dev.type == "cuda"
    peak = matmul_rate(dev, args.matmul_size)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda)
    fmt = torch.channels_last if cuda else torch.contiguous_format
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if cuda else 'cpu'}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, {'bf16 + channels_last' if cuda else 'fp32'}, batch {args.batch_size}, "
          f"width {args.width}; bf16 matmul {args.matmul_size}^2: {peak / 1e12:.1f} TFLOP/s measured")  # fmt: skip
    head = f"{'model':<11}{'px':>5} {'lab ms':>8} {'hints ms':>9} {'targets ms':>11} {'network ms':>11} "
    head += f"{'net img/s':>10} {'engine img/s':>13} {'eng/net':>8} {'plain img/s':>12} {'eng/plain':>10} "
    print(head + f"{'GFLOP/img':>10} {'MFU net':>8} {'MFU eng':>8}")
    for name in args.models:
        for size in args.sizes:
            g = torch.Generator().manual_seed(size)
            rgb = torch.randint(0, 256, (args.batch_size, 3, size, size), dtype=torch.uint8, generator=g)
            task = make_task(name, args.width, rgb, args.soft_k)
            task.prepare(dev)
            x = rgb.to(dev).contiguous(memory_format=fmt)
            guided = isinstance(task, GuidedTask)
            t_lab = timed(lambda x=x: color.rgb_to_lab(x), dev, args.reps)
            lab = color.rgb_to_lab(x)
            l_in, ab = (lab[:, :1] - 50.0) / 100.0, lab[:, 1:]
            t_hints = timed(lambda ab=ab: simulate_local_hints(ab), dev, args.reps) if guided else float("nan")
            hint, mask = simulate_local_hints(ab)
            cw = task._class_weights_on(dev)

            def targets(ab=ab, size=size, task=task, cw=cw):
                small = F.interpolate(ab, size=(size // 4, size // 4), mode="area")
                idx, w = color.encode_soft(small, k=task.soft_k, sigma=task.soft_sigma)
                return idx, w, None if cw is None else cw[idx[:, 0]]

            t_targets = timed(targets, dev, args.reps)
            idx, w, _ = targets()
            torch.manual_seed(0)
            model = task.build_model().to(dev).to(memory_format=fmt).train()
            opt = torch.optim.Adam(model.parameters(), lr=3e-4, betas=(0.9, 0.99), weight_decay=1e-3)
            l_x, hint_x, mask_x = (t.contiguous(memory_format=fmt) for t in (l_in, hint / 110.0, mask - 0.5))

            def network(model=model, opt=opt, guided=guided, cw=cw, l_x=l_x, hint_x=hint_x, mask_x=mask_x, idx=idx,
                        w=w, ab=ab):  # fmt: skip
                with amp:
                    if guided:  # the guided loss: Huber on ab + the distribution head's soft-CE
                        out = model(l_x, hint_x, mask_x, None)
                        loss = F.smooth_l1_loss(out.ab.float(), ab / 110.0, beta=1 / 110.0) * 110.0
                        loss = loss + classification_loss(out.logits.float(), idx, w, None)
                    else:
                        loss = classification_loss(model(l_x).float(), idx, w, cw)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            t_net = timed(network, dev, args.reps)
            del model, opt
            eng = engine(task, args.steps, args.batch_size, dev, args.compile, args.workers)
            plain = plain_loop(make_task(name, args.width, rgb, args.soft_k), rgb, args.steps, dev)
            net_ips = args.batch_size / t_net
            fl = flops_per_image(task, size)
            print(f"{name:<11}{size:>5} {t_lab * 1e3:>8.2f} {t_hints * 1e3:>9.2f} {t_targets * 1e3:>11.2f} "
                  f"{t_net * 1e3:>11.2f} {net_ips:>10.0f} {eng:>13.0f} {eng / net_ips:>8.2f} {plain:>12.0f} "
                  f"{eng / plain:>10.2f} {fl / 1e9:>10.3g} {fl * net_ips / peak:>8.1%} {fl * eng / peak:>8.1%}",
                  flush=True)  # fmt: skip
            if cuda:
                torch.cuda.empty_cache()


def anchor_vs_engine(args: argparse.Namespace, dev: torch.device) -> None:
    rgb = torch.rand(args.batch_size, 3, args.crop, args.crop, generator=torch.Generator().manual_seed(0)) * 255
    rgb = rgb.to(torch.uint8)
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}), threads "
          f"{torch.get_num_threads()}, eccv16 width {args.width}, batch {args.batch_size} x {args.crop}px, "
          f"{args.steps} steps (first excluded)")  # fmt: skip
    anchor = plain_loop(make_task("eccv16", args.width, rgb, args.soft_k), rgb, args.steps, dev)
    mem_anchor = peak_mb(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    ours = engine(make_task("eccv16", args.width, rgb, args.soft_k), args.steps, args.batch_size, dev, args.compile,
                  args.workers)  # fmt: skip
    mem_ours = peak_mb(dev)
    label = "bf16+channels_last" if dev.type == "cuda" else "fp32"
    print(f"anchor  plain fp32 eager loop : {anchor:8.1f} images/s  peak {mem_anchor:8.0f} MB")
    print(f"ours    engine ({label}{', compiled' if args.compile else ''}) : {ours:8.1f} images/s  "
          f"peak {mem_ours:8.0f} MB")  # fmt: skip
    print(f"ratio   ours / anchor = {ours / anchor:.2f}x")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stages", action="store_true", help="the per-stage table (eccv16 + siggraph17)")
    p.add_argument("--quick", action="store_true", help="toy sizes (width 1/16, 16 px, batch 2): runs on a CPU")
    p.add_argument("--models", default="eccv16,siggraph17", help="--stages: comma-separated")
    p.add_argument("--sizes", default=None, help="--stages: crop sizes, comma-separated (default 64,176)")
    p.add_argument("--width", type=float, default=None, help="channel multiplier (default 1 with --stages, else 0.25)")
    p.add_argument("--crop", type=int, default=176)
    p.add_argument("--batch-size", type=int, default=None, help="default 256 with --stages, else 16")
    p.add_argument("--steps", type=int, default=None, help="engine / plain-loop steps (first excluded)")
    p.add_argument("--reps", type=int, default=10, help="--stages: timed calls per stage")
    p.add_argument("--soft-k", type=int, default=5)
    p.add_argument("--matmul-size", type=int, default=8192)
    p.add_argument("--workers", type=int, default=None, help="engine loader workers (default: 6 on CUDA, else 0)")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    args = p.parse_args(argv)
    dev = pick_device(args.device)
    if args.quick:
        args.width, args.sizes, args.batch_size = args.width or 0.0625, args.sizes or "16", args.batch_size or 2
        args.steps, args.reps, args.matmul_size = args.steps or 2, 1, 256
    args.models = args.models.split(",")
    args.sizes = [int(s) for s in (args.sizes or "64,176").split(",")]
    args.workers = (6 if dev.type == "cuda" else 0) if args.workers is None else args.workers
    if args.stages:
        args.width, args.batch_size, args.steps = args.width or 1.0, args.batch_size or 256, args.steps or 12
        stages(args, dev)
    else:
        args.width, args.batch_size, args.steps = args.width or 0.25, args.batch_size or 16, args.steps or 6
        anchor_vs_engine(args, dev)


if __name__ == "__main__":
    main()
