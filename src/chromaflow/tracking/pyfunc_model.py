"""MLflow "models from code" pyfunc for colorization: nothing is cloudpickled.

MLflow executes this file when the model is loaded (``mlflow.pyfunc.load_model``): it calls
``mlflow.models.set_model`` with a :class:`ColorizerModel`, whose ``load_context`` reads the
safetensors artifact ``weights`` (sha256-checked against ``model_config["weights_sha256"]``) through
``chromaflow.models.load_weights`` (strict, never unpickles).

Input: uint8 ``(N, H, W, 3)`` RGB, or gray as three equal channels (only L is used).
Output: colorized uint8 ``(N, H, W, 3)`` (the input's L, predicted ab; ``chromaflow.models.colorize``).
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class ColorizerModel(PythonModel):
    """Wraps a chromaflow colorization network for ``mlflow.pyfunc``."""

    def load_context(self, context):
        from chromaflow.models import load_weights

        cfg = dict(context.model_config or {})
        self.size = int(cfg.get("size", 256))
        self.model = load_weights(context.artifacts["weights"], expected_sha256=cfg.get("weights_sha256"))

    # no type hints on predict: MLflow would read them as a schema; the logged signature is the schema
    def predict(self, context, model_input, params=None):
        import torch

        from chromaflow.models import colorize

        x = np.asarray(model_input)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {x.dtype} {x.shape}")
        rgb = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
        out = colorize(self.model, rgb, size=self.size)  # (N, 3, H, W) float [0, 1]
        return (out * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


mlflow.models.set_model(ColorizerModel())
