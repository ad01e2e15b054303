"""``chromaflow demo``: the whole main job on the committed sample, in one run directory, with a report.

    chromaflow demo --out runs/demo            # what `make demo` runs

0. the shipped model (``weights/colorization``, trained on Tiny-ImageNet by the project's own steps, see its
   model card) is evaluated on the frozen evaluation set (the sample's val split, same protocol as the
   pipeline) and registered as the initial ``champion``;
1. the colorization pipeline (prepare -> stats -> train -> evaluate -> promote -> export) with the KFP local
   runner, settings from ``params.yaml``: it trains a quick challenger (~1-2 minutes of CPU) which the
   promotion gates compare with the champion on the same frozen set;
2. tracked in MLflow (SQLite under ``<out>/mlflow``): runs, the registered model, the ``champion`` alias;
3. the exported ``.mar`` served by TorchServe (:func:`chromaflow.serve.start_server`) and called once with a
   sample photo;
4. a self-contained ``<out>/report.html`` (inputs, colorizations, metrics, the promotion decision, timings).

Everything lands under ``--out``; nothing outside it is written (the MLflow experiment's artifact root is
``<out>/mlflow/artifacts``).
"""

from __future__ import annotations

import argparse
import html
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chromaflow import io

log = logging.getLogger(__name__)

PIPELINE = "colorization"
SERVE_PHOTO = "kodim23.jpg"  # the photo sent to the served model (a colourful one from data/sample)
METRIC_KEYS = ("auc_raw", "auc_rebal", "class_top1", "psnr", "colorfulness", "chroma")


def pipeline_arguments(root: Path, params: Mapping[str, Any], uri: str, steps: int | None) -> dict[str, Any]:
    """The pipeline's arguments from ``params.yaml`` sections, with absolute paths (tasks run in subprocesses)."""
    p, t, e, pr = params["prepare"], params["train"], params["evaluate"], params["promote"]
    args = {
        "source": str((root / p["source"]).resolve()),
        "max_side": int(p["max_side"]),
        "val_fraction": float(p["val_fraction"]),
        "loss": t["loss"],
        "width": float(t["width"]),
        "steps": int(steps if steps is not None else t["steps"]),
        "crop": int(t["crop"]),
        "batch_size": int(t["batch_size"]),
        "lr": float(t["lr"]),
        "seed": int(t["seed"]),
        "eval_size": int(e["size"]),
        "model_name": pr["model"],
        "gates": str((root / pr["gates"]).resolve()),
        "experiment": "colorization",
        "tracking_uri": uri,
    }
    return args


def _prepare_tracking(mlflow_dir: Path, experiment: str) -> str:
    """SQLite store under ``mlflow_dir`` with ``experiment`` created there (artifacts beside the database)."""
    import mlflow

    mlflow_dir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment, artifact_location=(mlflow_dir / "artifacts").as_uri())
    return uri


def seed_champion(root: Path, cfg: Mapping[str, Any], uri: str, out: Path, name: str = "colorization") -> dict | None:
    """Register the shipped model ``name`` as the first ``champion`` of the demo's registry.

    It is evaluated on the frozen evaluation set with the pipeline's own protocol: the same ``prepare`` of
    the sample (deterministic split), the same ``stats`` prior for the rebalanced AuC, the same ``evaluate``
    settings, so its metrics and the challenger's share one ``eval_set`` fingerprint and are comparable.
    Returns the promotion decision, or None (logged) when no shipped model is present.
    """
    from chromaflow.data.prepare import prepare
    from chromaflow.data.stats import stats
    from chromaflow.evaluate.colorization import evaluate_colorization
    from chromaflow.models.shipped import shipped_weights
    from chromaflow.tracking.promote import promote, register_challenger

    try:
        weights, card = shipped_weights(name)
    except FileNotFoundError as e:
        log.warning("demo: %s; the quick challenger will become the first champion", e)
        return None
    p, e, pr = cfg["prepare"], cfg["evaluate"], cfg["promote"]
    frozen = out / "frozen_eval"
    prepare(str((root / p["source"]).resolve()), frozen / "prepared", max_side=int(p["max_side"]),
            val_fraction=float(p["val_fraction"]), workers=1)  # fmt: skip
    stats(frozen / "prepared", frozen / "stats", split=cfg.get("stats", {}).get("split", "train"), workers=1)
    evaluate_colorization(weights, frozen / "prepared", frozen / "champion", split=e.get("split", "val"),
                          prior=frozen / "stats" / "prior.npy", size=int(e["size"]), t_sweep=None)  # fmt: skip
    params = {"shipped": name, "shipped_sha256": card["sha256"], "trained_at_commit": card["code_commit"],
              "trained_on": card["data"], "trained_data_hash": card["data_hash"]}  # fmt: skip
    register_challenger(weights, frozen / "champion" / "metrics.json", pr["model"], experiment="colorization",
                        uri=uri, params=params)  # fmt: skip
    return promote(pr["model"], str((root / pr["gates"]).resolve()), uri=uri, out=frozen / "decision.json")


def _champion_gallery(root: Path, source: str, size: int = 192) -> str:
    """HTML grid: gray input | the shipped champion's colorization | ground truth, for every sample photo.

    The champion colorizes as the endpoint serves it: the network input side and decoding of
    ``serving/model-config.yaml``."""
    import numpy as np
    import torch
    from PIL import Image

    from chromaflow.evaluate import report as R
    from chromaflow.export.mar import served_settings
    from chromaflow.models import colorize
    from chromaflow.models.shipped import load_shipped

    model, card = load_shipped("colorization")
    served = served_settings(card["model"])
    rows, labels = [], []
    for path in sorted((root / source).glob("*.jpg")):
        im = Image.open(path).convert("RGB")
        im.thumbnail((size, size))
        rgb = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None]
        with torch.no_grad():
            out = colorize(model, rgb, method=served.method, size=served.size)[0]
        rows.append([im.convert("L").convert("RGB"), out.permute(1, 2, 0).numpy(), im])
        labels.append(path.name)
    return R.image_grid(rows, ["input (gray)", "champion (shipped model)", "ground truth"], row_labels=labels)


def _task_timings(run_dir: Path, start: float) -> dict[str, float]:
    """Seconds per pipeline task, from the finish times of its executor outputs (the local runner is sequential)."""
    ends = sorted((f.stat().st_mtime, f.parent.name) for f in run_dir.glob("*/executor_output.json"))
    out, prev = {}, start
    for t, name in ends:
        out[name] = round(t - prev, 1)
        prev = t
    return out


def _serve_once(mar: Path, run_dir: Path, photo: Path, out_png: Path) -> dict[str, Any]:
    """Start TorchServe with ``mar``, POST ``photo`` once, save the answer to ``out_png``, stop the server."""
    import requests

    from chromaflow.serve import start_server

    t0 = time.monotonic()
    with start_server(mar, run_dir) as srv:
        started = time.monotonic() - t0
        t1 = time.monotonic()
        r = requests.post(srv.predict_url, data=photo.read_bytes(), headers=srv.auth_headers("image/jpeg"), timeout=120)
        latency = time.monotonic() - t1
        if r.status_code != 200:
            raise RuntimeError(f"demo: {srv.predict_url} answered {r.status_code}: {r.text[:500]}")
        io.write_bytes(out_png, r.content)
        url = srv.predict_url
    return {"url": url, "status": r.status_code, "start_s": round(started, 1), "latency_s": round(latency, 2)}


def _report(out: Path, result: Mapping[str, Any], photo: Path | None, served: Path | None) -> Path:
    """``<out>/report.html``: inputs and colorizations, metrics, the promotion decision, timings."""
    from PIL import Image

    from chromaflow.evaluate import report as R

    sections: list[tuple[str, str]] = []
    if photo is not None and served is not None and served.is_file():
        rgb = Image.open(photo).convert("RGB")
        gray = rgb.convert("L").convert("RGB")
        col = Image.open(served).convert("RGB")
        sections.append(
            (
                "Served colorization (one TorchServe call)",
                R.image_grid([[gray, col, rgb]], ["input (gray)", "colorized by the champion", "ground truth"])
                + f"<p>{html.escape(str(result['serve']['url']))}: HTTP {result['serve']['status']}, "
                f"{result['serve']['latency_s']} s</p>",
            )
        )
    if result.get("champion_gallery"):
        sections.append(("The champion on the committed sample", result["champion_gallery"]))
    ev = result["evaluation"]
    rows = [[name] + [row.get(k) for k in METRIC_KEYS] for name, row in (ev.get("rows") or {}).items()]
    sections.append(
        (
            f"Metrics on the sample's val split ({ev.get('n_images', '?')} images)",
            R.html_table(rows, ["row", *METRIC_KEYS])
            + "<p>AuC in %, PSNR in dB. Gallery and temperature sweep: <a href='evaluation/report.html'>"
            "evaluation/report.html</a>.</p>",
        )
    )
    seed = result.get("seed_decision")
    if seed:
        ch0 = seed.get("challenger") or {}
        sections.append(
            (
                "Initial champion: the shipped model",
                f"<p>{html.escape(seed.get('model', ''))} v{html.escape(str(ch0.get('version', '?')))} (weights/colorization, "
                "see its MODEL_CARD.md), evaluated on the same frozen set: "
                + html.escape("; ".join(str(r) for r in seed.get("reasons", [])))
                + "</p>",
            )
        )
    d = result["decision"]
    verdict = "PROMOTED to champion" if d.get("promoted") else "not promoted: the champion stays"
    reasons = "".join(f"<li>{html.escape(str(r))}</li>" for r in d.get("reasons", []))
    ch = d.get("challenger") or {}
    sections.append(
        (
            "Promotion decision",
            f"<p><b>{html.escape(d.get('model', ''))} v{html.escape(str(ch.get('version', '?')))}: {verdict}</b> "
            f"(gates {html.escape(str(d.get('gates_file', '')))})</p><ul>{reasons}</ul>",
        )
    )
    timing_rows = [[k, v] for k, v in result["timings"].items()]
    sections.append(("Timings (s)", R.html_table(timing_rows, ["step", "seconds"], digits=1)))
    where = [[k, html.escape(str(v))] for k, v in result["paths"].items()]
    sections.append(("Where everything is", R.html_table(where, ["what", "path"])))
    path = out / "report.html"
    io.write_text(path, R.html_page("chromaflow demo: automatic colorization on the committed sample", sections))
    return path


def run_demo(
    out: str | Path = "runs/demo",
    *,
    params: str | Path | None = None,
    steps: int | None = None,
    serve: bool = True,
) -> dict[str, Any]:
    """Run the demo into ``out``; return ``{paths, timings, evaluation, decision, serve}`` (also ``summary.json``).

    ``params``: the ``params.yaml`` to read (default: the project's); ``steps`` overrides ``train.steps``;
    ``serve=False`` skips TorchServe (no Java needed).
    """
    import yaml

    from chromaflow.pipeline import project_root, run_local

    t_all = time.monotonic()
    root = project_root()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    params_path = Path(params) if params else root / "params.yaml"
    if not params_path.is_file():
        raise FileNotFoundError(f"demo: params file {params_path} not found")
    cfg = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    missing = {"prepare", "train", "evaluate", "promote"} - set(cfg or {})
    if missing:
        raise ValueError(f"demo: {params_path} lacks section(s) {sorted(missing)}")
    timings: dict[str, float] = {}

    uri = _prepare_tracking(out / "mlflow", "colorization")
    t0 = time.monotonic()
    seed_decision = seed_champion(root, cfg, uri, out)
    timings["seed champion (shipped model)"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    args = pipeline_arguments(root, cfg, uri, steps)
    kfp_root = out / "kfp"
    before = set(kfp_root.glob("*")) if kfp_root.is_dir() else set()
    start_wall = time.time()
    outputs = run_local(PIPELINE, args, root=kfp_root)
    run_dirs = sorted(set(kfp_root.glob("*")) - before)
    timings["pipeline (total)"] = round(time.monotonic() - t0, 1)
    if run_dirs:
        timings.update({f"  {k}": v for k, v in _task_timings(run_dirs[-1], start_wall).items()})

    evaluation = Path(outputs["evaluation"])
    shutil.copytree(evaluation, out / "evaluation", dirs_exist_ok=True)
    ev = io.read_json(evaluation / "metrics.json")
    decision = io.read_json(Path(outputs["decision"]))
    mars = sorted(Path(outputs["mar"]).glob("*.mar"))
    if not mars:
        raise RuntimeError(f"demo: the export step wrote no .mar under {outputs['mar']}")
    mar = out / "export" / mars[0].name
    mar.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(mars[0], mar)

    result: dict[str, Any] = {
        "paths": {
            "report": str(out / "report.html"),
            "pipeline artifacts": str(run_dirs[-1] if run_dirs else kfp_root),
            "evaluation": str(out / "evaluation"),
            "archive (.mar)": str(mar),
            "mlflow store": uri,
        },
        "evaluation": {k: ev.get(k) for k in ("n_images", "eval_set", "rows", *METRIC_KEYS)},
        "decision": decision,
        "seed_decision": seed_decision,
        "arguments": args,
        "serve": None,
        "timings": timings,
    }
    photo = root / "data" / "sample" / SERVE_PHOTO
    served = out / "served.png"
    if serve:
        t0 = time.monotonic()
        result["serve"] = _serve_once(mar, out / "serve", photo, served)
        result["paths"]["served colorization"] = str(served)
        timings["serve + one call"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    if seed_decision is not None:
        result["champion_gallery"] = _champion_gallery(root, cfg["prepare"]["source"])
    _report(out, result, photo if serve else None, served if serve else None)
    result.pop("champion_gallery", None)
    timings["report"] = round(time.monotonic() - t0, 1)
    timings["total"] = round(time.monotonic() - t_all, 1)
    io.write_json(out / "summary.json", result)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="run directory (default: %(default)s)")
    parser.add_argument("--params", default=None, help="params.yaml to read (default: the project's)")
    parser.add_argument("--steps", type=int, default=None, help="override train.steps of params.yaml")
    parser.add_argument("--no-serve", dest="serve", action="store_false", help="skip TorchServe (no Java needed)")


def main(args: argparse.Namespace) -> int:
    try:
        res = run_demo(args.out, params=args.params, steps=args.steps, serve=args.serve)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        log.error("demo: %s", e)
        return 2
    d = res["decision"]
    print("\n== chromaflow demo: done")
    for k, v in res["paths"].items():
        print(f"  {k:<22} {v}")
    m = res["evaluation"]
    print("  metrics               " + ", ".join(f"{k}={m[k]:.2f}" for k in METRIC_KEYS if isinstance(m.get(k), float)))
    print(f"  promotion             {'promoted' if d.get('promoted') else 'not promoted'}: {'; '.join(d['reasons'])}")
    print("  timings (s)")
    for k, v in res["timings"].items():
        print(f"    {k:<20} {v:>7.1f}")
    print(f"\nOpen the report:      xdg-open {res['paths']['report']}")
    print(f"Browse MLflow:        mlflow ui --backend-store-uri {res['paths']['mlflow store']} --port 5000")
    return 0
