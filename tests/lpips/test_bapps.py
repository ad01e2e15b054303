"""BAPPS reader (real layout, strict) and the PROXY builder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from chromaflow.data import bapps


def _write_set(root, n=3, dirs=("ref", "p0", "p1"), label="judge", ext=".png", size=64, values=None):
    rng = np.random.default_rng(0)
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stem = f"{i:06d}"
        for d in dirs:
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / d / f"{stem}{ext}")
        v = values[i] if values is not None else i / max(n - 1, 1)
        np.save(root / label / f"{stem}.npy", np.array([v], dtype=np.float32))  # BAPPS stores shape (1,)


def test_reader_accepts_the_bapps_layout(tmp_path):
    _write_set(tmp_path / "2afc" / "val" / "cnn", n=3)
    _write_set(tmp_path / "2afc" / "val" / "traditional", n=2)
    _write_set(tmp_path / "jnd" / "val" / "cnn", n=4, dirs=("p0", "p1"), label="same")
    sets = bapps.list_sets(tmp_path, "2afc", "val")
    assert [s.name for s in sets] == ["cnn", "traditional"]
    ds = bapps.TwoAFCDataset(sets)
    assert len(ds) == 5
    it = ds[1]
    assert (
        it["ref"].shape == (3, 64, 64)
        and it["ref"].dtype == torch.float32
        and 0 <= it["ref"].min() <= it["ref"].max() <= 1
    )
    assert it["judge"].shape == (1,) and float(it["judge"]) == pytest.approx(0.5)
    raw = np.array(Image.open(sets[0] / "p0" / "000001.png"))
    torch.testing.assert_close(it["p0"], torch.from_numpy(raw).permute(2, 0, 1).float() / 255)
    j = bapps.JNDDataset(bapps.list_sets(tmp_path, "jnd", "val"))
    assert len(j) == 4 and j[3]["same"].item() == pytest.approx(1.0) and set(j[0]) >= {"p0", "p1", "same"}


def test_reader_rejects_with_every_reason(tmp_path):
    s = tmp_path / "set"
    _write_set(s, n=3)
    (s / "p1" / "000001.png").unlink()
    (s / "ref" / "000002.png").unlink()
    with pytest.raises(ValueError, match=r"2 incomplete item\(s\).*000001 \(missing in \['p1'\]\).*000002"):
        bapps.TwoAFCDataset(s)
    s2 = tmp_path / "set2"
    _write_set(s2, n=2, values=[0.5, 1.5])
    with pytest.raises(ValueError, match=r"000001.npy: expected one fraction in \[0, 1\]"):
        bapps.TwoAFCDataset(s2)
    with pytest.raises(FileNotFoundError, match="2afc/train"):
        bapps.list_sets(tmp_path, "2afc", "train")


def test_distortions_are_graded():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96] / 96.0
    tex = np.sin(40 * yy) * np.cos(30 * xx)  # texture, so blur and shifts change it
    x = (0.5 + 0.25 * np.stack([tex, np.roll(tex, 7, 0), yy - 0.5], -1)).astype(np.float32)
    p = bapps._params(rng, x.shape)
    for name in bapps.DISTORTIONS:
        errs = [float(np.mean((bapps.distort(x, name, s, p) - x)[16:80, 16:80] ** 2)) for s in bapps.LEVELS]
        assert all(a < b for a, b in zip(errs, errs[1:], strict=False)) or name == "jpeg", (name, errs)
        assert errs[-1] > errs[0], name


def test_proxy_builder(tmp_path, shared_datasets):
    src = shared_datasets / "kodak24"
    train, val = [src / "kodim01.png", src / "kodim02.png"], [src / "kodim03.png"]
    m = bapps.build_proxy_bapps(tmp_path / "p", train, val, n_train=12, n_val=6, n_jnd=10, seed=1)
    assert m["proxy"] is True and sum(m["counts"]["2afc/train"].values()) == 12
    ds = bapps.TwoAFCDataset(bapps.list_sets(tmp_path / "p", "2afc", "train"))
    assert len(ds) == 12 and set(ds.labels.tolist()) <= {0.0, 1.0}
    # the label is the ordering of distortion strength: the weaker patch is closer in L2 for almost all
    d = [(float(((it["p0"] - it["ref"]) ** 2).mean()), float(((it["p1"] - it["ref"]) ** 2).mean()), float(it["judge"]))
         for it in (ds[i] for i in range(len(ds)))]  # fmt: skip
    agree = np.mean([(d1 < d0) == (j == 1.0) for d0, d1, j in d])
    assert agree >= 0.75
    j = bapps.JNDDataset(bapps.list_sets(tmp_path / "p", "jnd", "val"))
    assert len(j) == 10 and torch.equal(j[0]["p0"], j[0]["p0"])
    before = (tmp_path / "p" / "manifest.json").stat().st_mtime_ns
    bapps.build_proxy_bapps(tmp_path / "p", train, val, n_train=12, n_val=6, n_jnd=10, seed=1)  # no-op
    assert (tmp_path / "p" / "manifest.json").stat().st_mtime_ns == before


def test_bapps_step_builds_from_glob_patterns_and_names_a_bad_source(tmp_path, sample_dir):
    from chromaflow.cli import main

    out = tmp_path / "b"
    rc = main(["bapps", "--train-images", str(sample_dir / "kodim0[1-2].jpg"), "--val-images",
               str(sample_dir / "skimage_coffee.jpg"), "--out", str(out), "--n-train", "4", "--n-val", "2",
               "--n-jnd", "3"])  # fmt: skip
    assert rc == 0
    m = bapps.read_json(out / "manifest.json")
    assert [p.rsplit("/", 1)[-1] for p in m["params"]["train_images"]] == ["kodim01.jpg", "kodim02.jpg"]
    assert len(bapps.TwoAFCDataset(bapps.list_sets(out, "2afc", "train"))) == 4
    with pytest.raises(FileNotFoundError, match=r"nothing\*\.jpg: the pattern matches no image file"):
        bapps.find_images([tmp_path / "nothing*.jpg"])
    assert main(["bapps", "--train-images", str(tmp_path / "missing.jpg"), "--val-images", str(out),
                 "--out", str(tmp_path / "c")]) == 2  # fmt: skip
