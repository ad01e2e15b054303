"""prepare: shards + manifest from folders/archives/lists, every odd file handled, idempotent, deterministic."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from tests.data.conftest import colorful, encode

from chromaflow.cli import main as cli_main
from chromaflow.data.prepare import prepare

CONTRACT_SCHEMA = {
    "id": "string",
    "source": "string",
    "split": "string",
    "label": "string",
    "width": "int32",
    "height": "int32",
    "has_color": "bool",
    "image": "binary",
    "format": "string",
}


def rows(out) -> list[dict]:
    return [r for f in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_odd_inputs_never_crash_and_are_all_accounted_for(odd_dir, tmp_path):
    out = tmp_path / "out"
    m = prepare(str(odd_dir), out, max_side=48, workers=1)
    rejected = {r["path"]: r["reason"] for r in m["rejected"]}
    assert set(rejected) == {
        f"bad/{n}" for n in ("empty.jpg", "truncated.jpg", "corrupt.png", "garbage.png", "text.jpg", "bomb.png")
    }
    assert all(rejected.values())
    assert "decompression bomb" in rejected["bad/bomb.png"] and "empty" in rejected["bad/empty.jpg"]
    got = rows(out)
    assert len(got) == m["counts"]["images"] == 12
    assert m["counts"]["train"] + m["counts"]["val"] == 12
    assert {r["id"] for r in got} | set(rejected) == {
        str(p.relative_to(odd_dir)) for p in odd_dir.rglob("*") if p.is_file()
    }
    gray = {"good/gray_l.jpg", "good/gray_rgb.png", "good/la.png", "good/gray16.png"}
    assert set(m["grayscale"]) == gray
    assert {r["id"] for r in got if not r["has_color"]} == gray
    assert {c["id"] for c in m["converted"]} >= {"good/cmyk.jpg", "good/rgba.png", "good/anim.gif", "good/gray16.png"}
    for r in got:
        img = Image.open(io.BytesIO(r["image"]))
        assert img.format == r["format"] and img.size == (r["width"], r["height"]) and max(img.size) <= 48
        assert r["label"] == "good" and r["source"] == str(odd_dir)
    schema = pq.read_schema(next((out / "shards").glob("*.parquet")))
    assert {f.name: str(f.type) for f in schema} == CONTRACT_SCHEMA
    assert sorted(m["shards"]) == sorted(f"shards/{p.name}" for p in (out / "shards").glob("*.parquet"))


def test_gray_threshold_on_jpeg_noise_and_low_saturation(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    src = tmp_path / "src"
    src.mkdir()
    # a gray photo saved as RGB JPEG with 4:2:0 chroma: JPEG adds chroma noise
    Image.fromarray(np.stack([base] * 3, -1)).save(src / "gray_rgb.jpg", quality=75)
    # a faintly tinted image: chroma about 6 everywhere -> colour
    tint = np.stack([base.astype(int) + 6, base.astype(int), base.astype(int) - 4], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(tint).save(src / "tinted.png")
    m = prepare(str(src), tmp_path / "out", workers=1)
    assert m["grayscale"] == ["gray_rgb.jpg"]
    # the independent check of the decision: skimage's chroma of the stored images
    from skimage.color import rgb2lab

    for r in rows(tmp_path / "out"):
        lab = rgb2lab(np.asarray(Image.open(io.BytesIO(r["image"])).convert("RGB")))
        p99 = np.percentile(np.hypot(lab[..., 1], lab[..., 2]), 99)
        assert (p99 < 2.0) == (not r["has_color"]), (r["id"], p99)


def test_hash_split_is_sha1_of_id_and_source_splits_win(tmp_path):
    src = tmp_path / "src"
    for i in range(40):
        p = src / f"flat_{i:02d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(encode(colorful(16, 16, seed=i), "PNG"))
    for split in ("train", "test"):
        (src / split / "cls").mkdir(parents=True)
        (src / split / "cls" / "x.png").write_bytes(encode(colorful(16, 16), "PNG"))
    m = prepare(str(src), tmp_path / "out", val_fraction=0.3, workers=1)
    for r in rows(tmp_path / "out"):
        if r["id"].startswith("flat_"):
            u = int(hashlib.sha1(r["id"].encode()).hexdigest()[:16], 16) / 2**64
            assert r["split"] == ("val" if u < 0.3 else "train")
        else:
            assert r["split"] == {"train": "train", "test": "val"}[r["id"].split("/")[0]]
            assert r["label"] == "cls"
    assert 0 < m["counts"]["val"] < m["counts"]["train"]


def test_rerun_is_a_noop_and_changes_rerun(odd_dir, tmp_path):
    out = tmp_path / "out"
    m1 = prepare(str(odd_dir), out, max_side=48, workers=1)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*")}
    m2 = prepare(str(odd_dir), out, max_side=48, workers=1)
    assert m2 == m1
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*")} == stamps
    m3 = prepare(str(odd_dir), out, max_side=32, workers=1)  # new params
    assert m3["fingerprint"] != m1["fingerprint"] and max(r["width"] for r in rows(out)) <= 32
    (odd_dir / "good" / "new.png").write_bytes(encode(colorful(20, 20, seed=9), "PNG"))  # new input
    m4 = prepare(str(odd_dir), out, max_side=32, workers=1)
    assert m4["counts"]["images"] == m3["counts"]["images"] + 1


def test_workers_do_not_change_the_output(odd_dir, tmp_path):
    a = prepare(str(odd_dir), tmp_path / "a", max_side=48, shard_rows=5, workers=1)
    b = prepare(str(odd_dir), tmp_path / "b", max_side=48, shard_rows=5, workers=2)
    assert len(a["shards"]) > 2 and a["shards"] == b["shards"]
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    assert {k: v for k, v in a.items()} == b


def test_all_bad_or_empty_source_fails_naming_it(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.jpg").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"bad.*none of its 2 files.*a\.jpg: empty file"):
        prepare(str(bad), tmp_path / "out", workers=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        prepare(str(empty), tmp_path / "out", workers=1)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_zip_and_file_list_sources(tmp_path):
    z = tmp_path / "d.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(3):
            zf.writestr(f"root/train/c{i}/{i}.jpg", encode(colorful(30, 20, seed=i), "JPEG"))
        zf.writestr("root/val/images/v.jpg", encode(colorful(30, 20), "JPEG"))
        zf.writestr("root/val/val_annotations.txt", "v.jpg\tc1\t0\t0\t1\t1\n")
    m = prepare(f"zip://root::{z}", tmp_path / "out", workers=1)
    got = {r["id"]: (r["split"], r["label"]) for r in rows(tmp_path / "out")}
    assert got == {"train/c0/0.jpg": ("train", "c0"), "train/c1/1.jpg": ("train", "c1"),
                   "train/c2/2.jpg": ("train", "c2"), "val/images/v.jpg": ("val", "c1")}  # fmt: skip
    assert m["metadata"] == ["val/val_annotations.txt"]
    lst = tmp_path / "list.txt"
    lst.write_text(f"zip://root/train/c0/0.jpg::{z}\n{tmp_path / 'missing.png'}\n")
    m = prepare(str(lst), tmp_path / "out2", workers=1)
    assert m["counts"]["images"] == 1 and m["rejected"][0]["path"].endswith("missing.png")


def test_cli_prepare(odd_dir, tmp_path, capsys):
    assert cli_main(["prepare", "--source", str(odd_dir), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    assert "12 images" in capsys.readouterr().out
    assert cli_main(["prepare", "--source", str(tmp_path / "none"), "--out", str(tmp_path / "o2")]) == 2


def test_real_imagenet_sample_labels(shared_datasets, tmp_path):
    files = sorted((shared_datasets / "imagenet-sample-1000").glob("*.jpg"))[:40]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(map(str, files)))
    m = prepare(str(lst), tmp_path / "out", max_side=64, workers=1)
    got = rows(tmp_path / "out")
    assert m["counts"]["images"] == 40 and not m["rejected"]
    assert all(r["label"] == r["id"].split("_")[0] for r in got)


def test_rgb_spread_shortcut_is_exact_on_random_colours():
    """Every colour with 8-bit spread >= RGB_SPREAD_COLOUR has chroma >= SHORTCUT_MAX_CHROMA (skimage reference)."""
    from skimage.color import rgb2lab

    from chromaflow.data.prepare import RGB_SPREAD_COLOUR, SHORTCUT_MAX_CHROMA

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (200_000, 1))
    rgb = np.clip(base + rng.integers(-12, 13, (200_000, 3)), 0, 255)  # near-neutral colours: the hard cases
    spread = rgb.max(1) - rgb.min(1)
    lab = rgb2lab((rgb / 255.0)[None])[0]
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    assert chroma[spread >= RGB_SPREAD_COLOUR].min() >= SHORTCUT_MAX_CHROMA
    assert chroma[spread == RGB_SPREAD_COLOUR - 1].min() < SHORTCUT_MAX_CHROMA  # and the bound is tight
