"""``--out`` as an fsspec URL (``s3://``, ``gs://``, ``file://``): the engine writes a local folder, staged here.

    with staged("s3://bucket/runs/c") as local:   # local: a temp folder holding the URL's resume state
        fit(task, TrainConfig(out=local, ...))      # checkpoint.pt etc. are written locally (rank 0)
    # on exit, rank 0 uploads every file of ``local`` to the URL

Resume and the finished-run no-op work across runs: what the URL already holds of :data:`STATE` is
downloaded first. Only the end of a run uploads (a preempted run resumes from the last uploaded state).
A plain path or ``file://`` URL is used in place, unstaged. The local folder is named by the URL's hash
(the engine's fingerprint includes the output folder, and every rank must decide alike), shared by the
ranks of a machine; rank 0 (``upload=True``) removes it after uploading.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

STATE = ("checkpoint.pt", "metrics.json", "model.safetensors", "history.csv", "timing.json")


def is_remote(out: str | os.PathLike) -> bool:
    """True for an fsspec URL other than ``file://``."""
    return "://" in str(out) and not str(out).startswith("file://")


def local_path(out: str | os.PathLike) -> str:
    """``file:///a/b`` -> ``/a/b``; other values unchanged."""
    return str(out).removeprefix("file://")


@contextlib.contextmanager
def staged(out: str | os.PathLike, *, upload: bool = True) -> Iterator[str]:
    """A local folder standing for ``out`` (itself when local); ``upload``: copy it back to ``out`` on success."""
    if not is_remote(out):
        yield local_path(out)
        return
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(out))
    root = root.rstrip("/")
    tmp = Path(tempfile.gettempdir()) / f"chromaflow-out-{hashlib.sha256(str(out).encode()).hexdigest()[:16]}"
    tmp.mkdir(parents=True, exist_ok=True)
    for name in STATE:
        if fs.exists(f"{root}/{name}"):
            part = tmp / f".{name}.{os.getpid()}"
            fs.get(f"{root}/{name}", str(part))
            os.replace(part, tmp / name)  # other ranks on this machine may be reading it
        else:
            (tmp / name).unlink(missing_ok=True)  # left by an earlier run that never uploaded
    yield str(tmp)
    if upload:
        fs.makedirs(root, exist_ok=True)
        for f in sorted(tmp.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                fs.put(str(f), f"{root}/{f.name}")
        shutil.rmtree(tmp, ignore_errors=True)


def read_metrics(out: str | os.PathLike) -> dict:
    """``<out>/metrics.json`` of a finished run at a path or URL (``FileNotFoundError`` naming it if absent)."""
    import json

    import fsspec

    url = f"{str(out).rstrip('/')}/metrics.json"
    try:
        with fsspec.open(url if is_remote(out) else local_path(url)) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{url} is missing: is --out on storage the nodes share (a URL or a shared volume)?"
        ) from None


def download(out: str, folder: str | os.PathLike) -> None:
    """Copy every file at the URL ``out`` (a finished run's outputs) into the local ``folder``."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(out))
    Path(folder).mkdir(parents=True, exist_ok=True)
    for path in fs.ls(root.rstrip("/"), detail=False):
        if fs.isfile(path):
            fs.get(path, str(Path(folder) / Path(path).name))
