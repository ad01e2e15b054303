"""The splitbrain training task and the transfer step end to end on a tiny prepared dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import chromaflow.models.siggraph17  # noqa: F401  (registers siggraph17)
import chromaflow.models.splitbrain  # noqa: F401  (registers splitbrain)
from chromaflow.evaluate import transfer as tr
from chromaflow.io import read_json
from chromaflow.models import load_weights

TINY = "input_size=32,width=0.125,fc_width=16"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """2 classes ("warm" reddish, "cool" bluish noisy textures), 12 train + 6 val each, 32 px, prepared."""
    from chromaflow.data.prepare import prepare

    root = tmp_path_factory.mktemp("sbdata")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 6)):
        for label, base in (("warm", (200, 60, 40)), ("cool", (40, 80, 200))):
            d = root / "src" / split / label
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(np.array(base) + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i:03d}.png")
    prepare(str(root / "src"), str(root / "prep"), max_side=32, workers=1)
    return root / "prep"


@pytest.mark.parametrize("variant", ["split_cl_cl", "labels"])
def test_train_task_runs_through_the_engine(prepared, tmp_path, variant):
    from chromaflow.train import train

    m = train("splitbrain", data=str(prepared), out=str(tmp_path), variant=variant, input_size=32, width=0.125,
              fc_width=16, steps=2, batch_size=4, log_every=1)  # fmt: skip
    assert m["step"] == 2 and np.isfinite(m["final_loss"])
    model = load_weights(tmp_path / "model.safetensors")
    assert model.config["kwargs"]["variant"] == variant
    if variant == "labels":
        assert model.config["kwargs"]["num_classes"] == 2 and "val_top1" in m


def test_gaussian_is_not_trainable(prepared, tmp_path):
    from chromaflow.train import train

    with pytest.raises(ValueError, match="never trained"):
        train("splitbrain", data=str(prepared), out=str(tmp_path), variant="gaussian")


def test_transfer_end_to_end_and_cache(prepared, tmp_path, monkeypatch):
    models = {"gauss": f"random:splitbrain:variant=gaussian,{TINY}", "col": "random:eccv16:width=0.125"}
    m = tr.transfer(models, prepared, tmp_path, size=32, target_dim=256, wd=(1e-2, 1e-1), max_iter=30, batch_size=8)
    assert set(m["rows"]) == {"gauss", "col"}
    assert all(set(r) == set(tr.LAYERS) for r in m["rows"].values())
    assert m["n_train"] == 24 and m["n_val"] == 12 and m["chance_top1"] == 50.0
    assert m["transfer_best_top1"] == max(m["rows"]["gauss"].values())
    # colour is the class: even random Lab features separate it
    assert m["transfer_best_top1"] >= 90.0
    for f in ("metrics.json", "report.md", "report.html", "transfer.png"):
        assert (tmp_path / f).is_file()
    assert "| gauss |" in (tmp_path / "report.md").read_text()
    feats = list((tmp_path / "features").glob("*/train-conv1.npy"))
    assert len(feats) == 2 and np.load(feats[0]).dtype == np.float16
    # re-run: no-op; forced re-run: probes again but reads the cached features
    assert tr.transfer(models, prepared, tmp_path, size=32, target_dim=256, wd=(1e-2, 1e-1), max_iter=30,
                       batch_size=8) == read_json(tmp_path / "metrics.json")  # fmt: skip
    monkeypatch.setattr(tr, "extract", lambda *a, **k: pytest.fail("features were not read from the cache"))
    first = (tmp_path / "metrics.json").read_bytes()
    again = tr.transfer(models, prepared, tmp_path, size=32, target_dim=256, wd=(1e-2, 1e-1), max_iter=30,
                        batch_size=8, force=True)  # fmt: skip
    assert again["rows"] == m["rows"]
    # DVC hashes metrics.json: the same bytes on a re-run (the clock went to timing.json, which it once held)
    assert (tmp_path / "metrics.json").read_bytes() == first
    assert set(read_json(tmp_path / "timing.json")) == {"gauss", "col"}


def test_probes_are_scored_on_the_held_out_split(tmp_path):
    """Train: colour is the class (a probe fits it 100%). Val: each class is half warm, half cool, so colour says
    nothing and a probe that learned colour is at chance: the reported top-1 must be 50%, not the train 100%."""
    from chromaflow.data.prepare import prepare

    rng = np.random.default_rng(1)
    colours = {"warm": (200, 60, 40), "cool": (40, 80, 200)}
    layout = {"train": {"a": ["warm"] * 8, "b": ["cool"] * 8}, "val": {"a": ["warm", "cool"] * 3,
              "b": ["cool", "warm"] * 3}}  # fmt: skip
    for split, classes in layout.items():
        for label, looks in classes.items():
            d = tmp_path / "src" / split / label
            d.mkdir(parents=True)
            for i, look in enumerate(looks):
                img = np.clip(np.array(colours[look]) + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i:03d}.png")
    prepare(str(tmp_path / "src"), str(tmp_path / "prep"), max_side=32, workers=1)
    m = tr.transfer({"col": "random:eccv16:width=0.125"}, tmp_path / "prep", tmp_path / "out", size=32,
                    target_dim=256, wd=(1e-2,), max_iter=30, batch_size=8)  # fmt: skip
    assert m["n_train"] == 16 and m["n_val"] == 12
    for layer in ("conv1", "conv2"):
        assert m["detail"]["col"][layer]["train_top1"] == 100.0
        assert m["rows"]["col"][layer] == pytest.approx(50.0)


def test_transfer_input_errors(prepared, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tr.transfer(["x=nope.safetensors"], prepared, tmp_path)
    with pytest.raises(ValueError, match="unique"):
        tr.transfer(["a=random:eccv16", "a=random:eccv16"], prepared, tmp_path)
    with pytest.raises(ValueError, match="missing"):
        tr.transfer(["a=random:eccv16"], prepared, tmp_path, classes=["warm", "purple"])
    with pytest.raises(FileNotFoundError, match="not a folder"):
        tr.transfer(["a=random:eccv16"], tmp_path / "nodata", tmp_path)


@pytest.mark.parametrize("spec", ["random:eccv16:width=0.125", "random:siggraph17:width=0.125",
                                  f"random:splitbrain:variant=split_cl_cl,{TINY}"])  # fmt: skip
def test_extractors_give_five_frozen_layers(spec):
    ex = tr.load_extractor(spec, device=torch.device("cpu"))
    feats = ex.fn(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert list(feats) == list(tr.LAYERS)
    assert all(f.ndim == 4 and f.shape[0] == 2 and not f.requires_grad for f in feats.values())


def test_squeezenet_reference(shared_datasets):
    (path,) = (shared_datasets / "squeezenet1_1").glob("*.pth")
    ex = tr.load_extractor(f"squeezenet1_1:{path}", device=torch.device("cpu"), reference_size=128)
    feats = ex.fn(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == {
        "conv1": (64, 63, 63), "conv2": (128, 31, 31), "conv3": (256, 15, 15), "conv4": (384, 7, 7),
        "conv5": (512, 7, 7),
    }  # fmt: skip


def test_plot_groups_accept_labels_with_commas():
    rows = {"Split-Brain Auto (cl,cl)": dict.fromkeys(tr.LAYERS, 30.0), "Gaussian": dict.fromkeys(tr.LAYERS, 20.0)}
    png = tr.plot_transfer(rows, {"(c) aggregation": ["Split-Brain Auto (cl,cl)", "Gaussian"]})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
