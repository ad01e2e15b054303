"""stats: exact ab-bin counts against a brute-force skimage + argmin computation; the ImageNet prior."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from skimage.color import rgb2lab
from tests.data.conftest import colorful, encode

from chromaflow.cli import main as cli_main
from chromaflow.data.prepare import prepare
from chromaflow.data.stats import stats


def brute_force(out_prepared, split: str, bins: np.ndarray):
    """skimage rgb2lab (float64) + argmin of the squared distance to every bin centre, per pixel."""
    counts, l_hist, joint = np.zeros(len(bins), np.int64), np.zeros(100, np.int64), np.zeros((10, len(bins)), np.int64)
    for f in sorted((out_prepared / "shards").glob(f"{split}-*.parquet")):
        for r in pq.read_table(f).to_pylist():
            if not r["has_color"]:
                continue
            lab = rgb2lab(np.asarray(Image.open(io.BytesIO(r["image"])).convert("RGB"))).reshape(-1, 3)
            ab = np.clip(lab[:, 1:], -110, 110)
            d2 = ((ab[:, None, :] - bins[None]) ** 2).sum(-1)
            q = d2.argmin(1)
            counts += np.bincount(q, minlength=len(bins))
            lb = np.clip(np.floor(lab[:, 0]).astype(int), 0, 99)
            l_hist += np.bincount(lb, minlength=100)
            np.add.at(joint, (lb // 10, q), 1)
    return counts, l_hist, joint


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("st")
    src = root / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        (src / f"c{i}.png").write_bytes(encode(colorful(50, 40, seed=i), "PNG"))
    # uniformly random colours cover the whole gamut, boundaries included
    (src / "noise.png").write_bytes(encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG"))
    (src / "gray.png").write_bytes(encode(Image.new("RGB", (30, 30), (90, 90, 90)), "PNG"))  # excluded
    prepare(str(src), root / "prep", val_fraction=0.0, workers=1)
    return root


def test_counts_equal_brute_force(small, shared_datasets):
    bins = np.load(shared_datasets / "reference_npy" / "pts_in_hull.npy").astype(np.float64)
    s = stats(small / "prep", small / "stats", plots=False)
    out = small / "stats"
    counts, l_hist, joint = brute_force(small / "prep", "train", bins)
    np.testing.assert_array_equal(np.load(out / "counts.npy"), counts)
    np.testing.assert_array_equal(np.load(out / "l_hist.npy"), l_hist)
    np.testing.assert_array_equal(np.load(out / "counts_given_l.npy"), joint)
    assert np.load(out / "counts.npy").dtype == np.int64
    prior = np.load(out / "prior.npy")
    np.testing.assert_allclose(prior, counts / counts.sum(), rtol=0, atol=1e-15)
    cond = np.load(out / "prior_given_l.npy")
    np.testing.assert_allclose(cond.sum(1)[joint.sum(1) > 0], 1.0)
    assert s["images"] == 7 and s["pixels"] == counts.sum() == 6 * 50 * 40 + 64 * 64


def test_weights_follow_eq_2_4(small):
    from chromaflow.color import smooth_prior

    stats(small / "prep", small / "stats", plots=False)
    prior = np.load(small / "stats" / "prior.npy")
    w = np.load(small / "stats" / "weights.npy")
    ps = np.asarray(smooth_prior(prior))
    ref = 1.0 / (0.5 * ps + 0.5 / 313)
    ref /= (ps * ref).sum()
    np.testing.assert_allclose(w, ref, rtol=1e-10)
    np.testing.assert_allclose((ps * w).sum(), 1.0, rtol=1e-12)


def test_rerun_is_noop_plots_and_cli(small, capsys):
    out = small / "stats_cli"
    assert cli_main(["stats", "--data", str(small / "prep"), "--out", str(out)]) == 0
    for f in ("prior.png", "prior_given_l.png", "l_hist.png"):
        assert (out / f).stat().st_size > 1000
    stamp = (out / "counts.npy").stat().st_mtime_ns
    assert cli_main(["stats", "--data", str(small / "prep"), "--out", str(out)]) == 0
    assert (out / "counts.npy").stat().st_mtime_ns == stamp
    assert json.loads((out / "stats.json").read_text())["images"] == 7
    assert cli_main(["stats", "--data", str(small / "nope"), "--out", str(out)]) == 2


def test_split_without_colour_fails_clearly(small):
    with pytest.raises(ValueError, match="no colour image"):
        stats(small / "prep", small / "stats_val", split="val")


def _imagenet_prior_corr(shared_datasets, tmp_path, n: int, max_side: int) -> float:
    files = sorted((shared_datasets / "imagenet-sample-1000").glob("*.jpg"))[:n]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(map(str, files)))
    prepare(str(lst), tmp_path / "prep", max_side=max_side, val_fraction=0.0)
    s = stats(tmp_path / "prep", tmp_path / "stats", plots=False)
    ref = np.load(shared_datasets / "reference_npy" / "prior_probs_imagenet_transcribed.npy")
    return float(np.corrcoef(np.load(tmp_path / "stats" / "prior.npy"), ref)[0, 1]), s


def test_imagenet_sample_prior_small(shared_datasets, tmp_path):
    corr, s = _imagenet_prior_corr(shared_datasets, tmp_path, 150, 64)
    assert s["images"] >= 140  # a few of them are gray
    assert corr > 0.85


@pytest.mark.slow
def test_imagenet_sample_prior_1000(shared_datasets, tmp_path):
    corr, s = _imagenet_prior_corr(shared_datasets, tmp_path, 1000, 96)
    assert s["images"] == 1000 - 26  # 23 single-channel + 3 gray-looking RGB (hook, trombone, crutch)
    assert corr > 0.9
