"""MLflow "models from code" pyfunc for every model kind chromaflow registers: nothing is cloudpickled.

MLflow executes this file when the model is loaded (``mlflow.pyfunc.load_model``): it calls
``mlflow.models.set_model`` with a :class:`ChromaflowModel`, whose ``load_context`` reads the safetensors
artifact ``weights`` (sha256-checked against ``model_config["weights_sha256"]``) through
``chromaflow.tracking.registry.load_model_file`` (strict, never unpickles), which also gives the model's kind
(``registry.KINDS``, from the config name stored in the weights). ``predict`` by kind:

- ``colorization`` (eccv16): uint8 ``(N, H, W, 3)`` RGB (or gray as three equal channels; only L is used)
  -> colorized uint8 ``(N, H, W, 3)`` (the input's L, predicted ab; ``chromaflow.models.colorize``; ab upsampled
  as ``model_config["upsample"]`` says: ``bilinear``, the default, or ``guided``).
- ``guided`` (siggraph17): same input and output, automatic mode: no local and no global hints, through
  ``chromaflow.serving.guided.guided_batch`` (the serving no-hint path) at ``model_config["size"]``.
- ``lpips``: uint8 ``(N, 2, H, W, 3)`` pairs (H, W >= the backbone's minimum) -> float32 ``(N,)`` LPIPS
  distances d(pair[0], pair[1]) (``chromaflow.evaluate.lpips``, Eq. 6.1).
- ``representation`` (splitbrain): uint8 ``(N, H, W, 3)`` -> float32 ``(N, D)``: the ``conv5`` maps of the
  towers concatenated (Eq. 5.3) on the image resized (bilinear, antialiased) to the model's ``input_size``,
  averaged over space; D = conv5 channels of the whole model.
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

BATCH = 16  # images (or pairs) per forward pass


def _images(model_input) -> np.ndarray:
    x = np.asarray(model_input)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x)


def _colorize(model, x: np.ndarray, size: int, upsample: str = "bilinear") -> np.ndarray:
    import torch

    from chromaflow.models import colorize

    rgb = torch.from_numpy(x).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
    out = colorize(model, rgb, size=size, batch_size=BATCH, upsample=upsample)  # (N, 3, H, W) float [0, 1]
    return (out * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _guided(model, x: np.ndarray, size: int) -> np.ndarray:
    import torch

    from chromaflow.serving.guided import GuidedInput, guided_batch
    from chromaflow.serving.response import to_uint8_hwc

    rgb = torch.from_numpy(x).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
    out = []
    for chunk in rgb.split(BATCH):
        res = guided_batch(model, [GuidedInput(rgb=r) for r in chunk], size=size)  # no hints, no global hints
        out += [to_uint8_hwc(r.rgb) for r in res]
    return np.stack(out)


def _lpips(model, model_input, size: int) -> np.ndarray:
    import torch

    from chromaflow.evaluate.lpips import pairwise_distances

    x = np.asarray(model_input)
    if x.dtype != np.uint8 or x.ndim != 5 or x.shape[1] != 2 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 image pairs of shape (N, 2, H, W, 3), got {x.dtype} {x.shape}")
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 1, 4, 2, 3)  # (N, 2, 3, H, W) uint8
    return pairwise_distances(model, t[:, 0], t[:, 1], batch_size=BATCH).numpy().astype(np.float32)


def _representation(model, x: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    from chromaflow import color
    from chromaflow.models.splitbrain import normalize_lab
    from chromaflow.tracking.registry import REPRESENTATION_LAYER

    side = int(model.config["kwargs"]["input_size"])
    rgb = torch.from_numpy(x).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
    out = []
    with torch.inference_mode():
        for chunk in rgb.split(BATCH):
            if tuple(chunk.shape[-2:]) != (side, side):
                chunk = F.interpolate(
                    chunk.float() / 255.0, size=(side, side), mode="bilinear", align_corners=False, antialias=True
                ).clamp(0, 1)
            feats = model.layer_features(normalize_lab(color.rgb_to_lab(chunk)))[REPRESENTATION_LAYER]
            out.append(feats.float().mean(dim=(2, 3)))  # (b, D)
    return torch.cat(out).numpy().astype(np.float32)


PREDICT = {"colorization": _colorize, "guided": _guided, "lpips": _lpips, "representation": _representation}


class ChromaflowModel(PythonModel):
    """Wraps a chromaflow network of any registered kind for ``mlflow.pyfunc`` (see the module docstring)."""

    # MLflow's own switch (its ChatModel uses it) to skip type-hint validation of predict. Without it MLflow
    # warns "Add type hints to the `predict` method" at each definition of this class (every registration and
    # load), and no warnings filter can silence that: MLflow resets the filters around the check. Our predict
    # has no type hints on purpose (see predict); the logged signature is the schema.
    _skip_type_hint_validation = True

    def load_context(self, context):
        from chromaflow.tracking.registry import load_model_file

        cfg = dict(context.model_config or {})
        self.size = int(cfg.get("size", 256))
        self.options = {"upsample": str(cfg["upsample"])} if "upsample" in cfg else {}  # colorization only
        self.kind, self.model, _ = load_model_file(context.artifacts["weights"], cfg.get("weights_sha256"))
        if cfg.get("kind", self.kind) != self.kind:
            raise ValueError(f"model_config kind {cfg['kind']!r} but the weights hold a {self.kind!r} model")

    # no type hints on predict: MLflow would read them as a schema; the logged signature is the schema
    def predict(self, context, model_input, params=None):
        x = model_input if self.kind == "lpips" else _images(model_input)
        return PREDICT[self.kind](self.model, x, self.size, **self.options)


ColorizerModel = ChromaflowModel  # the class's former name

mlflow.models.set_model(ChromaflowModel())
