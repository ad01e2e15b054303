# The pyfunc_model.py that log_model copied into every version registered before the pyfunc moved to
# chromaflow.export (commit bab7d61, verbatim below this header): test_registry loads such a version.
"""MLflow "models from code" pyfunc for every model kind chromaflow registers: nothing is cloudpickled.

MLflow executes this file when the model is loaded: ``load_context`` reads the safetensors artifact ``weights``
(sha256-checked, strict, never unpickled) through ``chromaflow.tracking.registry.load_model_file``. ``predict``
is the model description's ``predict`` (``chromaflow.models.describe``: the same path as TorchServe and the
offline ``colorize``) on uint8 ``(N, H, W, 3)``; an LPIPS model takes uint8 ``(N, 2, H, W, 3)`` pairs and
returns float32 ``(N,)`` distances (Eq. 6.1).
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


def _described(model, model_input, size: int, **options) -> np.ndarray:
    """Any described model: its ``predict`` (the one inference path), ``BATCH`` images per call, each output
    turned into numpy by the description's ``to_output``; ``size`` feeds ``predict(size=)`` when described, and
    ``options`` (``upsample`` of the colorization kind, from ``model_config``) go to ``predict`` as given."""
    import torch

    from chromaflow.models import describe

    description = describe(model.config["name"])
    options = options | ({} if description.served_size is None else {"size": size})
    rgb = torch.from_numpy(_images(model_input)).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
    out = []
    for chunk in rgb.split(BATCH):
        out += [description.to_output(o) for o in description.predict(model, list(chunk), **options)]
    return np.stack(out)


def _lpips(model, model_input, size: int) -> np.ndarray:
    """An LPIPS model: uint8 ``(N, 2, H, W, 3)`` pairs -> float32 ``(N,)`` distances, through its description's
    ``predict``, ``BATCH`` pairs per call."""
    import torch

    from chromaflow.models import describe

    x = np.asarray(model_input)
    if x.dtype != np.uint8 or x.ndim != 5 or x.shape[1] != 2 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 image pairs of shape (N, 2, H, W, 3), got {x.dtype} {x.shape}")
    description = describe(model.config["name"])
    pairs = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 1, 4, 2, 3)  # (N, 2, 3, H, W) uint8
    out = []
    for chunk in pairs.split(BATCH):
        out += [description.to_output(d) for d in description.predict(model, list(chunk))]
    return np.asarray(out, dtype=np.float32).reshape(-1)


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
        if self.kind == "lpips":
            return _lpips(self.model, model_input, self.size)
        return _described(self.model, model_input, self.size, **self.options)


ColorizerModel = ChromaflowModel  # the class's former name

mlflow.models.set_model(ChromaflowModel())
