"""List the image files of a source URL, with a stable id, a label and a source-given split for each.

A source is any fsspec URL:

- a local or remote folder (``data/sample``, ``memory://imgs``, ``s3://bucket/imgs``);
- a folder inside an archive, through fsspec chaining
  (``zip://tiny-imagenet-200/train::/data/tiny.zip``, ``tar://images::/data/x.tar``); a bare
  ``*.zip`` / ``*.tar`` / ``*.tar.gz`` / ``*.tgz`` path is read as the whole archive;
- a file list (``*.txt`` / ``*.lst``): one path or URL a line (blank lines and ``#`` comments skipped;
  relative paths are relative to the list's folder).

The id of a file is its path relative to the source root (POSIX, stable across machines).
Layouts understood (labels and splits are inferred from the relative path):

- split folders ``train/``, ``val/``, ``valid/``, ``validation/``, ``test/`` anywhere below the root give the
  split (``test`` and ``valid*`` map to ``"val"``: the shard schema has train and val only);
- class folders: the first folder below the split folder (or below the root) is the label, skipping
  ``images/`` (Tiny-ImageNet ``train/<wnid>/images/*.JPEG``, CIFAR-10 ``train/<class>/*.jpg``);
- Tiny-ImageNet ``val/val_annotations.txt`` gives the labels of the val images (overrides folders);
- flat folders: a ``<wnid>_<name>.<ext>`` filename (``n01440764_tench.jpg``) gives the wnid as label;
  other flat files have no label.

A source root that is itself a split folder (``.../train``) has no split folders below it: its files
are split by hash like any other unsplit source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "val"}
SKIP_LABEL_DIRS = {"images", "imgs"}
# Metadata files of known layouts: consumed (annotations) or ignored, listed in the manifest, never decoded.
METADATA_NAMES = {"val_annotations.txt", "wnids.txt", "words.txt"}
LIST_SUFFIXES = (".txt", ".lst")
ARCHIVE_PROTOCOLS = {".zip": "zip", ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar"}
WNID_RE = re.compile(r"^(n\d{8})_")
# Fields of an fsspec ``info`` dict that change when a file's content changes (besides ``size``).
CHANGE_KEYS = ("mtime", "CRC", "chksum", "ETag", "etag", "md5", "LastModified", "last_modified", "created")


@dataclass(frozen=True)
class Entry:
    """One file of a source: where to read it and what the layout says about it."""

    id: str  # path relative to the source root, POSIX
    fs: Any  # the fsspec filesystem holding it
    path: str  # path inside ``fs``
    size: int | None
    marker: str  # what changes with the content (mtime, CRC, ...), for the fingerprint
    label: str | None
    split: str | None  # "train" | "val" when the layout gives it, else None


@dataclass
class Listing:
    """All files of a source: image candidates, metadata files, and unreadable list entries."""

    source: str
    entries: list[Entry]
    metadata: list[str]
    unreadable: list[dict]  # [{path, reason}] for file-list entries that could not be opened

    def fingerprint(self, params: dict) -> str:
        """sha1 over the listing (ids relative to the source root, sizes, change markers) and the parameters.

        The source's own location is left out: the same files reached as ``../shared/x.zip`` or
        ``/work/shared/x.zip`` (another working directory, another machine) are the same data and get one
        fingerprint, so the data hash a model card records is reproducible from its command."""
        h = hashlib.sha1()
        h.update(json.dumps({"params": params}, sort_keys=True).encode())
        for e in self.entries:
            h.update(f"\n{e.id}\t{e.size}\t{e.marker}".encode())
        for m in self.metadata:
            h.update(f"\nmeta:{m}".encode())
        for u in self.unreadable:
            h.update(f"\nbad:{u['path']}".encode())
        return h.hexdigest()


def _marker(info: dict) -> str:
    return ";".join(f"{k}={info[k]}" for k in CHANGE_KEYS if k in info and info[k] is not None)


def _local_or_marker(fs: Any, path: str, info: dict) -> str:
    """Change marker of a file: its md5 on a local disk (mtimes do not survive a git clone, so an mtime would
    make a fresh clone's manifest differ, and DVC's output hash with it), else what the filesystem reports
    (zip CRC, object-store ETag, ...)."""
    if isinstance(fs, LocalFileSystem):
        with open(path, "rb") as f:
            return "md5=" + hashlib.file_digest(f, "md5").hexdigest()
    return _marker(info)


def _normalize_url(source: str) -> str:
    """Turn a bare archive path into a chained URL over the whole archive."""
    if "::" in source:
        return source
    low = source.lower()
    for suffix, proto in ARCHIVE_PROTOCOLS.items():
        if low.endswith(suffix):
            return f"{proto}://::{source}"
    return source


def infer_split_label(rel: str) -> tuple[str | None, str | None]:
    """(split, label) from a source-relative POSIX path; see the module docstring for the rules.

    >>> infer_split_label("tiny-imagenet-200/train/n01443537/images/n01443537_0.JPEG")
    ('train', 'n01443537')
    >>> infer_split_label("n01440764_tench.jpg")
    (None, 'n01440764')
    """
    parts = rel.split("/")
    dirs, name = parts[:-1], parts[-1]
    split, below = None, dirs
    for i, d in enumerate(dirs):
        if d.lower() in SPLIT_DIRS:
            split, below = SPLIT_DIRS[d.lower()], dirs[i + 1 :]
            break
    label = next((d for d in below if d.lower() not in SKIP_LABEL_DIRS), None)
    if label is None:
        m = WNID_RE.match(name)
        label = m.group(1) if m else None
    return split, label


def _read_annotations(fs, path: str) -> dict[str, str]:
    """Tiny-ImageNet ``val_annotations.txt``: ``<file>\\t<wnid>\\t<box>`` -> {file: wnid}."""
    out = {}
    for line in fs.cat_file(path).decode("utf-8", "replace").splitlines():
        cols = line.split("\t")
        if len(cols) >= 2 and cols[0].strip():
            out[cols[0].strip()] = cols[1].strip()
    return out


def _list_folder(source: str) -> Listing:
    fs, root = fsspec.core.url_to_fs(_normalize_url(source))
    root = root.rstrip("/")
    if root and not fs.exists(root):
        raise FileNotFoundError(f"source {source!r}: path {root!r} does not exist")
    if root and fs.isfile(root):
        raise ValueError(f"source {source!r} is a single file: give a folder, an archive or a .txt file list")
    found = fs.find(root, detail=True) if root else fs.find("", detail=True)
    entries, metadata, annotations = [], [], {}
    prefix = f"{root}/" if root else ""
    for path in sorted(found):
        info = found[path]
        if info.get("type", "file") != "file":
            continue
        rel = path[len(prefix) :] if path.startswith(prefix) else path.lstrip("/")
        name = posixpath.basename(rel)
        if name in METADATA_NAMES:
            metadata.append(rel)
            if name == "val_annotations.txt":
                folder = posixpath.dirname(rel)
                for fname, wnid in _read_annotations(fs, path).items():
                    annotations[(folder, fname)] = wnid
            continue
        entries.append((rel, path, info))
    out = []
    for rel, path, info in entries:
        split, label = infer_split_label(rel)
        # an annotation file labels the images below its folder by file name (val/images/val_0.JPEG)
        if annotations:
            name = posixpath.basename(rel)
            d = posixpath.dirname(rel)
            while True:
                if (d, name) in annotations:
                    label = annotations[(d, name)]
                    break
                if not d:
                    break
                d = posixpath.dirname(d)
        out.append(Entry(rel, fs, path, info.get("size"), _local_or_marker(fs, path, info), label, split))
    return Listing(source, out, metadata, [])


def _list_file_list(source: str) -> Listing:
    lfs, lpath = fsspec.core.url_to_fs(source)
    base = posixpath.dirname(lpath)
    lines = lfs.cat_file(lpath).decode("utf-8", "replace").splitlines()
    items = []  # (original line, fs, path)
    unreadable = []
    seen = set()
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#") or line in seen:
            continue
        seen.add(line)
        url = line if ("://" in line or line.startswith("/")) else posixpath.join(base, line)
        if "://" not in url and lfs.protocol not in ("file", "local", ("file", "local")):
            url = lfs.unstrip_protocol(url)
        try:
            fs, path = fsspec.core.url_to_fs(_normalize_url(url))
            info = fs.info(path)
            if info.get("type", "file") != "file":
                raise IsADirectoryError("is a folder, not a file")
        except Exception as exc:  # noqa: BLE001 - any failure to open an entry is a rejection, not a crash
            unreadable.append({"path": line, "reason": f"unreadable: {type(exc).__name__}: {exc}"})
            continue
        items.append((line, fs, path, info))
    # ids: paths relative to the common folder of all entries (basename when there is one entry)
    dirs = [posixpath.dirname(p) for _, _, p, _ in items]
    common = posixpath.commonpath(dirs) if dirs and all(d.startswith("/") for d in dirs) else ""
    if not common and dirs and len(set(dirs)) == 1:
        common = dirs[0]
    out = []
    for _line, fs, path, info in sorted(items, key=lambda t: t[2]):
        rel = posixpath.relpath(path, common) if common else path.lstrip("/")
        split, label = infer_split_label(rel)
        out.append(Entry(rel, fs, path, info.get("size"), _marker(info), label, split))
    ids = [e.id for e in out]
    if len(set(ids)) != len(ids):  # same relative path from two filesystems: fall back to full URLs
        out = [Entry(e.fs.unstrip_protocol(e.path), e.fs, e.path, e.size, e.marker, e.label, e.split) for e in out]
    return Listing(source, out, [], unreadable)


def list_source(source: str) -> Listing:
    """List a source URL (folder, archive, or ``.txt`` file list); raise a clear error if it cannot be read."""
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a non-empty URL or path, got {source!r}")
    try:
        if "::" not in source and source.lower().endswith(LIST_SUFFIXES):
            return _list_file_list(source)
        return _list_folder(source)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as exc:  # noqa: BLE001 - name the source in the message
        raise OSError(f"source {source!r} cannot be listed: {type(exc).__name__}: {exc}") from exc
