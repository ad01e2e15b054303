"""A new servable model is its module: a network, its factory and ONE registration line with its description.

The tiny test-only model below (three pieces + the ``register_description`` line) then flows, with no other
file edited, through the model registry, offline ``colorize``, the MLflow registration (kind, signature, served
size), the MLflow pyfunc's predict and the choice of TorchServe handler.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
import yaml
from torch import nn

import chromaflow.models as models
from chromaflow import color
from chromaflow.export.mlflow_model import kinds, log_model
from chromaflow.models.inference import colorize_batch, image_example, to_uint8_hwc

TINT_AB = (12.0, -30.0)  # the ab the tiny model predicts everywhere


class TinyTint(nn.Module):  # piece 1: the network (regression head: ab / ab_norm at H/4)
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(1, 2, 1)

    def forward(self, light: torch.Tensor) -> torch.Tensor:
        return self.head(light[:, :, ::4, ::4])


@models.register_model  # piece 2: its factory
def tiny_tint() -> TinyTint:
    return TinyTint()


models.register_description(  # piece 3: the one registration line, with its description
    "tiny_tint",
    models.ModelDescription(
        kind="colorization", predict=colorize_batch, to_output=to_uint8_hwc, example=image_example, served_size=16
    ),
)


@models.register_model
def tiny_undescribed() -> TinyTint:  # a registered network without a description: not servable
    return TinyTint()


def _tint_weights(path):
    model = models.create_model("tiny_tint")
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor(TINT_AB) / model.config["contract"]["ab_norm"])
    models.save_weights(model, path)
    return model


def _reference(batch: np.ndarray) -> np.ndarray:
    """Independent of predict: the photo's own L with the constant ab, converted once per image."""
    rgb = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0
    lab = color.rgb_to_lab(rgb)
    lab[:, 1], lab[:, 2] = TINT_AB
    return (color.lab_to_rgb(lab) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_the_description_is_found_by_every_table():
    from chromaflow.export.mar import HANDLER, handler_kind

    assert "tiny_tint" in models.list_models()
    assert kinds()["tiny_tint"] == "colorization" and "tiny_undescribed" not in kinds()
    assert handler_kind("tiny_tint").handler == HANDLER


def test_offline_colorize_runs_the_description_predict():
    model = models.create_model("tiny_tint")
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor(TINT_AB) / model.config["contract"]["ab_norm"])
    batch = np.random.default_rng(0).integers(0, 256, (2, 24, 20, 3), dtype=np.uint8)
    out = models.colorize(model, torch.from_numpy(batch).permute(0, 3, 1, 2), size=16)
    got = (out * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(got.astype(int) - _reference(batch)).max() <= 1


def test_registered_pyfunc_predicts_through_the_description(uri, model_name, tmp_path):
    _tint_weights(tmp_path / "model.safetensors")
    mv = log_model(tmp_path / "model.safetensors", model_name, None, uri=uri, experiment="test-new-model")
    assert mv.tags["chromaflow.kind"] == "colorization" and mv.tags["chromaflow.model"] == "tiny_tint"
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_name}/{mv.version}")
    assert pyfunc.model_config["size"] == 16  # the description's served size
    batch = np.random.default_rng(1).integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)
    out = pyfunc.predict(batch)
    assert out.dtype == np.uint8 and out.shape == batch.shape
    assert np.abs(out.astype(int) - _reference(batch)).max() <= 1


def test_a_model_without_description_is_refused_before_logging(uri, model_name, tmp_path):
    models.save_weights(models.create_model("tiny_undescribed"), tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="tiny_undescribed.*pyfunc does not know"):
        log_model(tmp_path / "model.safetensors", model_name, None, uri=uri)


@pytest.mark.parametrize(
    ("name", "template"),
    [
        ("eccv16", "model-config.yaml"),
        ("siggraph17", "guided-model-config.yaml"),
        ("bicyclegan", "translate-model-config.yaml"),
    ],
)
def test_described_served_size_is_the_archive_template_size(name, template):
    from chromaflow.export.mar import SERVING_DIR

    handler = yaml.safe_load((SERVING_DIR / template).read_text(encoding="utf-8"))["handler"]
    assert models.describe(name).served_size == handler["size"]
