"""Load benchmark of the colorize endpoint on a real TorchServe: batching on vs off, and the in-process bound.

    .venv/bin/python bench/serve_load.py                      # eccv16 width 1/4, random weights, N=48
    .venv/bin/python bench/serve_load.py --weights runs/demo/train/model.safetensors -n 96

Requests are real photos (data/sample) resized so the short side is 128, 256 or 384 px, in a fixed
mixed order. For each server (batching on: serving/model-config.yaml's batchSize/maxBatchDelay;
off: batchSize 1) and each concurrency (1, 8, 32): requests/s, p50/p99 latency, errors (must be 0).
Anchor: the handler in-process (``ColorizeService.handle`` on batches of the same requests, no HTTP),
an upper bound; "server overhead" = in-process req/s / server req/s.

    .venv/bin/python bench/serve_load.py --weights weights/colorization/model.safetensors --mix-bad 0.1 -n 96

``--mix-bad F`` (issue 17): on the batching-on server only, at concurrency 16 and 32, a clean run and then a run
where a fraction F of the requests are malformed JSON bodies (``tests/serving/conftest.py``'s ``HOSTILE_JSON``:
``[1]``, ``123``, ``true``, 100k-deep nesting, ...), shuffled among the photos so they share batches. Good
requests must all succeed (exit 1 otherwise); their p50/p99 are printed beside the clean run's, and every
malformed one must get its 400.
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


def run_load(
    url: str,
    headers: dict,
    bodies: list[bytes],
    n: int,
    concurrency: int,
    bad: list[bytes] | None = None,
    fraction: float = 0.0,
) -> dict:
    """``n`` requests at ``concurrency``; with ``bad`` and ``fraction``, that fraction of them (seeded positions
    spread over the run) send one of the ``bad`` JSON bodies instead of a photo. Rate, latency and errors count
    the good requests; ``bad_not_400`` counts malformed requests not answered 400."""
    local = threading.local()
    bad_at: dict[int, bytes] = {}
    if bad and fraction > 0:
        idx = np.random.default_rng(0).choice(n, size=max(1, round(n * fraction)), replace=False)
        bad_at = {int(i): bad[k % len(bad)] for k, i in enumerate(sorted(idx))}

    def one(i: int) -> tuple[float, int, bool]:
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        is_bad = i in bad_at
        data = bad_at[i] if is_bad else bodies[i % len(bodies)]
        h = {**headers, "Content-Type": "application/json"} if is_bad else headers
        t = time.perf_counter()
        try:
            code = s.post(url, data=data, headers=h, timeout=300).status_code
        except requests.RequestException:
            code = 0
        return time.perf_counter() - t, code, is_bad

    one(next(i for i in range(n) if i not in bad_at))  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - start
    good = [r for r in results if not r[2]]
    lat = np.array([r[0] for r in good]) * 1000
    return {
        "rps": len(good) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "errors": sum(r[1] != 200 for r in good),
        "good": len(good),
        "bad": len(results) - len(good),
        "bad_not_400": sum(r[1] != 400 for r in results if r[2]),
    }


def hostile_bodies() -> list[bytes]:
    """The malformed JSON bodies of the hostile-request tests (one corpus for tests and bench)."""
    sys.path.insert(0, str(REPO))
    from tests.serving.conftest import HOSTILE_JSON

    return [body for body, _ in HOSTILE_JSON.values()]


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
    ap.add_argument("--mix-bad", type=float, default=0.0, help="fraction of malformed JSON requests (see above)")
    args = ap.parse_args()
    if not 0.0 <= args.mix_bad < 1.0:
        ap.error("--mix-bad must be in [0, 1)")

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
        if args.mix_bad:
            return mixed_run(weights, tmp, batch, delay, handler, bodies, args.n, args.mix_bad)
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


def mixed_run(
    weights: Path, tmp: Path, batch: int, delay: int, handler: dict, bodies: list[bytes], n: int, fraction: float
) -> int:
    """Clean vs ``--mix-bad`` on the batching-on server at concurrency 16 and 32 (see the module docstring)."""
    from chromaflow.export import export_mar
    from chromaflow.serve import start_server

    bad = hostile_bodies()
    mar = export_mar(weights, tmp / "mixed", batch_size=batch, max_batch_delay_ms=delay, handler_config=handler)
    rows = []
    with start_server(mar, tmp / "run-mixed") as srv:
        hdr = srv.auth_headers("image/jpeg")
        for c in MIXED_CONCURRENCY:
            clean = run_load(srv.predict_url, hdr, bodies, n, c)
            mixed = run_load(srv.predict_url, hdr, bodies, n, c, bad, fraction)
            rows.append((c, clean, mixed))
    print(f"## malformed requests mixed in: {fraction:.0%} (batchSize {batch}, maxBatchDelay {delay} ms)")
    print("concurrency  clean: req/s  p50 ms  p99 ms  errors | mixed: good  bad  good req/s  p50 ms  p99 ms  "
          "good errors  bad not 400")  # fmt: skip
    failed = 0
    for c, a, b in rows:
        print(
            f"{c:>11} {a['rps']:12.2f} {a['p50']:7.0f} {a['p99']:7.0f} {a['errors']:7d} | {b['good']:11d} {b['bad']:4d} "
            f"{b['rps']:11.2f} {b['p50']:7.0f} {b['p99']:7.0f} {b['errors']:12d} {b['bad_not_400']:12d}"
        )
        failed += a["errors"] + b["errors"] + b["bad_not_400"]
    print(f"good-request errors: {sum(b['errors'] for _, _, b in rows)} (must be 0)")
    return 1 if failed else 0


MIXED_CONCURRENCY = (16, 32)


if __name__ == "__main__":
    sys.exit(main())
