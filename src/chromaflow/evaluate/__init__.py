"""Metrics and protocols of the thesis: colorization (Table 2.1), and report helpers shared by every task.

>>> from chromaflow.evaluate import evaluate_colorization
>>> m = evaluate_colorization("runs/demo/model.safetensors", "runs/demo/prepared", "runs/demo/eval")  # doctest: +SKIP
"""

from chromaflow.evaluate.colorization import evaluate_colorization
from chromaflow.evaluate.metrics import AucMeter, auc, auc_class_weights, colorfulness_m3, mean_chroma, psnr

__all__ = ["AucMeter", "auc", "auc_class_weights", "colorfulness_m3", "evaluate_colorization", "mean_chroma", "psnr"]
