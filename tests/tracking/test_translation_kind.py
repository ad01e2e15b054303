"""The bicyclegan description registers as kind ``translation`` and its pyfunc answers through ``translate_batch``:
uint8 ``(N, H, W, 3)`` -> ``(N, 1, H, W, 3)``, one sample per image from seed ``BARE_SEED`` (what the offline path
gives for the same image and seed)."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch

import chromaflow.models as models
from chromaflow.export.mlflow_model import kinds, log_model
from chromaflow.models.translation import BARE_SEED, SERVED_SIZE, TranslateInput, translate_batch


def test_bicyclegan_registers_and_predicts_through_the_pyfunc(uri, model_name, tmp_path):
    torch.manual_seed(0)
    net = models.create_model("bicyclegan", num_downs=5, width=0.125, input_nc=1, paths=())
    models.save_weights(net, tmp_path / "model.safetensors")
    assert kinds()["bicyclegan"] == "translation"
    mv = log_model(tmp_path / "model.safetensors", model_name, None, uri=uri, experiment="test-translation")
    assert mv.tags["chromaflow.kind"] == "translation" and mv.tags["chromaflow.model"] == "bicyclegan"
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_name}/{mv.version}")
    assert pyfunc.model_config["size"] == SERVED_SIZE
    batch = np.random.default_rng(1).integers(0, 256, (2, 40, 30, 3), dtype=np.uint8)
    out = pyfunc.predict(batch)
    assert out.dtype == np.uint8 and out.shape == (2, 1, 40, 30, 3)
    loaded = models.load_weights(tmp_path / "model.safetensors")
    x = torch.from_numpy(batch).permute(0, 3, 1, 2)
    ref = translate_batch(loaded, [TranslateInput(img, seed=BARE_SEED) for img in x], size=SERVED_SIZE)
    for got, r in zip(out, ref, strict=True):
        assert np.abs(got.astype(int) - r.images.permute(0, 2, 3, 1).numpy().astype(int)).max() <= 1


def test_translation_size_is_checked_before_logging(tmp_path):
    models.save_weights(models.create_model("bicyclegan", num_downs=5, width=0.125, paths=()), tmp_path / "m.st")
    with pytest.raises(ValueError, match="size must be >= 8 for a translation model"):
        log_model(tmp_path / "m.st", "never-logged", None, size=4)
