"""The ``promote`` step: register trained weights as the ``challenger`` (optional), then apply the gates.

    chromaflow promote --model chromaflow-colorization --gates mlflow/promotion.yaml --out runs/demo/decision.json
    chromaflow promote --model chromaflow-colorization --weights W --metrics M   # register a challenger first

The decision is :func:`chromaflow.tracking.promote.promote`; the registration is :func:`register_challenger`
(:func:`chromaflow.export.mlflow_model.log_model` with the evaluation's numbers as version tags).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from chromaflow.export.mlflow_model import image_example, log_model
from chromaflow.tracking.gates import GateError
from chromaflow.tracking.promote import DEFAULT_GATES, PromotionError, promote

log = logging.getLogger(__name__)


def register_challenger(
    weights: str | os.PathLike,
    metrics: str | os.PathLike,
    name: str,
    *,
    experiment: str = "chromaflow-models",
    uri: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Any:
    """Register ``weights`` (a ``save_weights`` file) as a new version of ``name`` with alias ``challenger``,
    tagged with the numeric results of ``metrics`` (an ``evaluate`` metrics.json) and its ``eval_set``.

    Returns the MLflow ``ModelVersion``.
    """
    try:
        with open(metrics, encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError) as e:
        raise PromotionError(f"metrics {metrics}: cannot read an evaluation result ({e})") from None
    if not isinstance(result, dict):
        raise PromotionError(f"metrics {metrics}: expected a JSON object, got {type(result).__name__}")
    scalars = {k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    example = image_example()  # uint8 (1, 32, 32, 3); log_model builds its own for kinds taking other inputs (lpips)
    return log_model(
        weights, name, example, metrics=scalars, eval_set=result.get("eval_set"), experiment=experiment,
        data=weights, params=params, uri=uri,
    )  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered model name, e.g. chromaflow-colorization")
    parser.add_argument("--gates", default=DEFAULT_GATES, help="promotion gates YAML (default: %(default)s)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI or local)")
    parser.add_argument("--out", default=None, help="write the decision JSON here (atomically)")
    parser.add_argument("--weights", help="first register these weights as the new challenger (with --metrics)")
    parser.add_argument("--metrics", help="evaluation metrics.json of --weights (its numbers become version tags)")
    parser.add_argument(
        "--fail-if-rejected", action="store_true", help="exit with status 1 when the challenger is not promoted"
    )


def main(args: argparse.Namespace) -> int:
    if bool(args.weights) != bool(args.metrics):
        log.error("promote: --weights and --metrics go together (register a challenger with its evaluation)")
        return 2
    try:
        if args.weights:
            register_challenger(args.weights, args.metrics, args.model, uri=args.tracking_uri)
        decision = promote(args.model, args.gates, uri=args.tracking_uri, out=args.out)
    except (GateError, PromotionError, FileNotFoundError, ValueError) as e:
        log.error("promote: %s", e)
        return 2
    for r in decision["reasons"]:
        print(r)
    return 1 if args.fail_if_rejected and not decision["promoted"] else 0
