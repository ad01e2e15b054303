"""BAPPS reader (thesis sec. 6.2) and a PROXY dataset builder in the same layout.

Layout (the released BAPPS, read unchanged)::

    <root>/2afc/{train,val}/<set>/{ref,p0,p1}/<id>.png   judge/<id>.npy   (fraction of people preferring p1)
    <root>/jnd/val/<set>/{p0,p1}/<id>.png                same/<id>.npy    (fraction answering "same")

Items are matched by file stem across the folders; a stem missing from any folder, an unreadable image or
a judgment outside [0, 1] is an error that lists every offending file (nothing is dropped silently).
Images are returned as float32 RGB ``(3, S, S)`` in [0, 1] (resized bilinearly to ``load_size`` only if
they differ from it; BAPPS patches are 64x64 already).

PROXY, NOT HUMAN DATA. No human judgments are available offline, so :func:`build_proxy_bapps` writes a
dataset in this layout from real photos (e.g. BSDS500, Kodak) with the thesis's traditional distortions
(Table 6.2: photometric, noise, blur, spatial, JPEG) at 5 graded strengths. In a 2AFC triplet both
patches carry the *same* distortion type (and the same random pattern) at two different strengths, and the
label is the known ordering: ``judge = 1`` when p1 is the weaker distortion, else 0. In a JND pair p1 is
the reference distorted at one of the 5 levels, and ``same = 1`` only at the weakest level. These labels
encode "less distortion is closer", not human perception; numbers from them are not comparable to the
thesis's Table 6.5.

    >>> from chromaflow.data.bapps import build_proxy_bapps, TwoAFCDataset, list_sets
    >>> build_proxy_bapps("runs/bapps_proxy", train_images=[...], val_images=[...])  # doctest: +SKIP
    >>> ds = TwoAFCDataset(list_sets("runs/bapps_proxy", "2afc", "val"))                # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import glob
import io
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch.utils.data import Dataset

from chromaflow import exact
from chromaflow.io import read_json, write_json

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
TWOAFC_DIRS = ("ref", "p0", "p1", "judge")
JND_DIRS = ("p0", "p1", "same")
PATCH = 64  # BAPPS patch size
LEVELS = (0.2, 0.4, 0.6, 0.8, 1.0)  # graded distortion strengths of the proxy
PROXY_VERSION = 2  # 2: no BLAS or CPU-dispatched exp/sin/cos, so the files are the same on every machine


# ----------------------------------------------------------------------------------------------- reader


def list_sets(root: str | os.PathLike, task: str = "2afc", split: str = "val") -> list[Path]:
    """The set folders under ``<root>/<task>/<split>/`` (sorted), or ``[root]`` if root is a set folder."""
    root = Path(root)
    if task not in ("2afc", "jnd"):
        raise ValueError(f"task: expected '2afc' or 'jnd', got {task!r}")
    marker = "ref" if task == "2afc" else "same"
    if (root / marker).is_dir():
        return [root]
    base = root / task / split
    if not base.is_dir():
        raise FileNotFoundError(f"BAPPS: {base}: no such folder (expected {task}/{split}/<set>/...)")
    sets = sorted(p for p in base.iterdir() if (p / marker).is_dir())
    if not sets:
        raise FileNotFoundError(f"BAPPS: {base}: no set folder with a {marker}/ subfolder")
    return sets


def _index(set_dir: Path, dirs: Sequence[str]) -> list[dict[str, Path]]:
    tables: dict[str, dict[str, Path]] = {}
    for d in dirs:
        folder = set_dir / d
        if not folder.is_dir():
            raise FileNotFoundError(f"BAPPS: {folder}: missing folder (a set needs {list(dirs)})")
        exts = (".npy",) if d in ("judge", "same") else IMAGE_EXTS
        tables[d] = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in exts}
    stems = set().union(*(t.keys() for t in tables.values()))
    incomplete = sorted(
        f"{s} (missing in {[d for d in dirs if s not in tables[d]]})"
        for s in stems
        if any(s not in tables[d] for d in dirs)
    )
    if incomplete:
        more = f" and {len(incomplete) - 20} more" if len(incomplete) > 20 else ""
        raise ValueError(f"BAPPS: {set_dir}: {len(incomplete)} incomplete item(s): {incomplete[:20]}{more}")
    return [{d: tables[d][s] for d in dirs} for s in sorted(stems)]


def load_patch(path: Path, load_size: int | None = PATCH) -> torch.Tensor:
    """An image file -> float32 ``(3, S, S)`` in [0, 1]; resized bilinearly only if its size differs."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if load_size and im.size != (load_size, load_size):
                im = im.resize((load_size, load_size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # PIL raises many types for corrupt files
        raise ValueError(f"BAPPS: {path}: unreadable image ({type(e).__name__}: {e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0


def load_fraction(path: Path) -> torch.Tensor:
    """A judge/same ``.npy`` (shape () or (1,), value in [0, 1]) -> float32 ``(1,)``."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"BAPPS: {path}: unreadable .npy ({type(e).__name__}: {e})") from None
    arr = np.asarray(arr, dtype=np.float64).reshape(-1)
    if arr.size != 1 or not 0.0 <= arr[0] <= 1.0:
        raise ValueError(f"BAPPS: {path}: expected one fraction in [0, 1], got {arr.tolist()[:4]}")
    return torch.tensor([arr[0]], dtype=torch.float32)


class _BappsBase(Dataset):
    dirs: tuple[str, ...] = ()
    label: str = ""

    def __init__(self, sets: str | os.PathLike | Sequence[str | os.PathLike], load_size: int | None = PATCH) -> None:
        sets = [sets] if isinstance(sets, str | os.PathLike) else list(sets)
        if not sets:
            raise ValueError(f"{type(self).__name__}: no set folders given")
        self.load_size = load_size
        self.items: list[tuple[str, dict[str, Path]]] = []
        for s in sets:
            s = Path(s)
            self.items += [(s.name, it) for it in _index(s, self.dirs)]
        bad = []
        self.labels = torch.zeros(len(self.items))
        for i, (_, it) in enumerate(self.items):
            try:
                self.labels[i] = load_fraction(it[self.label])[0]
            except ValueError as e:
                bad.append(str(e))
        if bad:
            raise ValueError(f"{type(self).__name__}: {len(bad)} bad judgment file(s): {bad[:20]}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        set_name, it = self.items[i]
        out: dict[str, Any] = {d: load_patch(it[d], self.load_size) for d in self.dirs if d != self.label}
        out[self.label] = self.labels[i : i + 1].clone()
        out["id"], out["set"] = it[self.dirs[0]].stem, set_name
        return out


class TwoAFCDataset(_BappsBase):
    """2AFC triplets: item ``{"ref", "p0", "p1": (3, S, S) in [0, 1], "judge": (1,), "id", "set"}``.

    ``judge`` is the fraction of observers who found p1 closer to ref.
    """

    dirs, label = TWOAFC_DIRS, "judge"


class JNDDataset(_BappsBase):
    """JND pairs: item ``{"p0", "p1": (3, S, S) in [0, 1], "same": (1,), "id", "set"}``."""

    dirs, label = JND_DIRS, "same"


# ----------------------------------------------------------------------------------------------- distortions
# Each takes float32 HxWx3 in [0, 1] (with a margin around the patch), a strength s in (0, 1] and a
# per-triplet parameter dict drawn once (so p0 and p1 differ only in strength), and returns HxWx3.


# The output files are a DVC-hashed output, so nothing here may depend on the CPU: no BLAS (`@`, norms:
# OpenBLAS picks kernels by CPU) and no numpy exp/sin/cos (their SIMD versions differ in the last bit).
def score_2afc(d0: Any, d1: Any, judge: Any) -> float:
    """Mean 2AFC agreement in [0, 1]: ``(d0<d1)(1-judge) + (d1<d0) judge + (d0==d1)/2``; all ``(N,)``."""
    d0, d1, judge = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (d0, d1, judge))
    if not d0.shape == d1.shape == judge.shape or d0.size == 0:
        raise ValueError(f"score_2afc: d0 {d0.shape}, d1 {d1.shape}, judge {judge.shape} must be equal, non-empty")
    s = (d0 < d1) * (1.0 - judge) + (d1 < d0) * judge + (d0 == d1) * 0.5
    return float(s.mean())


def _gray(x: np.ndarray) -> np.ndarray:
    return (x[..., 0:1] * np.float32(0.299) + x[..., 1:2] * np.float32(0.587)) + x[..., 2:3] * np.float32(0.114)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of HxWxC over H and W, as ``ndimage.gaussian_filter`` (radius 4 sigma, reflect)."""
    r = int(4.0 * sigma + 0.5)
    k = exact.exp(-0.5 / sigma**2 * np.arange(-r, r + 1, dtype=np.float64) ** 2)
    k /= exact.fsum(k)
    return ndimage.correlate1d(ndimage.correlate1d(x, k, axis=0, mode="reflect"), k, axis=1, mode="reflect")


def _shift(x: np.ndarray, dy: float, dx: float) -> np.ndarray:
    return ndimage.shift(x, (dy, dx, 0), order=1, mode="reflect")


def _jpeg(x: np.ndarray, s: float, p: dict) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(x)).save(buf, format="JPEG", quality=int(round(90 - 85 * s)))
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


def _pink(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    n = rng.standard_normal(shape).astype(np.float32)
    fy, fx = np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), indexing="ij")
    f = np.sqrt(fy**2 + fx**2)
    f[0, 0] = 1.0
    out = np.real(np.fft.ifft2(np.fft.fft2(n, axes=(0, 1)) / f[..., None], axes=(0, 1)))
    return (out / (out.std() + 1e-8)).astype(np.float32)


DISTORTIONS: dict[str, tuple[str, Callable[[np.ndarray, float, dict], np.ndarray]]] = {
    # name: (sub-type of Table 6.2, function)
    "lightness_shift": ("photometric", lambda x, s, p: x + p["sign"] * 0.3 * s),
    "color_shift": ("photometric", lambda x, s, p: x + p["dir"] * 0.2 * s),
    "contrast": ("photometric", lambda x, s, p: x.mean((0, 1)) + (x - x.mean((0, 1))) * (1 - 0.7 * s)),
    "saturation": ("photometric", lambda x, s, p: _gray(x) + (x - _gray(x)) * (1 - s)),
    "gaussian_noise": ("noise", lambda x, s, p: x + 0.15 * s * p["normal"]),
    "uniform_noise": ("noise", lambda x, s, p: x + 0.25 * s * p["uniform"]),
    "pink_noise": ("noise", lambda x, s, p: x + 0.12 * s * p["pink"]),
    "checkerboard": ("noise", lambda x, s, p: x + 0.12 * s * p["checker"]),
    "gaussian_blur": ("blur", lambda x, s, p: _blur(x, 0.3 + 2.2 * s)),
    "shift": ("spatial", lambda x, s, p: _shift(x, *(4.0 * s * p["unit"]))),
    "rotation": (
        "spatial",
        lambda x, s, p: ndimage.rotate(x, 8.0 * s * p["sign"], axes=(0, 1), reshape=False, order=1, mode="reflect"),
    ),
    "ghosting": ("spatial", lambda x, s, p: (1 - 0.45 * s) * x + 0.45 * s * _shift(x, *(6.0 * p["unit"]))),
    "chromatic_aberration": (
        "spatial",
        lambda x, s, p: np.stack(
            [_shift(x, 0, 2.5 * s * p["sign"])[..., 0], x[..., 1], _shift(x, 0, -2.5 * s * p["sign"])[..., 2]], -1
        ),
    ),
    "jpeg": ("compression", _jpeg),
}


def _params(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
    g = rng.standard_normal(2)  # a uniform direction without sin/cos
    d = rng.standard_normal(3).astype(np.float32)
    yy, xx = np.indices(shape[:2])
    return {
        "sign": float(rng.choice([-1.0, 1.0])),
        "dir": d / (np.sqrt((d * d).sum()) + 1e-8),
        "unit": g / np.sqrt((g * g).sum()),
        "normal": rng.standard_normal(shape).astype(np.float32),
        "uniform": rng.uniform(-1, 1, shape).astype(np.float32),
        "pink": _pink(shape, rng),
        "checker": np.repeat((((yy + xx) % 2) * 2.0 - 1.0)[..., None], 3, -1).astype(np.float32),
    }


def distort(x: np.ndarray, name: str, s: float, params: dict[str, Any]) -> np.ndarray:
    """Apply distortion ``name`` at strength ``s`` in (0, 1] to HxWx3 float in [0, 1]; result clipped to [0, 1]."""
    if name not in DISTORTIONS:
        raise ValueError(f"distortion: unknown {name!r}; choose from {sorted(DISTORTIONS)}")
    return np.clip(DISTORTIONS[name][1](x.astype(np.float32), float(s), params), 0.0, 1.0).astype(np.float32)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- proxy builder


def find_images(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files in ``paths`` (files, folders searched recursively, or glob patterns such as
    ``data/sample/kodim*.jpg``), folders and patterns sorted; a path or pattern that finds nothing is an error."""
    out: list[Path] = []
    for p in map(Path, paths):
        if any(ch in str(p) for ch in "*?["):
            hits = sorted(Path(q) for q in glob.glob(str(p)) if Path(q).suffix.lower() in IMAGE_EXTS)
            if not hits:
                raise FileNotFoundError(f"proxy sources: {p}: the pattern matches no image file")
            out += hits
        elif p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"proxy sources: {p}: no such file or folder")
    return out


def _load_scaled(path: Path, rng: np.random.Generator, margin: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        short = min(im.size)
        target = int(rng.uniform(128, 320))
        if short > target:  # random rescale so a 64 px patch covers a sensible part of the photo
            f = target / short
            im = im.resize((max(1, round(im.size[0] * f)), max(1, round(im.size[1] * f))), Image.BICUBIC)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    if min(arr.shape[:2]) < PATCH + 2 * margin:
        raise ValueError(f"proxy sources: {path}: smaller than {PATCH + 2 * margin} px after scaling")
    return arr


def _triplet(photo: np.ndarray, rng: np.random.Generator, margin: int) -> tuple[np.ndarray, str, dict]:
    size = PATCH + 2 * margin
    y = rng.integers(0, photo.shape[0] - size + 1)
    x = rng.integers(0, photo.shape[1] - size + 1)
    crop = photo[y : y + size, x : x + size]
    name = sorted(DISTORTIONS)[rng.integers(len(DISTORTIONS))]
    return crop, name, _params(rng, crop.shape)


def _save_png(path: Path, x: np.ndarray, margin: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_to_uint8(x[margin : margin + PATCH, margin : margin + PATCH])).save(path)


def build_proxy_bapps(
    out: str | os.PathLike,
    train_images: Sequence[str | os.PathLike],
    val_images: Sequence[str | os.PathLike],
    *,
    n_train: int = 2000,
    n_val: int = 500,
    n_jnd: int = 500,
    seed: int = 0,
    set_name: str = "traditional",
) -> dict[str, Any]:
    """Write a PROXY BAPPS dataset (see the module docstring) under ``out``; returns its manifest.

    ``train_images`` / ``val_images``: image files or folders (disjoint photos for the two splits).
    Writes ``2afc/train/<set>``, ``2afc/val/<set>``, ``jnd/val/<set>`` and ``manifest.json`` (with
    ``"proxy": true``, params, counts per distortion). Re-running with the same params is a no-op.
    """
    out = Path(out)
    train, val = find_images(train_images), find_images(val_images)
    if not train or not val:
        raise ValueError(f"proxy sources: need images for both splits, got {len(train)} train, {len(val)} val")
    params = {
        "n_train": n_train, "n_val": n_val, "n_jnd": n_jnd, "seed": seed, "set": set_name, "levels": list(LEVELS),
        "distortions": sorted(DISTORTIONS), "train_images": [str(p) for p in train], "val_images": [str(p) for p in val],
        "version": PROXY_VERSION,
    }  # fmt: skip
    manifest_path = out / "manifest.json"
    if manifest_path.is_file() and read_json(manifest_path).get("params") == params:
        log.info("proxy BAPPS at %s is up to date", out)
        return read_json(manifest_path)
    from chromaflow.logs import progress

    rng = np.random.default_rng(seed)
    margin = 16
    counts: dict[str, dict[str, int]] = {}
    jobs = [("2afc", "train", n_train, train), ("2afc", "val", n_val, val), ("jnd", "val", n_jnd, val)]
    for task, split, n, photos in jobs:
        root = out / task / split / set_name
        if root.exists():  # stale output of other params: rebuilt whole
            shutil.rmtree(root)
        c = counts.setdefault(f"{task}/{split}", {})
        cache: dict[int, np.ndarray] = {}
        for i in progress(range(n), total=n, desc=f"proxy {task}/{split}"):
            k = int(rng.integers(len(photos)))
            if k not in cache or rng.random() < 0.25:  # re-scale a photo now and then
                cache[k] = _load_scaled(photos[k], rng, margin)
            crop, name, p = _triplet(cache[k], rng, margin)
            c[name] = c.get(name, 0) + 1
            stem = f"{i:06d}"
            if task == "2afc":
                s0, s1 = rng.choice(LEVELS, size=2, replace=False)
                _save_png(root / "ref" / f"{stem}.png", crop, margin)
                _save_png(root / "p0" / f"{stem}.png", distort(crop, name, s0, p), margin)
                _save_png(root / "p1" / f"{stem}.png", distort(crop, name, s1, p), margin)
                (root / "judge").mkdir(parents=True, exist_ok=True)
                np.save(root / "judge" / f"{stem}.npy", np.array([1.0 if s1 < s0 else 0.0], dtype=np.float32))
            else:
                level = int(rng.integers(len(LEVELS)))
                _save_png(root / "p0" / f"{stem}.png", crop, margin)
                _save_png(root / "p1" / f"{stem}.png", distort(crop, name, LEVELS[level], p), margin)
                (root / "same").mkdir(parents=True, exist_ok=True)
                np.save(root / "same" / f"{stem}.npy", np.array([1.0 if level == 0 else 0.0], dtype=np.float32))
    manifest = {
        "proxy": True,
        "note": "PROXY data: labels are the known ordering of distortion strength, not human judgments",
        "params": params,
        "counts": counts,
    }
    write_json(manifest_path, manifest)
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-images", nargs="+", required=True, metavar="PATH",
                        help="photos for 2afc/train: files, folders or glob patterns")  # fmt: skip
    parser.add_argument("--val-images", nargs="+", required=True, metavar="PATH",
                        help="photos for 2afc/val and jnd/val, disjoint from --train-images")  # fmt: skip
    parser.add_argument("--out", required=True, help="output BAPPS root (2afc/, jnd/, manifest.json)")
    parser.add_argument("--n-train", type=int, default=2000, help="2AFC training triplets")
    parser.add_argument("--n-val", type=int, default=500, help="2AFC validation triplets")
    parser.add_argument("--n-jnd", type=int, default=500, help="JND validation pairs")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    try:
        manifest = build_proxy_bapps(args.out, args.train_images, args.val_images, n_train=args.n_train,
                                     n_val=args.n_val, n_jnd=args.n_jnd, seed=args.seed)  # fmt: skip
    except (ValueError, OSError) as exc:
        log.error("bapps failed: %s", exc)
        return 2
    counts = {split: sum(c.values()) for split, c in manifest["counts"].items()}
    print(f"PROXY BAPPS (not human judgments) at {args.out}: {counts}")
    return 0
