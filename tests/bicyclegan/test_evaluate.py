"""``chromaflow evaluate-translation`` (thesis ch. 4 protocol): the Fréchet distance against closed forms and an
independent scipy computation, the held-out real-vs-fake classifier at chance and at separation, diversity of a
generator that ignores z, and the CLI on a tiny trained run with real BSDS500 pairs (4 val photos, 1 train)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from scipy import linalg

from chromaflow.cli import main as cli
from chromaflow.data.pairs import prepare_pairs
from chromaflow.evaluate.realism import frechet_distance, gaussian_stats, real_fake_scores
from chromaflow.evaluate.translation import METRIC_KEYS, select_inputs
from chromaflow.models import create_model, save_weights

VAL = ("101085", "101087", "102061", "103070", "105025")  # BSDS500 val photos
TRAIN = ("100075",)
EVAL = ["--inputs", "4", "--samples", "3", "--seed", "0", "--split", "val"]


# ------------------------------------------------------------------------------------------ Fréchet distance


def test_frechet_matches_closed_form_for_commuting_covariances():
    # diagonal covariances commute: FD = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2; zeros make both singular
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 3.0]), np.array([1.0, 1.0, 0.5, 0.0])
    a, b = np.array([1.0, 0.0, 4.0, 2.0]), np.array([0.0, 0.0, 1.0, 9.0])
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-10)
    # rotating both by the same orthogonal matrix changes nothing
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    got = frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(want, rel=1e-8)


def test_frechet_matches_scipy_sqrtm_for_full_covariances():
    rng = np.random.default_rng(1)
    for d in (1, 3, 16):
        x, y = rng.normal(size=(d, 2 * d + 3)), rng.normal(size=(d, 2 * d + 3))
        s1, s2 = x @ x.T / d, y @ y.T / d + 0.1 * np.eye(d)
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(np.real(linalg.sqrtm(s1 @ s2)))
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-7, abs=1e-9)
        assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_of_samples_approaches_the_population_distance():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200_000, 2)) * [1.0, 2.0]
    y = rng.normal(size=(200_000, 2)) * [3.0, 0.5] + [1.0, 0.0]
    want = 1.0 + (1 - 3) ** 2 + (2 - 0.5) ** 2
    assert frechet_distance(*gaussian_stats(x), *gaussian_stats(y)) == pytest.approx(want, rel=0.02)


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not agree"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 4)))


# ------------------------------------------------------------------------------------- real-vs-fake classifier


def test_classifier_is_at_chance_on_identical_distributions():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(100, 8)), rng.normal(size=(100, 4, 8))
    scores = real_fake_scores(real, fake, seed=0)
    assert scores.shape == (100,) and ((scores >= 0) & (scores <= 1)).all()
    assert abs(scores.mean() - 0.5) < 0.12, scores.mean()


def test_classifier_separates_separable_distributions():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(100, 16)) + 3.0
    fake = rng.normal(size=(100, 5, 16))
    assert real_fake_scores(real, fake, seed=0).mean() > 0.97


def test_classifier_rejects_bad_shapes():
    with pytest.raises(ValueError, match="real .N, D. and fake"):
        real_fake_scores(np.zeros((10, 4)), np.zeros((9, 2, 4)))


def test_select_inputs_one_per_photo_seeded():
    photos = [f"p{i // 3}" for i in range(30)]  # 10 photos with 3 inputs each
    ids = [f"id{i:02d}" for i in range(30)]
    got = select_inputs(photos, ids, 6, seed=0)
    assert len({photos[i] for i in got}) == 6 and got == select_inputs(photos, ids, 6, seed=0)
    assert got != select_inputs(photos, ids, 6, seed=1)
    with pytest.raises(ValueError, match="only 10 photos"):
        select_inputs(photos, ids, 11, seed=0)


# --------------------------------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def pairs(shared_file, tmp_path_factory):
    bsds = shared_file("bsds500")
    files = []
    for split, photos in (("val", VAL), ("train", TRAIN)):
        for p in photos:
            files.append(bsds / "images" / split / f"{p}.jpg")
            files += sorted((bsds / "boundaries" / split).glob(f"{p}_*.png"))[:2]
    root = tmp_path_factory.mktemp("bg_eval")
    (root / "list.txt").write_text("\n".join(str(f) for f in files) + "\n")
    prepare_pairs(str(root / "list.txt"), root / "pairs", max_side=80)
    return root / "pairs"


@pytest.fixture(scope="module")
def trained(pairs, tmp_path_factory):
    """A few engine steps of BicycleGAN (width 1/8) on the one train photo."""
    from chromaflow.data.pair_dataset import PairDataset
    from chromaflow.train.engine import TrainConfig, fit, seed_all
    from chromaflow.train.tasks.bicyclegan import BicycleGANTask

    out = tmp_path_factory.mktemp("bg_run")
    task = BicycleGANTask(PairDataset(pairs, "train", size=64), None, variant="bicyclegan", size=64, width=0.125)
    seed_all(0)
    fit(task, TrainConfig(out=str(out), steps=3, batch_size=2, lr=2e-4, beta1=0.5, beta2=0.999, weight_decay=0.0))
    return out


def evaluate(model, pairs, out, *extra, squeeze) -> int:
    args = ["evaluate-translation", "--model", str(model), "--data", str(pairs), "--out", str(out)]
    return cli([*args, "--classifier-dir", str(squeeze), *EVAL, *extra])


def test_cli_on_a_tiny_run_writes_every_metric(trained, pairs, tmp_path, shared_file):
    squeeze = shared_file("squeezenet1_1")
    assert evaluate(trained, pairs, tmp_path / "e1", squeeze=squeeze) == 0
    m = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(m), set(METRIC_KEYS) - set(m)
    assert m["n_inputs"] == 4 and m["n_pairs"] == 4 * 2 and len(set(m["input_ids"])) == 4
    assert all(i.split("/")[1] in ("val", "test") for i in m["input_ids"])  # held-out maps only
    assert m["diversity_lpips"] > 0 and m["real_pairs_lpips"] > 0
    assert m["diversity_lpips_ci95"][0] <= m["diversity_lpips"] <= m["diversity_lpips_ci95"][1]
    assert m["recon_l1"] > 0 and m["latent_l1"] > 0 and np.isfinite(m["frechet_squeezenet"])
    assert 0 <= m["real_fake_accuracy"] <= 1
    assert "PROXIES" in m["proxies"] and "proxies" in (tmp_path / "e1" / "report.md").read_text().lower()
    # deterministic with --seed
    assert evaluate(trained, pairs, tmp_path / "e2", squeeze=squeeze) == 0
    assert (tmp_path / "e2" / "metrics.json").read_bytes() == (tmp_path / "e1" / "metrics.json").read_bytes()


def test_diversity_is_zero_when_the_generator_ignores_z(pairs, tmp_path, shared_file):
    torch.manual_seed(0)
    net = create_model("bicyclegan", nz=8, where_add="input", encoder=None, num_downs=6, width=0.125, input_nc=1)
    save_weights(net, tmp_path / "uses_z" / "model.safetensors")
    with torch.no_grad():
        net.generator.net.down[-1].weight[:, 1:] = 0  # z enters only here (add_to_input): cut it off
    save_weights(net, tmp_path / "ignores_z" / "model.safetensors")
    squeeze = shared_file("squeezenet1_1")
    for name in ("uses_z", "ignores_z"):
        assert evaluate(tmp_path / name, pairs, tmp_path / name / "eval", squeeze=squeeze) == 0
    uses = json.loads((tmp_path / "uses_z" / "eval" / "metrics.json").read_text())
    ignores = json.loads((tmp_path / "ignores_z" / "eval" / "metrics.json").read_text())
    assert ignores["diversity_lpips"] < 1e-6 and uses["diversity_lpips"] > 1e-3
    assert ignores["recon_l1"] is None and ignores["latent_l1"] is None  # no encoder: not applicable


def test_bad_inputs_get_clear_errors(trained, pairs, tmp_path, shared_file, caplog):
    squeeze = shared_file("squeezenet1_1")
    caplog.set_level(logging.ERROR)
    assert evaluate(tmp_path / "nope", pairs, tmp_path / "o", squeeze=squeeze) == 2
    assert "--model" in caplog.text and "no such training run" in caplog.text
    (tmp_path / "empty_run").mkdir()
    assert evaluate(tmp_path / "empty_run", pairs, tmp_path / "o", squeeze=squeeze) == 2
    assert "no model.safetensors" in caplog.text
    train_only = tmp_path / "train_only"
    (train_only / "shards").mkdir(parents=True)
    for f in (pairs / "shards").glob("train-*.parquet"):
        (train_only / "shards" / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((pairs / "manifest.json").read_text())
    manifest["shards"] = [s for s in manifest["shards"] if "val-" not in s]
    (train_only / "manifest.json").write_text(json.dumps(manifest))
    caplog.clear()
    assert evaluate(trained, train_only, tmp_path / "o", squeeze=squeeze) == 2
    assert "--data" in caplog.text and "no val pairs" in caplog.text
    caplog.clear()
    assert evaluate(trained, pairs, tmp_path / "o", "--split", "train", squeeze=squeeze) == 2
    assert "never on training pairs" in caplog.text
    caplog.clear()
    assert evaluate(trained, pairs, tmp_path / "o", "--inputs", "50", squeeze=squeeze) == 2
    assert "only 5 photos" in caplog.text
    assert not (tmp_path / "o" / "metrics.json").exists()
