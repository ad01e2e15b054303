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
4. a self-contained ``<out>/report.html`` (inputs, colorizations, one table of champion, challenger, baselines and
   the gate decision, the promotion decisions, timings).

Everything lands under ``--out``; nothing outside it is written (the MLflow experiment's artifact root is
``<out>/mlflow/artifacts``). The console gets a line per stage and per pipeline task, then the summary; what the
steps print goes to ``<out>/demo.log`` (``--verbose``: to the console instead).
"""

from __future__ import annotations

import argparse
import contextlib
import html
import io as _io
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
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


_console: Any = None  # where progress lines go while the demo's other output is captured (see quiet_output)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_KFP_START = re.compile(r"Executing task '([^']+)'")
_KFP_END = re.compile(r"Task '([^']+)' finished with status (\w+)")


def say(line: str) -> None:
    """A progress line for the person running the demo (shown even when the rest goes to the log)."""
    out = _console or sys.stdout
    out.write(f"demo: {line}\n")
    out.flush()


def _progress_line(line: str) -> str | None:
    """The line a KFP local-runner log line becomes on the console, or None (log file only)."""
    text = _ANSI.sub("", line)
    if m := _KFP_START.search(text):
        return f"demo:     task {m[1]} ..."
    if (m := _KFP_END.search(text)) and m[2] != "SUCCESS":
        return f"demo:     task {m[1]}: {m[2]} (details in the log)"
    return None


class _LogTee(_io.TextIOBase):
    """A text stream that writes everything to ``log`` and only the lines ``_progress_line`` keeps to ``console``."""

    def __init__(self, log: Any, console: Any) -> None:
        self.log, self.console, self._buf = log, console, ""

    def write(self, s: str) -> int:
        self.log.write(s)
        self._buf += s
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            shown = _progress_line(line)
            if shown:
                self.console.write(shown + "\n")
                self.console.flush()
        return len(s)

    def flush(self) -> None:
        self.log.flush()

    def isatty(self) -> bool:  # tqdm bars become periodic log lines (chromaflow.logs.progress)
        return False


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        h
        for lg in loggers
        if isinstance(lg, logging.Logger)
        for h in lg.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


@contextlib.contextmanager
def quiet_output(log_path: Path) -> Iterator[Path]:
    """Send what the demo's steps print (the KFP local runner's executor-input JSON and task logs, library
    log lines, MLflow's notices) to ``log_path``; only :func:`say` lines and the pipeline's task names reach
    the console. Logging handlers bound to the console are pointed at the log for the duration."""
    global _console
    console = sys.stdout
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as f:
        tee = _LogTee(f, console)
        terminals = {id(x) for x in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}
        swapped = [(h, h.stream) for h in _stream_handlers() if id(h.stream) in terminals]
        for h, _ in swapped:
            h.setStream(tee)
        _console = console
        try:
            with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
                yield log_path
        except BaseException:
            console.write(f"demo: stopped; everything the steps printed is in {log_path}\n")
            raise
        finally:
            _console = None
            for h, old in swapped:
                h.setStream(old)
            for h in _stream_handlers():  # handlers created meanwhile must not outlive the log file
                if h.stream is tee:
                    h.setStream(sys.stderr)


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
    from chromaflow.export.register import register_challenger
    from chromaflow.models.shipped import shipped_weights
    from chromaflow.tracking.promote import promote

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


BASELINES = ("Gray", "Random")  # rows of the evaluation a trained model should beat
HIGHER_IS_BETTER = ("auc_raw", "auc_rebal", "psnr")  # the metrics a "below a baseline" sentence looks at
METRIC_LABELS = {"auc_raw": "raw AuC", "auc_rebal": "rebalanced AuC", "psnr": "PSNR"}


def comparison(result: Mapping[str, Any]) -> tuple[list[list[Any]], list[str], list[str]]:
    """The report's one table: champion, challenger, baselines and the gate decision; and sentences on it.

    ``result``: :func:`run_demo`'s dict (``evaluation``: the challenger's metrics with its baseline rows;
    ``champion``: the shipped champion's metrics on the same frozen set, or None; ``decision``; ``arguments``).
    Returns ``(rows, columns, notes)``: a metric column that no row fills (the classifier's, when no classifier
    was given) is left out; ``notes`` says, for the champion and the challenger, where they sit below a baseline
    and why.
    """
    ev, d, args = result["evaluation"], result["decision"], result.get("arguments") or {}
    ev_rows = ev.get("rows") or {}
    champ = result.get("champion")
    ch = d.get("challenger") or {}
    promoted = bool(d.get("promoted"))
    failed = [r for r in d.get("results", []) if not r.get("passed")]
    verdict = "promoted to champion" if promoted else "not promoted"
    if failed:
        verdict += ": " + ", ".join(f"{r['metric']} {r['delta']:+.2f} < {r['min_margin']:+g}" for r in failed)
    width = args.get("width")
    quick = f"quick width-1/{round(1 / width)}" if width else "quick"
    named: list[tuple[str, Mapping[str, Any], str]] = []
    if champ:
        label = f"Champion: shipped model (weights/colorization) v{champ.get('version', '?')}"
        named.append((label, champ["metrics"], "replaced" if promoted else "stays champion"))
    steps = f", {args['steps']} steps" if args.get("steps") else ""
    challenger = f"Challenger: {quick} model{steps} (this run) v{ch.get('version', '?')}"
    named.append((challenger, ev_rows.get("Ours") or {k: ev.get(k) for k in METRIC_KEYS}, verdict))
    named += [(f"Baseline: {b}", ev_rows[b], "") for b in ("Ground truth", *BASELINES) if b in ev_rows]
    keys = [k for k in METRIC_KEYS if any(m.get(k) is not None for _, m, _ in named)]
    rows = [[label, *(m.get(k) for k in keys), gate] for label, m, gate in named]
    notes = []
    why = {
        "Champion": "class rebalancing trades raw AuC and PSNR, which desaturated pixels dominate, for vivid rare "
        "colours (thesis Table 2.1); the gates weigh the rebalanced AuC first.",
        "Challenger": f"it is a {quick} network trained for about 1-2 minutes of CPU, there to exercise the "
        "pipeline and the promotion gates, not to beat the shipped model.",
    }
    for label, m, _ in named[: 2 if champ else 1]:
        below = []
        for b in BASELINES:
            worse = [k for k in HIGHER_IS_BETTER if _lt(m.get(k), ev_rows.get(b, {}).get(k))]
            if worse:
                below.append(
                    f"{b} on " + " and ".join(f"{METRIC_LABELS[k]} ({m[k]:.2f} vs {ev_rows[b][k]:.2f})" for k in worse)
                )
        if below:
            who = label.split(":")[0]
            notes.append(f"The {who.lower()} sits below " + "; below ".join(below) + ": " + why[who])
    return rows, ["row", *keys, "gate decision"], notes


def _lt(a: Any, b: Any) -> bool:
    return isinstance(a, int | float) and isinstance(b, int | float) and a < b


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
    rows, columns, notes = comparison(result)
    sections.append(
        (
            f"Champion, challenger and baselines on the sample's val split ({ev.get('n_images', '?')} images)",
            R.html_table(rows, columns)
            + "".join(f"<p>{html.escape(n)}</p>" for n in notes)
            + "<p>AuC in %, PSNR in dB. The challenger's gallery and temperature sweep: "
            "<a href='evaluation/report.html'>evaluation/report.html</a>.</p>",
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
    say("1/4 champion: evaluating the shipped model on the frozen set and registering it")
    seed_decision = seed_champion(root, cfg, uri, out)
    champion = None
    if seed_decision is not None:
        champ_metrics = io.read_json(out / "frozen_eval" / "champion" / "metrics.json")
        version = (seed_decision.get("challenger") or {}).get("version")
        champion = {"version": version, "metrics": (champ_metrics.get("rows") or {}).get("Ours", champ_metrics)}
    timings["seed champion (shipped model)"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    say("2/4 pipeline: prepare -> stats -> train (the quick challenger) -> evaluate -> promote -> export")
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
        "champion": champion,
        "arguments": args,
        "serve": None,
        "timings": timings,
    }
    photo = root / "data" / "sample" / SERVE_PHOTO
    served = out / "served.png"
    if serve:
        t0 = time.monotonic()
        say("3/4 serving: TorchServe with the exported archive, one photo colorized over HTTP")
        result["serve"] = _serve_once(mar, out / "serve", photo, served)
        result["paths"]["served colorization"] = str(served)
        timings["serve + one call"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    say("4/4 report: the champion's colorizations of the sample, the comparison table")
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
    parser.add_argument(
        "--verbose",
        dest="demo_verbose",
        action="store_true",
        help="print everything the steps print (KFP task logs, library logs); default: progress lines and "
        "the summary, the rest in <out>/demo.log",
    )


def _venv_command(name: str) -> str:
    """``name`` beside this interpreter, as ``.venv/bin/<name>`` when that is the same file (``make install``'s
    venv, run from the checkout), else its absolute path: the hint must work without an activated venv."""
    path = Path(sys.executable).parent / name
    local = Path(".venv") / "bin" / name
    with contextlib.suppress(OSError):
        if local.resolve() == path.resolve():
            return str(local)
    return str(path)


def print_summary(res: Mapping[str, Any], log_path: Path | None) -> None:
    """The closing summary: the comparison table, the gate's reasons, timings, paths, how to look further."""
    from chromaflow.evaluate import report as R

    rows, columns, notes = comparison(res)
    print("\n== chromaflow demo: done" + (f" (everything the steps printed: {log_path})" if log_path else ""))
    print(R.markdown_table(rows, columns), end="")
    for n in notes:
        print(f"  {n}")
    d = res["decision"]
    print("promotion: " + "; ".join(d.get("reasons", [])))
    print("timings (s): " + ", ".join(f"{k.strip()} {v:.1f}" for k, v in res["timings"].items()))
    for k, v in res["paths"].items():
        print(f"  {k:<22} {v}")
    graphical = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and shutil.which("xdg-open")
    opener = "xdg-open " if graphical else ""
    print(f"\nOpen the report:      {opener}{res['paths']['report']}")
    print(
        f"Browse MLflow:        {_venv_command('mlflow')} ui --backend-store-uri {res['paths']['mlflow store']} --port 5000"
    )


def main(args: argparse.Namespace) -> int:
    verbose = bool(getattr(args, "demo_verbose", False) or getattr(args, "verbose", False))
    log_path = None if verbose else Path(args.out).resolve() / "demo.log"
    run = contextlib.nullcontext() if log_path is None else quiet_output(log_path)
    try:
        with run:
            res = run_demo(args.out, params=args.params, steps=args.steps, serve=args.serve)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        log.error("demo: %s", e)
        if log_path is not None and log_path.is_file():
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
            print("\n".join(tail) + f"\n(the last 40 lines of {log_path})", file=sys.stderr)
        return 2
    print_summary(res, log_path)
    return 0
