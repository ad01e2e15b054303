"""``chromaflow ship``: a trained model into ``weights/<name>/`` (fp16 safetensors + ``card.json`` + ``MODEL_CARD.md``).

The card records how the file was made (architecture, data and its hash, hyper-parameters, the code commit,
the commands that reproduce it, also as ``reproduce.sh``: one command) and what it scores, plus the file's
SHA-256: :func:`load_shipped` refuses a file whose hash differs (tampered or corrupted), and loading never
unpickles (safetensors, strict keys).

    chromaflow ship --name colorization --train runs/ship/auto --evaluation runs/ship/auto_eval \\
        --data runs/ship/tin --command "chromaflow train --task colorization ..."

A model trained in segments (each continued from the last with ``train --init``) is shipped with every
segment's folder, in order (``--train A --train B``): the weights come from the last one, and the card lists
each segment's steps, losses and wall time and their totals.

``$CHROMAFLOW_WEIGHTS`` points at another folder of shipped models (default: ``weights/`` of the checkout).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from chromaflow import io
from chromaflow.evaluate.report import markdown_table
from chromaflow.models.shipped import (
    CARD_JSON,
    CARD_MD,
    MAX_BYTES,
    REPRODUCE_SH,
    WEIGHTS_FILE,
    weights_root,
)
from chromaflow.models.weights import load_weights, read_config, save_weights
from chromaflow.resources import weights_dir
from chromaflow.tracking.lineage import data_hash

log = logging.getLogger(__name__)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _metrics_table(evaluation: dict[str, Any]) -> str:
    rows = evaluation.get("rows") or {}
    keys = [
        k for k in ("auc_raw", "auc_rebal", "psnr", "colorfulness", "class_top1") if any(k in r for r in rows.values())
    ]
    return markdown_table([[name] + [r.get(k) for k in keys] for name, r in rows.items()], ["row", *keys])


TRAIN_KEYS = ("step", "final_loss", "first_loss", "wall_s", "images_per_s", "val_loss", "val_ab_rmse", "fingerprint")


def _segments(train_dirs: Sequence[str | os.PathLike], name: str) -> list[dict[str, Any]]:
    """The ``metrics.json`` (+ ``timing.json``) of each training segment, in order, with its folder; errors name
    the folder."""
    if not train_dirs:
        raise ValueError(f"ship {name}: no training folder given")
    out = []
    for d in map(Path, train_dirs):
        for p in (d / WEIGHTS_FILE, d / "metrics.json"):
            if not p.is_file():
                raise FileNotFoundError(f"ship {name}: {p} not found (is {d} a finished training run?)")
        m = io.read_json(d / "metrics.json")
        if (d / "timing.json").is_file():  # runs since the clock left metrics.json
            m |= io.read_json(d / "timing.json")
        out.append({"dir": str(d), **{k: m.get(k) for k in TRAIN_KEYS}})
    return out


def ship(
    name: str,
    train_dir: str | os.PathLike | Sequence[str | os.PathLike],
    evaluation: str | os.PathLike | None,
    *,
    data: str | os.PathLike | Sequence[str | os.PathLike],
    command: list[str],
    description: str = "",
    out_root: str | os.PathLike | None = None,
    code_commit: str | None = None,
) -> dict[str, Any]:
    """Write ``<out_root>/<name>/`` from a training run: fp16 weights, card.json, MODEL_CARD.md, reproduce.sh.

    Args:
        train_dir: the ``chromaflow train`` output (model.safetensors, metrics.json), or the outputs of the
            segments of one training in order (each continued from the previous one): the last one's weights
            are shipped, and ``card["segments"]`` lists them all (``card["train"]`` is the last).
        evaluation: an ``evaluate`` output folder (metrics.json, report.md) of those weights, or None.
        data: the prepared training data (its manifest fingerprint is the data hash), or the folders of a
            training that read several (``--data`` then each ``--extra-data``; hashed in order).
        command: the commands that reproduce the model, in order.
        code_commit: the commit the model was trained at (e.g. the training run's ``chromaflow.git_commit``
            MLflow tag); default: the current checkout's HEAD.
    Returns the card.
    """
    dirs = [train_dir] if isinstance(train_dir, str | os.PathLike) else list(train_dir)
    paths = [str(data)] if isinstance(data, str | os.PathLike) else [str(d) for d in data]
    data = paths if len(paths) > 1 else paths[0]  # one folder is recorded as a string, as before lists
    segments = _segments(dirs, name)
    out = Path(out_root or weights_root()) / name
    model = load_weights(Path(dirs[-1]) / WEIGHTS_FILE)
    dst = out / WEIGHTS_FILE
    sha = save_weights(model, dst, dtype=torch.float16)
    size = dst.stat().st_size
    if size > MAX_BYTES:
        dst.unlink()
        raise ValueError(f"ship {name}: {size / 2**20:.1f} MiB exceeds the {MAX_BYTES / 2**20:.0f} MiB limit per model")
    ev = io.read_json(Path(evaluation) / "metrics.json") if evaluation else {}
    config = read_config(dst)
    c = {
        "name": name,
        "model": config["name"],
        "kwargs": config["kwargs"],
        "contract": config["contract"],
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "sha256": sha,
        "bytes": size,
        "dtype": "float16",
        "code_commit": code_commit or _git_commit(),
        "data": data,
        "data_hash": data_hash(data),
        "train": {k: segments[-1][k] for k in TRAIN_KEYS},
        "segments": segments,
        "evaluation": {
            k: ev.get(k)
            for k in ("n_images", "eval_set", "rows", "auc_raw", "auc_rebal", "psnr", "colorfulness", "class_top1")
            if k in ev
        },
        "command": list(command),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    io.write_json(out / CARD_JSON, c)
    script = out / REPRODUCE_SH
    io.write_text(script, _reproduce_script(c))
    script.chmod(0o755)
    report = Path(evaluation) / "report.md" if evaluation else None
    top = weights_dir().resolve().parent  # the checkout's root: the card shows weights/<name>/reproduce.sh
    shown = script.resolve().relative_to(top) if script.resolve().is_relative_to(top) else script
    io.write_text(
        out / CARD_MD,
        _card_markdown(c, description, report.read_text() if report and report.is_file() else "", script=shown),
    )
    log.info("shipped %s: %s (%.1f MiB, sha256 %s)", name, dst, size / 2**20, sha[:12])
    return c


def _reproduce_script(c: dict[str, Any]) -> str:
    """Bash running the card's commands in order, stopping at the first that fails."""
    return "\n".join([
        "#!/usr/bin/env bash",
        f"# Reproduces the shipped model {c['name']!r} (sha256 {c['sha256'][:12]}...): the \"command\" list of its",
        f"# {CARD_JSON}, in order. Run from the repository root after `make install`.",
        "set -euo pipefail",
        'if [ -x .venv/bin/chromaflow ]; then PATH="$PWD/.venv/bin:$PATH"; fi',
        *c["command"],
    ]) + "\n"  # fmt: skip


def _card_markdown(
    c: dict[str, Any], description: str, report: str = "", script: str | os.PathLike = REPRODUCE_SH
) -> str:
    kw = ", ".join(f"{k}={v}" for k, v in c["kwargs"].items())
    lines = [
        f"# Model card: {c['name']}",
        "",
        description,
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{c['model']}({kw})`, {c['n_params']:,} parameters |",
        f"| file | `{WEIGHTS_FILE}`, {c['dtype']} safetensors, {c['bytes'] / 2**20:.2f} MiB |",
        f"| sha256 | `{c['sha256']}` |",
        f"| normalization contract | `{json.dumps(c['contract'], sort_keys=True)}` |",
        f"| training data | {_code_list(c['data'])} (data hash `{c['data_hash']}`) |",
        f"| code commit | `{c['code_commit']}` |",
        f"| training | {_training_summary(c['segments'])} |",
        "",
        *_segments_table(c["segments"]),
        "## Reproduce",
        "",
        f"One command, from the repository root: `bash {script}`. It runs these, in order:",
        "",
        "```bash",
        *c["command"],
        "```",
        "",
    ]
    if c["evaluation"].get("rows"):
        lines += [
            f"## Evaluation ({c['evaluation'].get('n_images')} held-out images; Table 2.1 shaped)",
            "",
            _metrics_table(c["evaluation"]),
            "",
        ]
    elif report:  # another protocol (e.g. PSNR vs revealed points): its own Markdown report, headings demoted
        lines += [
            "## Evaluation",
            "",
            "#" + report.replace("\n# ", "\n### ") if report.startswith("# ") else report,
            "",
        ]
    lines += ["Loading: `chromaflow.models.shipped.load_shipped(name)` checks the sha256 above and loads strictly."]
    return "\n".join(lines) + "\n"


def _code_list(paths: str | list[str]) -> str:
    """``a`` or ``a`` + ``b``: the training data folders as Markdown code."""
    return " + ".join(f"`{p}`" for p in ([paths] if isinstance(paths, str) else paths))


def _training_summary(segments: list[dict[str, Any]]) -> str:
    steps = sum(s.get("step") or 0 for s in segments)
    minutes = sum(s.get("wall_s") or 0 for s in segments) / 60
    parts = f" in {len(segments)} segments" if len(segments) > 1 else ""
    loss = segments[-1].get("final_loss")
    loss_text = "-" if loss is None else f"{loss:.3f}"
    return f"{steps:,} steps{parts}, final loss {loss_text}, {minutes:.0f} min of CPU wall time"


def _segments_table(segments: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of the per-segment training table (none for a single segment)."""
    if len(segments) < 2:
        return []
    keys = ("step", "first_loss", "final_loss", "val_loss")
    rows = [
        [i + 1, f"`{s['dir']}`", *(s.get(k) for k in keys), round((s.get("wall_s") or 0) / 60)]
        for i, s in enumerate(segments)
    ]
    header = ["segment", "output", "steps", "first loss", "final loss", "val loss", "CPU min"]
    return ["Training segments, each continued from the previous one's weights:", "", markdown_table(rows, header, 3)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="shipped model name (folder under weights/)")
    parser.add_argument(
        "--train",
        required=True,
        action="append",
        help="finished `chromaflow train` output folder; repeat for a training continued in segments, in order",
    )
    parser.add_argument("--evaluation", help="`chromaflow evaluate` output folder of the same weights")
    parser.add_argument("--data", required=True, action="append",
                        help="the prepared training data (for its hash); repeat for each --extra-data, in order")  # fmt: skip
    parser.add_argument(
        "--command", action="append", default=[], help="a command that reproduces it (repeat, in order)"
    )
    parser.add_argument("--description", default="", help="a paragraph for the model card")
    parser.add_argument("--out-root", help="folder of shipped models (default: weights/)")
    parser.add_argument("--code-commit", help="commit the model was trained at (default: HEAD)")


def main(args: argparse.Namespace) -> int:
    c = ship(
        args.name, args.train, args.evaluation, data=args.data, command=args.command,
        description=args.description, out_root=args.out_root, code_commit=args.code_commit,
    )  # fmt: skip
    print(f"shipped {c['name']}: sha256 {c['sha256']}, {c['bytes'] / 2**20:.2f} MiB")
    return 0
