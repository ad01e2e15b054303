"""Load benchmark of the colorize endpoint on a real TorchServe: batching on vs off, and the in-process bound.

    .venv/bin/python bench/serve_load.py                      # eccv16 width 1/4, random weights, N=48
    .venv/bin/python bench/serve_load.py --weights runs/demo/train/model.safetensors -n 96

Requests are real photos (data/sample) resized so the short side is 128, 256 or 384 px, in a fixed
mixed order. For each server (batching on: serving/model-config.yaml's batchSize/maxBatchDelay;
off: batchSize 1) and each concurrency (1, 8, 32): requests/s, p50/p99 latency, errors (must be 0).
Anchor: the handler in-process (``ColorizeService.handle`` on batches of the same requests, no HTTP),
an upper bound; "server overhead" = in-process req/s / server req/s.
"""

from __future__ import annotations

import argparse
import io
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHORT_SIDES = (128, 256, 384)
CONCURRENCY = (1, 8, 32)


def load_bodies(n_photos: int) -> list[bytes]:
    photos = sorted((REPO / "data" / "sample").glob("*.jpg"))[:n_photos]
    bodies = []
    for i, p in enumerate(photos):
        im = Image.open(p).convert("RGB")
        s = SHORT_SIDES[i % len(SHORT_SIDES)]
        scale = s / min(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        bodies.append(buf.getvalue())
    return bodies


def run_load(url: str, headers: dict, bodies: list[bytes], n: int, concurrency: int) -> dict:
    local = threading.local()

    def one(i: int) -> tuple[float, int]:
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        t = time.perf_counter()
        try:
            code = s.post(url, data=bodies[i % len(bodies)], headers=headers, timeout=300).status_code
        except requests.RequestException:
            code = 0
        return time.perf_counter() - t, code

    one(0)  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - start
    lat = np.array([r[0] for r in results]) * 1000
    return {
        "rps": n / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "errors": sum(r[1] != 200 for r in results),
    }


def in_process(weights: Path, handler: dict, bodies: list[bytes], n: int, batch: int) -> float:
    from chromaflow.serving import ColorizeService, Request

    svc = ColorizeService.from_weights(weights, handler)
    reqs = [Request(bodies[i % len(bodies)], "image/jpeg") for i in range(n)]
    svc.handle(reqs[:1])
    start = time.perf_counter()
    for i in range(0, n, batch):
        assert all(r.status == 200 for r in svc.handle(reqs[i : i + batch]))
    return n / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=None, help="default: a seeded eccv16 width 1/4")
    ap.add_argument("-n", type=int, default=48, help="requests per concurrency level")
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the worker and the anchor (0: default)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops its servers

    from chromaflow.export import export_mar
    from chromaflow.serve import start_server

    cfg = yaml.safe_load((REPO / "serving" / "model-config.yaml").read_text())
    batch, delay = cfg["batchSize"], cfg["maxBatchDelay"]
    handler = {**cfg["handler"], "num_threads": args.threads}
    bodies = load_bodies(args.photos)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        tmp = Path(tmp)
        weights = args.weights
        if weights is None:
            from chromaflow.models import create_model, save_weights

            torch.manual_seed(0)
            weights = tmp / "w.safetensors"
            save_weights(create_model("eccv16", width=0.25), weights)
        print(f"# {len(bodies)} photos, short side {SHORT_SIDES}, n={args.n}, worker torch threads {args.threads}")
        results: dict[str, dict[int, dict]] = {}
        for mode, bs in (("batching on", batch), ("batching off", 1)):
            mar = export_mar(
                weights, tmp / mode.replace(" ", "-"), batch_size=bs, max_batch_delay_ms=delay, handler_config=handler
            )
            with start_server(mar, tmp / f"run-{bs}") as srv:
                hdr = srv.auth_headers("image/jpeg")
                results[mode] = {c: run_load(srv.predict_url, hdr, bodies, args.n, c) for c in CONCURRENCY}
            print(f"## {mode} (batchSize {bs}, maxBatchDelay {delay} ms)")
            print("concurrency  req/s   p50 ms   p99 ms  errors")
            for c, r in results[mode].items():
                print(f"{c:>11} {r['rps']:6.2f} {r['p50']:8.1f} {r['p99']:8.1f} {r['errors']:7d}")
        anchor = in_process(weights, handler, bodies, args.n, batch)
    print("## ratios")
    for c in CONCURRENCY:
        on, off = results["batching on"][c]["rps"], results["batching off"][c]["rps"]
        print(f"concurrency {c:>2}: batching on/off throughput = {on / off:.2f}x")
    best = max(r["rps"] for r in results["batching on"].values())
    print(f"in-process handler (anchor, batches of {batch}): {anchor:.2f} req/s")
    print(f"server overhead: in-process / best server = {anchor / best:.2f}x")
    errors = sum(r["errors"] for m in results.values() for r in m.values())
    print(f"errors: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
