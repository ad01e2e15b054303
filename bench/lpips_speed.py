"""LPIPS throughput and peak memory: ours vs the official ``lpips`` package, same device, batch and weights.

Each implementation runs in its own child process (so peak memory is its own): the process's RSS
high-water mark on the CPU (model construction included: the official package builds torchvision's full
model, classifier head and all), ``torch.cuda.max_memory_allocated`` of the timed loop on CUDA. Values are checked identical (max abs diff).

    .venv/bin/python bench/lpips_speed.py --net alex --batch 50 --size 64 --iters 10
    .venv/bin/python bench/lpips_speed.py --device cuda --batch 256 --size 64 --iters 50
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings

import torch


def _inputs(args, device):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(args.batch, 3, args.size, args.size, generator=g).to(device),
            torch.rand(args.batch, 3, args.size, args.size, generator=g).to(device))  # fmt: skip


def _model(which: str, net: str, device):
    from chromaflow.models import lpips as L

    trunk = L.random_trunk_state(net, seed=0)
    if which == "ours":
        return L.build_lpips(net, trunk=trunk, device=device), lambda m, a, b: m(a, b)
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lpips.LPIPS(net=net, pnet_rand=True, model_path=str(L.official_linear_path(net)), verbose=False)
    own = m.net.state_dict()
    m.net.load_state_dict({k: trunk["features." + k.split(".", 1)[1]] for k in own})
    return m.to(device).eval(), lambda m, a, b: m(a, b, normalize=True).flatten()


def worker(args) -> dict:
    device = torch.device(args.device)
    model, fwd = _model(args.worker, args.net, device)
    a, b = _inputs(args, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        out = fwd(model, a, b)  # warm-up
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for _ in range(args.iters):
            out = fwd(model, a, b)
        sync()
        dt = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # fmt: skip
    return {"pairs_per_s": args.batch * args.iters / dt, "peak_mib": peak, "values": out.float().cpu().tolist()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", default="alex", choices=["alex", "vgg", "squeeze"])
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--worker", choices=["ours", "official"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    res = {}
    for which in ("official", "ours"):
        cmd = [sys.executable, __file__, "--worker", which] + sys.argv[1:]
        res[which] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    diff = max(abs(x - y) for x, y in zip(res["ours"]["values"], res["official"]["values"], strict=True))
    o, f = res["ours"], res["official"]
    mem = "GPU peak allocated" if args.device.startswith("cuda") else "CPU process peak RSS"
    print(
        f"LPIPS-{args.net} v0.1, batch {args.batch}, {args.size}x{args.size}, {args.iters} iters on {args.device}"
        f" ({torch.cuda.get_device_name() if args.device.startswith('cuda') else f'{torch.get_num_threads()} threads'})"
    )
    print(f"  official lpips 0.1.4 : {f['pairs_per_s']:9.1f} pairs/s  {mem} {f['peak_mib']:8.1f} MiB")
    print(f"  chromaflow           : {o['pairs_per_s']:9.1f} pairs/s  {mem} {o['peak_mib']:8.1f} MiB")
    print(f"  ratio ours/official  : throughput x{o['pairs_per_s'] / f['pairs_per_s']:.2f}, "
          f"memory x{o['peak_mib'] / max(f['peak_mib'], 1e-9):.2f}; max |d_ours - d_official| = {diff:.2e}")  # fmt: skip
    return 0 if diff <= 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
