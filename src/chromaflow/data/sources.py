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

Odd entries of a local folder are listed as rejected with the reason, never read and never skipped silently:
symbolic links (``follow_symlinks=True`` follows the ones whose target stays inside the source root), fifos,
sockets and devices. File names are handled as bytes: a name that is not UTF-8 gets an id with its odd bytes
escaped (``caf\\xe9.jpg``, see :func:`display_name`) and its image is ingested; UTF-8 names are their own id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from chromaflow.data.images import too_large
from chromaflow.data.parts import check_part, part_range

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
    raw_id: bytes | None = None  # the id's bytes when the name is not UTF-8 (``id`` then escapes them)
    follow: bool = False  # read through a link: a file list names it; a folder's files are opened O_NOFOLLOW


@dataclass
class Listing:
    """All files of a source: image candidates, metadata files, and entries rejected while listing."""

    source: str
    entries: list[Entry]
    metadata: list[str]
    unreadable: list[dict]  # [{path, reason}]: list entries that cannot be opened, links, fifos, devices...

    shared_rejects: int | None = None  # a part's listing: how many leading ``unreadable`` every part lists too
    total: int | None = None  # a part's listing: image candidates of the whole source (before its share)

    def records(self) -> list[bytes]:
        """One line per entry for the fingerprint: the name's own bytes (== the id's UTF-8 for every UTF-8
        name), size and change marker."""
        return [(e.raw_id or e.id.encode()) + f"\t{e.size}\t{e.marker}".encode() for e in self.entries]

    def fingerprint(self, params: dict) -> str:
        """sha1 over the listing (ids relative to the source root, sizes, change markers) and the parameters.

        The source's own location is left out: the same files reached as ``../shared/x.zip`` or
        ``/work/shared/x.zip`` (another working directory, another machine) are the same data and get one
        fingerprint, so the data hash a model card records is reproducible from its command."""
        return fingerprint_of(params, self.records(), self.metadata, self.unreadable)


def fingerprint_of(params: dict, records: list[bytes], metadata: list[str], unreadable: list[dict]) -> str:
    """The fingerprint of :meth:`Listing.fingerprint` from its parts (a merge of parts' records gives the
    single listing's value)."""
    h = hashlib.sha1()
    h.update(json.dumps({"params": params}, sort_keys=True).encode())
    for r in records:
        h.update(b"\n" + r)
    for m in metadata:
        h.update(f"\nmeta:{m}".encode())
    for u in unreadable:
        h.update(f"\nbad:{u['path']}".encode())
    return h.hexdigest()


def name_bytes(name: str) -> bytes:
    """The bytes of a file name as the OS gave it (``os.fsencode``: surrogate escapes back to their bytes)."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no undecodable byte produced
        return name.encode("utf-8", "surrogatepass")


def display_name(name: str | bytes) -> str:
    """A file name as valid text for ids, manifests and JSON: bytes that are not UTF-8 become ``\\xNN``.

    A UTF-8 name is returned unchanged, so ids (and every hash over them) of ordinary names do not depend on
    this. ``display_name(b"caf\\xe9.jpg") == "caf\\\\xe9.jpg"``.
    """
    raw = name if isinstance(name, bytes) else name_bytes(name)
    return raw.decode("utf-8", "backslashreplace")


def _kind(mode: int) -> str:
    for test, what in (
        (stat.S_ISFIFO, "a fifo"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return what
    return "not a regular file"


def open_regular(path: str | os.PathLike, *, follow_symlinks: bool = False) -> BinaryIO:
    """Open a regular local file for reading, never anything else.

    A symbolic link (unless ``follow_symlinks``), a fifo, socket or device raises ``ValueError`` naming what it
    is before any byte is read (opened non-blocking: a fifo without a writer cannot hang the step); a file that
    cannot be opened raises ``OSError``.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow_symlinks and os.path.islink(path):
            raise ValueError("a symbolic link: not followed") from None
        raise OSError(f"unreadable: {exc.strerror or exc}") from None
    f = os.fdopen(fd, "rb")
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        f.close()
        raise ValueError(f"{_kind(mode)}, not a regular file")
    return f


def read_regular(path: str | os.PathLike, *, follow_symlinks: bool = False) -> bytes:
    """The bytes of a regular local file (:func:`open_regular`); a file over
    :data:`~chromaflow.data.images.MAX_FILE_BYTES` raises ``ValueError`` before it is read."""
    with open_regular(path, follow_symlinks=follow_symlinks) as f:
        why = too_large(os.fstat(f.fileno()).st_size)
        if why:
            raise ValueError(why)
        return f.read()


def walk_folder(
    root: str | os.PathLike,
    *,
    follow_symlinks: bool = False,
    skip_hidden: bool = False,
    exclude: str | os.PathLike | None = None,
) -> tuple[list[tuple[str, str]], list[dict]]:
    """Every regular file below a local folder, without leaving it: ``([(rel, path)], [{path, reason}])``.

    ``rel``: the path relative to ``root`` (POSIX, the OS's name: undecodable bytes as surrogate escapes), sorted;
    ``path``: where to read it. Rejected (with the reason, by their ``display_name``): symbolic links (with
    ``follow_symlinks``, only those whose target is outside ``root``, broken, or a loop), fifos, sockets,
    devices, unreadable folders. A followed link keeps its own name as ``rel`` (its layout gives the split and
    label: ``train/cat -> ../pool/cat`` lists the pool's files a second time, as ``train/cat/...``); ``path`` is
    its target. ``skip_hidden``: names starting with ``.`` are neither listed nor entered; ``exclude``: a folder
    never entered (an output folder inside the input).
    """
    root = os.fspath(root)
    real_root = os.path.realpath(root)
    excluded = os.path.realpath(exclude) if exclude is not None else None
    files: list[tuple[str, str]] = []
    rejected: list[dict] = []
    walking = [real_root]  # real paths of the folders being walked: a link to one of them is a loop

    def reject(rel: str, reason: str) -> None:
        rejected.append({"path": display_name(rel), "reason": reason})

    def visit(folder: str, rel_dir: str) -> None:
        try:
            names = sorted(os.listdir(folder))
        except OSError as exc:
            reject(rel_dir or ".", f"unreadable folder: {exc.strerror or exc}")
            return
        for name in names:
            if skip_hidden and name.startswith("."):
                continue
            rel = f"{rel_dir}/{name}" if rel_dir else name
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    if not follow_symlinks:
                        reject(rel, "a symbolic link: not followed (--follow-symlinks follows links inside the root)")
                        continue
                    path = os.path.realpath(path)
                    if os.path.commonpath([real_root, path]) != real_root:
                        reject(rel, "a symbolic link to outside the source root: not followed")
                        continue
                    st = os.stat(path)
            except OSError as exc:
                reject(rel, f"unreadable: {exc.strerror or exc}")
                continue
            if stat.S_ISDIR(st.st_mode):
                real = os.path.realpath(path)
                if real == excluded:
                    continue
                if real in walking:
                    reject(rel, "a symbolic link to a folder that contains it (a loop): not followed")
                    continue
                walking.append(real)
                visit(path, rel)
                walking.pop()
            elif stat.S_ISREG(st.st_mode):
                files.append((rel, path))
            else:
                reject(rel, f"{_kind(st.st_mode)}, not a regular file")

    visit(root, "")
    files.sort(key=lambda t: t[0])
    return files, rejected


def _marker(info: dict) -> str:
    return ";".join(f"{k}={info[k]}" for k in CHANGE_KEYS if k in info and info[k] is not None)


def _local_or_marker(fs: Any, path: str, info: dict) -> str:
    """Change marker of a file: its md5 on a local disk (mtimes do not survive a git clone, so an mtime would
    make a fresh clone's manifest differ, and DVC's output hash with it), else what the filesystem reports
    (zip CRC, object-store ETag, ...)."""
    if isinstance(fs, LocalFileSystem):
        with open_regular(path) as f:
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


def _list_folder(source: str, follow_symlinks: bool = False, part: tuple[int, int] | None = None) -> Listing:
    fs, root = fsspec.core.url_to_fs(_normalize_url(source))
    root = root.rstrip("/")
    if root and not fs.exists(root):
        raise FileNotFoundError(f"source {source!r}: path {root!r} does not exist")
    if root and fs.isfile(root):
        raise ValueError(f"source {source!r} is a single file: give a folder, an archive or a .txt file list")
    rejected: list[dict] = []
    found: list[tuple[str, str, dict]] = []  # (rel, path, info)
    if isinstance(fs, LocalFileSystem):
        files, rejected = walk_folder(root, follow_symlinks=follow_symlinks)
        found = [(rel, path, {"size": os.stat(path).st_size}) for rel, path in files]
    else:
        prefix = f"{root}/" if root else ""
        detail = fs.find(root, detail=True) if root else fs.find("", detail=True)
        for path in sorted(detail):
            rel = path[len(prefix) :] if path.startswith(prefix) else path.lstrip("/")
            if detail[path].get("type", "file") != "file":  # a link or special member of an archive
                rejected.append(
                    {"path": display_name(rel), "reason": f"{detail[path].get('type')}, not a regular file"}
                )
                continue
            found.append((rel, path, detail[path]))
    entries, metadata, annotations = [], [], {}
    for rel, path, info in found:
        name = posixpath.basename(rel)
        if name in METADATA_NAMES:
            metadata.append(display_name(rel))
            if name == "val_annotations.txt":
                folder = posixpath.dirname(rel)
                for fname, wnid in _read_annotations(fs, path).items():
                    annotations[(folder, fname)] = wnid
            continue
        entries.append((rel, path, info))
    out, ids = [], set()
    shared = len(rejected)
    share = part_range(len(entries), *part) if part else range(len(entries))
    for pos, (rel, path, info) in enumerate(entries):
        raw, id_ = name_bytes(rel), display_name(rel)
        if id_ in ids:  # an escaped name spelled like another file's own name
            if pos in share:
                rejected.append({"path": id_, "reason": "its escaped name is another file's name: rename it"})
            continue
        ids.add(id_)
        if pos not in share:  # another part's: no marker (a local md5 would read the file)
            continue
        split, label = infer_split_label(id_)
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
        try:
            marker = _local_or_marker(fs, path, info)
        except (OSError, ValueError) as exc:  # gone or swapped for a link/fifo since it was listed
            rejected.append({"path": id_, "reason": str(exc)})
            continue
        raw_id = None if raw == id_.encode() else raw
        out.append(Entry(id_, fs, path, info.get("size"), marker, label, split, raw_id))
    if part is None:
        return Listing(source, out, metadata, rejected)
    return Listing(source, out, metadata, rejected, shared_rejects=shared, total=len(entries))


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
            kind = info.get("type", "file")
            if kind != "file":
                raise IsADirectoryError(
                    "is a folder, not a file" if kind == "directory" else f"{kind}: not a regular file"
                )
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
        out.append(Entry(rel, fs, path, info.get("size"), _marker(info), label, split, follow=True))
    ids = [e.id for e in out]
    if len(set(ids)) != len(ids):  # same relative path from two filesystems: fall back to full URLs
        out = [dataclasses.replace(e, id=e.fs.unstrip_protocol(e.path)) for e in out]
    return Listing(source, out, [], unreadable)


def list_source(source: str, *, follow_symlinks: bool = False, part: tuple[int, int] | None = None) -> Listing:
    """List a source URL (folder, archive, or ``.txt`` file list); raise a clear error if it cannot be read.

    ``follow_symlinks``: follow symbolic links of a local folder whose target stays inside it (else they are
    listed in ``unreadable`` as rejected, like fifos and devices). ``part``: ``(index, count)``: only the
    entries of that share (:func:`~chromaflow.data.parts.part_range` over the sorted candidates); a folder's
    other files get no change marker (never read); a file list's lines are all looked up (metadata only).
    Entry-level rejects of the share follow the ``shared_rejects`` that every part lists."""
    if part is not None:
        check_part(part)
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a non-empty URL or path, got {source!r}")
    try:
        if "::" not in source and source.lower().endswith(LIST_SUFFIXES):
            listing = _list_file_list(source)
            if part is None:
                return listing
            share = part_range(len(listing.entries), *part)
            entries = listing.entries[share.start : share.stop]
            n_bad = len(listing.unreadable)
            return dataclasses.replace(listing, entries=entries, shared_rejects=n_bad, total=len(listing.entries))
        return _list_folder(source, follow_symlinks, part)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as exc:  # noqa: BLE001 - name the source in the message
        raise OSError(f"source {source!r} cannot be listed: {type(exc).__name__}: {exc}") from exc
