"""Promotion gates read from ``mlflow/promotion.yaml``: per registered model, or a ``default``.

    default:
      gates:
        - {metric: auc_rebal, direction: higher, min_margin: 0.0}
    models:
      chromaflow-colorization:
        gates:
          - {metric: auc_rebal, direction: higher, min_margin: 0.5}

A gate passes when ``challenger - champion >= min_margin`` (direction ``higher``) or
``champion - challenger >= min_margin`` (direction ``lower``); a negative margin tolerates a loss.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROJECT_GATES = (
    "mlflow/promotion.yaml"  # as the CLI and components name it; read from package data when the cwd has none
)

DIRECTIONS = ("higher", "lower")
GATE_KEYS = {"metric", "direction", "min_margin", "description"}


class GateError(ValueError):
    """The gates file is missing, malformed, or has no gates for the model."""


@dataclass(frozen=True)
class Gate:
    metric: str
    direction: str  # "higher" | "lower"
    min_margin: float = 0.0
    description: str = ""

    def delta(self, challenger: float, champion: float) -> float:
        """Improvement of the challenger in this gate's direction (positive = better)."""
        return challenger - champion if self.direction == "higher" else champion - challenger

    def passes(self, challenger: float, champion: float) -> bool:
        return self.delta(challenger, champion) >= self.min_margin

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_gate(raw: Any, where: str) -> Gate:
    if not isinstance(raw, dict):
        raise GateError(f"{where}: a gate must be a mapping with metric/direction/min_margin, got {raw!r}")
    unknown = set(raw) - GATE_KEYS
    if unknown:
        raise GateError(f"{where}: unknown gate key(s) {sorted(unknown)}; allowed: {sorted(GATE_KEYS)}")
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        raise GateError(f"{where}: 'metric' must be a non-empty string, got {metric!r}")
    direction = raw.get("direction")
    if direction not in DIRECTIONS:
        raise GateError(f"{where} ({metric}): unknown direction {direction!r}; expected one of {list(DIRECTIONS)}")
    margin = raw.get("min_margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin):
        raise GateError(f"{where} ({metric}): 'min_margin' must be a finite number, got {margin!r}")
    return Gate(metric.strip(), direction, float(margin), str(raw.get("description", "")))


def load_gates(path: str | os.PathLike, model: str) -> tuple[list[Gate], str]:
    """Gates for registered ``model`` (its own section, else ``default``) and the file's sha256.

    Raises :class:`GateError` naming the file and the reason (missing file, bad YAML, wrong structure,
    unknown direction, duplicate metric, no gates for ``model``). The whole file is validated, not just
    the section used, so a typo elsewhere is caught before it bites.
    """
    import yaml

    p = Path(path)
    if not p.is_file() and str(path) == PROJECT_GATES:  # the project's gates: packaged with the library
        from chromaflow.resources import promotion_gates

        p = promotion_gates()
    if not p.is_file():
        raise GateError(f"gates file {p} not found")
    text = p.read_bytes()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise GateError(f"gates file {p} is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise GateError(f"gates file {p}: top level must be a mapping with 'default' and/or 'models'")
    unknown = set(doc) - {"default", "models"}
    if unknown:
        raise GateError(f"gates file {p}: unknown top-level key(s) {sorted(unknown)}; allowed: default, models")
    models = doc.get("models") or {}
    if not isinstance(models, dict):
        raise GateError(f"gates file {p}: 'models' must map registered model names to sections")
    sections: dict[str, Any] = {f"models.{k}": v for k, v in models.items()}
    if "default" in doc:
        sections["default"] = doc["default"]
    parsed: dict[str, list[Gate]] = {}
    for key, section in sections.items():
        if not isinstance(section, dict) or not isinstance(section.get("gates"), list) or not section["gates"]:
            raise GateError(f"gates file {p}: section {key!r} needs a non-empty 'gates' list")
        gates = [_parse_gate(g, f"{p}: {key}.gates[{i}]") for i, g in enumerate(section["gates"])]
        seen = [g.metric for g in gates]
        dup = sorted({m for m in seen if seen.count(m) > 1})
        if dup:
            raise GateError(f"gates file {p}: section {key!r} lists metric(s) {dup} more than once")
        parsed[key] = gates
    gates = parsed.get(f"models.{model}") or parsed.get("default")
    if not gates:
        raise GateError(f"gates file {p} has no section for model {model!r} and no 'default'")
    return gates, hashlib.sha256(text).hexdigest()
