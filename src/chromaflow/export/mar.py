"""``chromaflow export``: a TorchServe ``.mar`` from a registered model (or a local weights file).

    chromaflow export --model models:/chromaflow-colorization@champion --out runs/export   # -> colorize.mar
    chromaflow export --weights runs/demo/train/model.safetensors --out runs/export        # -> colorize.mar

The archive holds only data and the thin handler, never a pickled model object:

    model.safetensors        state_dict + config + Lab contract (chromaflow.models.save_weights)
    chromaflow_model.json    name, version, model URI, weights sha256, config, contract, lineage tags
    model-config.yaml        TorchServe batching settings + the handler's settings (serving/model-config.yaml)
    colorize_handler.py      the TorchServe adapter (serving/colorize_handler.py) over chromaflow.serving

A ``siggraph17`` (user-guided, thesis ch. 3) model gets ``guided_handler.py`` and ``guided-model-config.yaml``
instead (its default name is ``colorize_guided``); ``chromaflow serve`` registers that one archive under the
endpoint names ``colorize_guided``, ``palette`` and ``gamut``. A ``bicyclegan`` (thesis ch. 4) model gets
``translate_handler.py`` and ``translate-model-config.yaml`` (default name ``translate``).

An LPIPS model (``lpips`` or a ``chromaflow train --task lpips`` output ``lpips_2afc``, thesis ch. 6; its
description's handler is ``lpips``) is strictly loaded once, then its file is packed as is as
``lpips.safetensors`` with ``lpips_handler.py`` and ``lpips-model-config.yaml`` (default name ``lpips``)::

    chromaflow export --weights runs/lpips/lin/lpips.safetensors --out runs/export      # -> lpips.mar
    chromaflow export --model models:/chromaflow-lpips@champion --out runs/export       # -> lpips.mar

From the registry, an LPIPS version's weights file itself is downloaded (sha256-checked against the version's
``chromaflow.weights_sha256`` tag) and goes through that local-file path; a colorization / guided model is
re-saved from the strictly loaded module (``save_weights``) as before.

The serving environment must have chromaflow installed (the Docker image does); the archive records the
chromaflow version it was built with. Beside the archive, ``<name>.json`` repeats ``chromaflow_model.json``
plus the archive's sha256. Re-running with the same inputs is a no-op.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import chromaflow
from chromaflow.export.handler_settings import (
    ARCHIVE_META,
    LPIPS_WEIGHTS_FILE,
    GuidedConfig,
    LpipsConfig,
    ServiceConfig,
    TranslateConfig,
)
from chromaflow.io import atomic_path, read_json, write_json
from chromaflow.models import read_config, sha256_file
from chromaflow.resources import serving_dir

log = logging.getLogger(__name__)

SERVING_DIR = serving_dir()  # handler + model config templates (the repo's serving/ folder, packaged)
HANDLER = "colorize_handler.py"
MODEL_CONFIG = "model-config.yaml"
WEIGHTS = "model.safetensors"
DEFAULT_NAME = "colorize"  # the automatic model's one served name (/predictions/colorize)


@dataclass(frozen=True)
class HandlerKind:
    """What one kind of model is served with: handler file and model-config template (in ``serving/``),
    the settings class of its ``handler:`` section, and the default archive name."""

    handler: str
    model_config: str
    settings: Any
    default_name: str
    weights: str = WEIGHTS  # the weights file's name inside the archive


def handler_kind(model_name: str) -> HandlerKind:
    """The :class:`HandlerKind` of a registry model name: its description's ``handler`` (``guided`` for
    ``siggraph17``, ``lpips`` for the LPIPS models, ``translate`` for ``bicyclegan``); a model without one is served by the automatic colorize
    handler."""
    from chromaflow.models import described_models

    description = described_models().get(model_name)
    handler = None if description is None else description.handler
    if handler == "guided":
        return HandlerKind("guided_handler.py", "guided-model-config.yaml", GuidedConfig, "colorize_guided")
    if handler == "lpips":
        return HandlerKind("lpips_handler.py", "lpips-model-config.yaml", LpipsConfig, "lpips", LPIPS_WEIGHTS_FILE)
    if handler == "translate":
        return HandlerKind("translate_handler.py", "translate-model-config.yaml", TranslateConfig, "translate")
    return HandlerKind(HANDLER, MODEL_CONFIG, ServiceConfig, DEFAULT_NAME)


def _packs_file(kind: HandlerKind) -> bool:
    """Whether an archive of ``kind`` packs the weights file itself (LPIPS) rather than a re-save of the model."""
    return kind.weights != WEIGHTS


def _stage_local(src: Path, stage: Path) -> tuple[dict[str, Any], HandlerKind, Path]:
    """``(config, kind, staged weights)``: ``src`` (a ``save_weights`` file; an LPIPS one checked by loading it
    strictly) copied into ``stage`` under its kind's archive name; anything else raises ``ValueError`` naming
    the file."""
    config = read_config(src)  # raises ValueError naming the file when it is not a chromaflow weights file
    kind = handler_kind(str(config.get("name")))
    if _packs_file(kind):
        from chromaflow.models import load_weights

        try:
            load_weights(src)  # strict: every tensor present with its shape, config valid
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"export_mar: {src}: not a loadable {config.get('name')} file ({e})") from None
    weights = stage / kind.weights
    weights.write_bytes(src.read_bytes())
    return config, kind, weights


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")  # what torch-model-archiver accepts


def _sha256(path: Path) -> str:
    return sha256_file(path)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` or ``obj.key`` (version info may be a dict or an MLflow ``ModelVersion``)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _from_registry(model_uri: str, tracking_uri: str | None, dst: Path) -> tuple[Any, dict[str, Any], Path]:
    """Load ``models:/name@alias`` (or ``/version``) with ``load_registered``, keeping the downloaded (and
    sha256-verified) weights file under ``dst``; return ``(model, name/version/lineage info, that file)``."""
    from chromaflow.export.mlflow_model import load_registered

    dst.mkdir()
    model, info = load_registered(model_uri, tracking_uri=tracking_uri, dst=str(dst))
    tags = dict(_get(info, "tags", None) or {})
    name = _get(info, "name") or model_uri[len("models:/") :].split("@")[0].split("/")[0]
    sha = _get(info, "weights_sha256")
    files = sorted(p for p in dst.rglob("*") if p.is_file())
    if len(files) != 1:
        raise ValueError(f"export_mar: {model_uri}: expected one downloaded weights file, got {len(files)}")
    downloaded = files[0]
    if not sha or _sha256(downloaded).lower() != str(sha).lower():  # load_registered checked it; so do we
        raise ValueError(f"export_mar: {model_uri}: downloaded weights sha256 != the version's tag {sha!r}")
    out = {
        "name": str(name),
        "version": str(_get(info, "version", "0")),
        "run_id": _get(info, "run_id"),
        "aliases": list(_get(info, "aliases", None) or []),
        "registry_weights_sha256": sha,
        "lineage": {k: str(v) for k, v in tags.items() if k.startswith("chromaflow.")},
    }
    return model, out, downloaded


def _model_config(
    batch_size: int | None,
    max_batch_delay_ms: int | None,
    handler: Mapping[str, Any] | None,
    kind: HandlerKind | None = None,
) -> dict:
    """serving/model-config.yaml (or the kind's template) with overrides; the handler section is validated here,
    not at serve time."""
    kind = kind or handler_kind("")
    cfg = yaml.safe_load((SERVING_DIR / kind.model_config).read_text(encoding="utf-8"))
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"export_mar: batch_size must be >= 1, got {batch_size}")
        cfg["batchSize"] = int(batch_size)
    if max_batch_delay_ms is not None:
        if max_batch_delay_ms < 0:
            raise ValueError(f"export_mar: max_batch_delay_ms must be >= 0, got {max_batch_delay_ms}")
        cfg["maxBatchDelay"] = int(max_batch_delay_ms)
    cfg["handler"] = {**(cfg.get("handler") or {}), **dict(handler or {})}
    kind.settings.from_mapping(cfg["handler"])  # raises on unknown keys / bad values
    return cfg


def served_settings(model_name: str = "eccv16") -> Any:
    """The validated ``handler:`` settings an archive of ``model_name`` is served with (its ``serving/`` template):
    ``ServiceConfig`` (size, method, ...) or, for ``siggraph17``, ``GuidedConfig``."""
    kind = handler_kind(model_name)
    return kind.settings.from_mapping(_model_config(None, None, None, kind)["handler"])


def export_mar(
    model_uri: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    tracking_uri: str | None = None,
    name: str | None = None,
    version: str | None = None,
    batch_size: int | None = None,
    max_batch_delay_ms: int | None = None,
    handler_config: Mapping[str, Any] | None = None,
) -> Path:
    """Build ``<out_dir>/<name>.mar`` and ``<out_dir>/<name>.json``; return the archive's path.

    Args:
        model_uri: ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` (MLflow registry, via
            ``chromaflow.export.mlflow_model.load_registered``), or the path of a ``save_weights`` file. An LPIPS
            registration is packed from its downloaded weights file (sha256 equal to the version's tag), not re-saved.
        tracking_uri: MLflow tracking URI for ``models:/`` URIs (default: ``chromaflow.tracking`` rules).
        name: model name in TorchServe (default: the served name of the model's kind, registered or not:
            ``colorize``, ``colorize_guided`` or ``lpips``, so one model has one URL whatever its registry name;
            the registered name is kept in the archive's metadata).
        version: archive version (default: the registry version, or ``0`` for a file).
        batch_size, max_batch_delay_ms: override serving/model-config.yaml's batching.
        handler_config: overrides of its ``handler:`` section (max_pixels, size, method, num_threads; for a
            siggraph17 model the keys of :class:`chromaflow.export.handler_settings.GuidedConfig`, for LPIPS those of
            :class:`chromaflow.export.handler_settings.LpipsConfig`).

    Raises ``FileNotFoundError`` / ``ValueError`` naming the input and the reason.
    """
    out_dir = Path(out_dir)
    uri = os.fspath(model_uri)
    _model_config(batch_size, max_batch_delay_ms, None)  # batching arguments fail before any work
    with tempfile.TemporaryDirectory(prefix="chromaflow-export-") as tmp:
        stage = Path(tmp)
        if uri.startswith("models:/"):
            model, info, downloaded = _from_registry(uri, tracking_uri, stage / "registry")
            if _packs_file(handler_kind(str(read_config(downloaded).get("name")))):
                config, kind, weights = _stage_local(downloaded, stage)  # the registered file, as for a local one
            else:
                from chromaflow.models import save_weights

                weights = stage / WEIGHTS
                save_weights(model, weights)
                config = read_config(weights)
                kind = handler_kind(str(config.get("name")))
        else:
            src = Path(uri)
            if not src.is_file():
                raise FileNotFoundError(f"export_mar: weights {src}: no such file (or pass a models:/ URI)")
            config, kind, weights = _stage_local(src, stage)
            info = {"name": None, "version": "0", "run_id": None, "aliases": [], "lineage": {}}
            info["registry_weights_sha256"] = None
            uri = str(src.resolve())
        cfg = _model_config(batch_size, max_batch_delay_ms, handler_config, kind)
        info["name"] = info["name"] or kind.default_name
        name = name or kind.default_name  # served by kind: /predictions/colorize whatever the registry calls it
        if not NAME_RE.match(name):
            raise ValueError(f"export_mar: name {name!r} must match {NAME_RE.pattern}")
        meta = {
            "name": name,
            "version": str(version or info["version"]),
            "model_uri": uri,
            "registered_name": info["name"] if uri.startswith("models:/") else None,
            "run_id": info["run_id"],
            "aliases": info["aliases"],
            "registry_weights_sha256": info["registry_weights_sha256"],
            "lineage": info["lineage"],
            "weights": kind.weights,
            "sha256": _sha256(weights),
            "config": config,
            "contract": config.get("contract"),
            "model_config": cfg,
            "chromaflow_version": chromaflow.__version__,
        }
        mar, sidecar = out_dir / f"{name}.mar", out_dir / f"{name}.json"
        if _up_to_date(mar, sidecar, meta):
            log.info("export: %s is up to date (weights sha256 %s)", mar, meta["sha256"][:12])
            return mar
        (stage / ARCHIVE_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (stage / MODEL_CONFIG).write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        built = _archive(stage, name, meta["version"], kind.handler, kind.weights)
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(mar) as tmp_mar:
            shutil.move(built, tmp_mar)  # the build dir may be on another filesystem (a container's /tmp)
    write_json(sidecar, {**meta, "archive": mar.name, "archive_sha256": _sha256(mar)})
    log.info("export: wrote %s (version %s, weights sha256 %s)", mar, meta["version"], meta["sha256"][:12])
    return mar


def _up_to_date(mar: Path, sidecar: Path, meta: dict[str, Any]) -> bool:
    if not (mar.is_file() and sidecar.is_file()):
        return False
    try:
        old = read_json(sidecar)
    except (OSError, ValueError):
        return False
    same = {k: old.get(k) for k in meta} == json.loads(json.dumps(meta, default=str))
    return same and old.get("archive_sha256") == _sha256(mar)


def _archive(stage: Path, name: str, version: str, handler: str = HANDLER, weights: str = WEIGHTS) -> Path:
    """Run torch-model-archiver on the staged files (private TMPDIR: it stages under $TMPDIR/<name>)."""
    export_dir = stage / "out"
    export_dir.mkdir()
    private_tmp = stage / "tmp"
    private_tmp.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "model_archiver.model_packaging",
        "--model-name",
        name,
        "--version",
        version,
        "--serialized-file",
        str(stage / weights),
        "--handler",
        str(SERVING_DIR / handler),
        "--extra-files",
        str(stage / ARCHIVE_META),
        "--config-file",
        str(stage / MODEL_CONFIG),
        "--export-path",
        str(export_dir),
    ]
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    built = export_dir / f"{name}.mar"
    if proc.returncode != 0 or not built.is_file():
        raise RuntimeError(
            f"export_mar: torch-model-archiver failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return built


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="registered model URI, e.g. models:/chromaflow-colorization@champion")
    src.add_argument(
        "--weights",
        type=Path,
        help="a local weights file (save_weights, e.g. a train output), no registry",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder for <name>.mar and <name>.json")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    parser.add_argument(
        "--name",
        default=None,
        help="model name in TorchServe (default: its kind's: colorize, colorize_guided, lpips, translate)",
    )
    parser.add_argument("--version", default=None, help="archive version (default: the registry version)")
    parser.add_argument("--batch-size", type=int, default=None, help="override batchSize of serving/model-config.yaml")
    parser.add_argument("--max-batch-delay", type=int, default=None, help="override maxBatchDelay (ms)")
    parser.add_argument("--max-pixels", type=int, default=None, help="largest accepted image (W*H); 413 above")
    parser.add_argument(
        "--size", type=int, default=None, help="side of the square L the network sees (handler.size; colorization: 64)"
    )


def main(args: argparse.Namespace) -> int:
    handler = {k: v for k, v in (("max_pixels", args.max_pixels), ("size", args.size)) if v is not None} or None
    mar = export_mar(
        args.model or args.weights,
        args.out,
        tracking_uri=args.tracking_uri,
        name=args.name,
        version=args.version,
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay,
        handler_config=handler,
    )
    print(mar)
    return 0
