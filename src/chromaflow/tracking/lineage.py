"""Lineage tags put on every run and every model version: code, data, params and pipeline run.

chromaflow.git_commit       ``git rev-parse HEAD`` of the repo ("unknown" outside git)
chromaflow.git_dirty        "true" | "false" | "unknown" (uncommitted changes to tracked files)
chromaflow.data_hash        :func:`data_hash` of the inputs ("none" when no input was given)
chromaflow.params_hash      sha256 of the canonical JSON of the params
chromaflow.pipeline_run_id  ``$CHROMAFLOW_PIPELINE_RUN_ID`` or a KFP run id passed in ("local" else)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PREFIX = "chromaflow."
SMALL_FILE = 1 << 20  # files above 1 MiB are hashed by (name, size) only, not content
PIPELINE_ENV = "CHROMAFLOW_PIPELINE_RUN_ID"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(cwd: str | os.PathLike | None = None) -> tuple[str, str]:
    """``(commit, dirty)``: HEAD's sha (or "unknown" outside git / before the first commit) and "true"/"false"/"unknown"."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    sha = _git(["rev-parse", "HEAD"], where)
    if not sha:
        return "unknown", "unknown"
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    return sha, ("unknown" if status is None else str(bool(status)).lower())


def params_hash(params: Mapping[str, Any] | None) -> str:
    """sha256 hex of the canonical JSON (sorted keys, no spaces; non-JSON values as ``str``) of ``params``."""
    text = json.dumps(dict(params or {}), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def data_hash(path: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """md5 hex identifying a data input (or several, hashed in order), preferring existing fingerprints.

    - a folder with ``manifest.json`` holding a ``fingerprint`` (``prepare``'s output), or that manifest
      itself: md5 of the fingerprint;
    - a folder with ``dvc.lock``, or that lock itself: md5 of the lock's bytes;
    - otherwise md5 over the sorted listing (relative path, size) plus the bytes of files up to 1 MiB
      (a single file: its name, size and bytes).
    - a list or tuple of inputs: md5 of their hashes concatenated in order (one input: its own hash).
    Raises ``FileNotFoundError`` naming ``path`` when it does not exist.
    """
    if isinstance(path, (list, tuple)):
        if len(path) == 1:
            return data_hash(path[0])
        return hashlib.md5("".join(data_hash(p) for p in path).encode(), usedforsecurity=False).hexdigest()
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data_hash: input {p} does not exist")
    h = hashlib.md5(usedforsecurity=False)
    if p.is_dir():
        fp = _manifest_fingerprint(p / "manifest.json")
        if fp:
            h.update(f"manifest:{fp}".encode())
            return h.hexdigest()
        lock = p / "dvc.lock"
        if lock.is_file():
            h.update(b"dvc.lock:" + lock.read_bytes())
            return h.hexdigest()
        for f in sorted(q for q in p.rglob("*") if q.is_file() and ".git" not in q.relative_to(p).parts):
            rel = f.relative_to(p).as_posix()
            size = f.stat().st_size
            h.update(f"{rel}\0{size}\0".encode())
            if size <= SMALL_FILE:
                h.update(f.read_bytes())
        return h.hexdigest()
    fp = _manifest_fingerprint(p) if p.name == "manifest.json" else None
    if fp:
        h.update(f"manifest:{fp}".encode())
    elif p.name == "dvc.lock":
        h.update(b"dvc.lock:" + p.read_bytes())
    else:
        size = p.stat().st_size
        h.update(f"{p.name}\0{size}\0".encode())
        if size <= SMALL_FILE:
            h.update(p.read_bytes())
    return h.hexdigest()


def _manifest_fingerprint(manifest: Path) -> str | None:
    """The ``fingerprint`` field of a ``prepare`` manifest, or ``None`` when absent/unreadable."""
    if not manifest.is_file():
        return None
    try:
        fp = json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    return str(fp) if fp else None


def pipeline_run_id(kfp_run_id: str | None = None) -> str:
    """``kfp_run_id`` when given, else ``$CHROMAFLOW_PIPELINE_RUN_ID``, else "local"."""
    return kfp_run_id or os.environ.get(PIPELINE_ENV, "").strip() or "local"


def lineage_tags(
    params: Mapping[str, Any] | None = None,
    data: str | os.PathLike | list[str | os.PathLike] | None = None,
    kfp_run_id: str | None = None,
) -> dict[str, str]:
    """All lineage tags as strings (see the module docstring); several data inputs hash in order."""
    sha, dirty = git_commit()
    dhash = "none" if data is None or (isinstance(data, (list, tuple)) and not data) else data_hash(data)
    return {
        PREFIX + "git_commit": sha,
        PREFIX + "git_dirty": dirty,
        PREFIX + "data_hash": dhash,
        PREFIX + "params_hash": params_hash(params),
        PREFIX + "pipeline_run_id": pipeline_run_id(kfp_run_id),
    }
