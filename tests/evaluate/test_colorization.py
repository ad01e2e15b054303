"""``evaluate_colorization`` end to end: folders and Parquet shards, baselines, models, T-sweep, reports."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from chromaflow.evaluate.colorization import T_SWEEP, evaluate_colorization


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Two tiny random eccv16 models saved the way training saves them."""
    from chromaflow.models import create_model, save_weights

    d = tmp_path_factory.mktemp("weights")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model("eccv16", width=0.25)
        save_weights(model, d / f"m{seed}.safetensors")
        paths.append(d / f"m{seed}.safetensors")
    return paths


def _sha_ids(ids):
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def test_folder_with_two_models(tmp_path, sample_dir, tiny_weights):
    out = tmp_path / "eval"
    kw = dict(max_images=3, size=64, gallery=2, batch_size=2, device="cpu")
    weights = [f"full={tiny_weights[0]}", f"class={tiny_weights[1]}"]
    m = evaluate_colorization(weights, sample_dir, out, **kw)

    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["eval_set"] == m["eval_set"]
    assert len(m["ids"]) == 3 and m["n_images"] == 3
    assert m["eval_set"] == _sha_ids(m["ids"])
    assert set(m["rows"]) == {"Ground truth", "Gray", "Random", "Ours (full)", "Ours (class)"}
    gt = m["rows"]["Ground truth"]
    assert gt["auc_raw"] == pytest.approx(100) and gt["auc_rebal"] == pytest.approx(100)
    assert gt["psnr"] is None  # infinite PSNR is written as null (strict JSON)
    for name in ("Gray", "Random", "Ours (full)"):
        assert 0 < m["rows"][name]["auc_raw"] < 100
        assert np.isfinite(m["rows"][name]["psnr"])
    assert m["rows"]["Gray"]["colorfulness"] < gt["colorfulness"]
    # gate keys come from the primary (first) model; no classifier ran
    assert m["primary"] == "Ours (full)"
    for k in ("auc_raw", "auc_rebal", "psnr", "colorfulness"):
        assert m[k] == m["rows"]["Ours (full)"][k]
    assert "class_top1" not in m
    # T-sweep of the primary: one row per T, T=0.38 is the main row
    assert [r["T"] for r in m["t_sweep"]] == list(T_SWEEP)
    assert m["t_sweep"][-1]["decode"] == "mode"
    main = next(r for r in m["t_sweep"] if r["T"] == 0.38)
    assert main["auc_raw"] == pytest.approx(m["auc_raw"])

    md = (out / "report.md").read_text()
    assert "| Ours (class) |" in md and "Temperature sweep" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 * 6  # gallery rows x (input + 5 rows)
    assert "Class rebalancing" in page and "Temperature sweep" in page

    # re-running with the same inputs is a no-op; force recomputes
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert evaluate_colorization(weights, sample_dir, out, **kw)["inputs_hash"] == m["inputs_hash"]
    assert (out / "metrics.json").stat().st_mtime_ns == stamp


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_shards_baselines_and_exclusions(tmp_path, sample_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    photos = sorted(sample_dir.glob("*.jpg"))[:3]
    rows = []
    for p in photos:
        with Image.open(p) as im:
            rows.append(
                dict(id=p.stem, split="val", has_color=True, image=_png(np.asarray(im.convert("RGB").resize((96, 64)))))
            )
    gray = np.repeat(np.asarray(Image.open(photos[0]).convert("L").resize((96, 64)))[..., None], 3, 2)
    rows.append(dict(id="gray_one", split="val", has_color=False, image=_png(gray)))
    rows.append(dict(id="broken", split="val", has_color=True, image=b"not an image"))
    rows.append(dict(id="train_one", split="train", has_color=True, image=rows[0]["image"]))
    table = pa.table({
        "id": [r["id"] for r in rows], "source": ["t"] * len(rows), "split": [r["split"] for r in rows],
        "label": pa.array([None] * len(rows), pa.string()), "width": pa.array([96] * len(rows), pa.int32()),
        "height": pa.array([64] * len(rows), pa.int32()), "has_color": [r["has_color"] for r in rows],
        "image": pa.array([r["image"] for r in rows], pa.binary()), "format": ["png"] * len(rows),
    })  # fmt: skip
    (tmp_path / "data" / "shards").mkdir(parents=True)
    pq.write_table(table.filter(pa.compute.equal(table["split"], "val")), tmp_path / "data/shards/val-00000.parquet")
    pq.write_table(
        table.filter(pa.compute.equal(table["split"], "train")), tmp_path / "data/shards/train-00000.parquet"
    )

    m = evaluate_colorization(None, tmp_path / "data", tmp_path / "eval", size=64, device="cpu")
    assert sorted(m["ids"]) == sorted(p.stem for p in photos)
    assert m["eval_set"] == _sha_ids([p.stem for p in photos])
    reasons = {e["id"]: e["reason"] for e in m["excluded"]}
    assert set(reasons) == {"gray_one", "broken"} and "grayscale" in reasons["gray_one"]
    assert "auc_raw" not in m and m["t_sweep"] == []  # no model: baselines only
    assert m["rows"]["Ground truth"]["auc_raw"] == pytest.approx(100)
    assert m["rows"]["Gray"]["auc_raw"] < 100
    assert "broken" in (tmp_path / "eval" / "report.html").read_text()
    # re-running is a no-op unless forced
    stamp = (tmp_path / "eval" / "metrics.json").stat().st_mtime_ns
    evaluate_colorization(None, tmp_path / "data", tmp_path / "eval", size=64, device="cpu")
    assert (tmp_path / "eval" / "metrics.json").stat().st_mtime_ns == stamp


def test_gray_row_auc_raw_and_rebalanced_recomputed_independently(tmp_path, sample_dir, shared_file):
    """The Gray row of Table 2.1 from scratch: skimage Lab, ab = 0 rendered to uint8 sRGB and read back, nearest of
    the reference's 313 bins by brute force, weights 1 / p~ (the reference prior smoothed with sigma 5, Eq. 2.4 with
    lambda = 0), thresholds 0..150. The raw and rebalanced AuCs must each match and differ from each other."""
    from skimage.color import lab2rgb, rgb2lab

    photos = sorted(sample_dir.glob("*.jpg"))[:2]
    for p in photos:  # made 64 x 64 here, so the evaluator's resize and crop are the identity
        with Image.open(p) as im:
            im.convert("RGB").resize((64, 64), Image.Resampling.BICUBIC).save(tmp_path / f"{p.stem}.png")
    m = evaluate_colorization(None, tmp_path, tmp_path / "eval", size=64, methods=["gray"], device="cpu")
    gt = np.stack([np.asarray(Image.open(tmp_path / f"{p.stem}.png")) for p in photos])  # (B, H, W, 3) uint8
    lab = rgb2lab(gt)
    gray = np.clip(lab2rgb(np.concatenate([lab[..., :1], np.zeros_like(lab[..., 1:])], -1)), 0, 1)
    pred_ab = rgb2lab(np.round(gray * 255).astype(np.uint8))[..., 1:]
    gt_ab = lab[..., 1:].reshape(-1, 2)
    err = np.linalg.norm(pred_ab.reshape(-1, 2) - gt_ab, axis=1)

    bins = np.load(shared_file("reference_npy/pts_in_hull.npy")).astype(np.float64)
    prior = np.load(shared_file("reference_npy/prior_probs_imagenet_transcribed.npy")).astype(np.float64)
    prior /= prior.sum()
    smooth = np.exp(-((bins[:, None] - bins[None]) ** 2).sum(-1) / (2 * 5.0**2)) @ prior
    smooth /= smooth.sum()
    nearest = np.argmin(((gt_ab[:, None] - bins[None]) ** 2).sum(-1), 1)
    weight = (1 / smooth)[nearest]

    def auc(w):
        return 100 * np.mean([np.sum(w * (err <= t)) / np.sum(w) for t in range(0, 151)])

    raw, rebal = auc(np.ones_like(err)), auc(weight)
    row = m["rows"]["Gray"]
    assert row["auc_raw"] == pytest.approx(raw, abs=0.1)
    assert row["auc_rebal"] == pytest.approx(rebal, abs=0.1)
    assert raw - rebal > 5  # saturated pixels weigh more, and gray misses them


def test_bad_inputs_are_named(tmp_path, sample_dir):
    with pytest.raises(FileNotFoundError, match="no such file"):
        evaluate_colorization(str(tmp_path / "missing.safetensors"), sample_dir, tmp_path / "o")
    with pytest.raises(ValueError, match="methods"):
        evaluate_colorization(None, sample_dir, tmp_path / "o", methods=["gray", "sepia"])
    with pytest.raises(FileNotFoundError, match="no shards/test"):
        (tmp_path / "prep" / "shards").mkdir(parents=True)
        evaluate_colorization(None, tmp_path / "prep", tmp_path / "o", split="test")


def _classifier_dir(shared_datasets):
    d = shared_datasets / "squeezenet1_1"
    assert d.is_dir(), f"ImageNet SqueezeNet weights absent at {d} (part of ../shared/datasets)"
    return d


def test_classifier_row_plumbing(tmp_path, shared_datasets, tiny_weights):
    m = evaluate_colorization(
        str(tiny_weights[0]), shared_datasets / "imagenet-sample-1000", tmp_path / "e", max_images=3, size=64,
        classifier_dir=_classifier_dir(shared_datasets), methods=["gray"], t_sweep=None, device="cpu",
    )  # fmt: skip
    assert 0 <= m["class_top1"] <= 100 and m["primary"] == "Ours"
    assert all(r["class_top1"] is not None for r in m["rows"].values())


@pytest.mark.slow
def test_classifier_ground_truth_beats_gray_50_images(tmp_path, shared_datasets):
    m = evaluate_colorization(
        None, shared_datasets / "imagenet-sample-1000", tmp_path / "e", max_images=50,
        classifier_dir=_classifier_dir(shared_datasets), device="cpu",
    )  # fmt: skip
    rows = m["rows"]
    assert rows["Ground truth"]["class_top1"] > rows["Gray"]["class_top1"], rows
    assert rows["Ground truth"]["class_top1"] >= 40


def test_bootstrap_intervals_bracket_the_rows_and_pair_with_gray(tmp_path, shared_datasets, tiny_weights):
    """Every row gets 95% intervals that contain its point value; a one-image set has no spread; Ours - Gray is
    the difference of the rows (paired resamples)."""
    kw = dict(size=64, classifier_dir=_classifier_dir(shared_datasets), t_sweep=None, device="cpu", gallery=0)
    data = shared_datasets / "imagenet-sample-1000"
    m = evaluate_colorization(str(tiny_weights[0]), data, tmp_path / "e", max_images=6, **kw)
    b = m["bootstrap"]
    assert b["level"] == 0.95 and b["reps"] == 10_000
    for name, row in m["rows"].items():
        for key, (lo, hi) in b["rows"][name].items():
            assert lo - 1e-9 <= row[key] <= hi + 1e-9, (name, key, lo, row[key], hi)
    assert b["rows"]["Ground truth"]["auc_raw"] == [100.0, 100.0]
    d = b["minus_gray"]["Ours"]["auc_rebal"]
    assert d[0] == pytest.approx(m["rows"]["Ours"]["auc_rebal"] - m["rows"]["Gray"]["auc_rebal"])
    assert d[1] <= d[0] <= d[2] and "Ground truth" not in b["minus_gray"]
    assert "bootstrap intervals" in (tmp_path / "e" / "report.md").read_text()
    one = evaluate_colorization(str(tiny_weights[0]), data, tmp_path / "one", max_images=1, **kw)
    for name, row in one["rows"].items():
        assert one["bootstrap"]["rows"][name]["auc_rebal"] == pytest.approx([row["auc_rebal"]] * 2)
