"""The promotion decision: compare the ``challenger`` version with the ``champion`` and move the alias.

    decision = promote("chromaflow-colorization", "mlflow/promotion.yaml", out="runs/demo/decision.json")

Metrics of a version are its tags ``metric.<name>`` (written at registration with the eval-set fingerprint
``chromaflow.eval_set``). ``champion`` moves only when ALL gates pass; with no champion yet, the challenger
becomes champion if it has every gate metric. Versions evaluated on different eval sets are never compared
blindly: an ``evaluate_fn(version) -> dict`` re-evaluates both, otherwise promotion is refused. The decision
and its reasons are recorded on the challenger version (tags ``chromaflow.promotion.*`` + description) and
written atomically as JSON to ``out``. Bad input (missing model/alias/metric, bad gates file) raises a clear
error before anything changes.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from chromaflow import io
from chromaflow.tracking.gates import PROJECT_GATES, Gate, load_gates
from chromaflow.tracking.runs import configure

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
METRIC_TAG = "metric."
EVAL_SET_TAG = "chromaflow.eval_set"
TAG = "chromaflow.promotion."
DEFAULT_GATES = PROJECT_GATES


class PromotionError(RuntimeError):
    """Promotion cannot decide (missing model, alias or metric; incomparable eval sets). Nothing was changed."""


def _version_metrics(mv: Any, gates: list[Gate], source: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Gate metrics of model version ``mv``, from ``source`` if given, else from its ``metric.<name>`` tags."""
    where = "evaluation result" if source is not None else "tags"
    if source is None:
        source = {k[len(METRIC_TAG) :]: v for k, v in (mv.tags or {}).items() if k.startswith(METRIC_TAG)}
    out: dict[str, float] = {}
    for g in gates:
        if g.metric not in source:
            have = sorted(source) or "none"
            raise PromotionError(
                f"version {mv.version} of {mv.name!r} has no metric {g.metric!r} in its {where} "
                f"(has: {have}); register it with tag '{METRIC_TAG}{g.metric}' or re-evaluate"
            )
        try:
            value = float(source[g.metric])
        except (TypeError, ValueError):
            raise PromotionError(
                f"version {mv.version} of {mv.name!r}: metric {g.metric!r} is not a number: {source[g.metric]!r}"
            ) from None
        if not math.isfinite(value):
            raise PromotionError(f"version {mv.version} of {mv.name!r}: metric {g.metric!r} is not finite: {value}")
        out[g.metric] = value
    return out


def _describe(mv: Any, metrics: Mapping[str, float], eval_set: str) -> dict[str, Any]:
    return {"version": str(mv.version), "run_id": mv.run_id, "metrics": dict(metrics), "eval_set": eval_set}


def promote(
    name: str,
    gates_path: str | os.PathLike = DEFAULT_GATES,
    eval_metrics: Mapping[str, Mapping[str, float]] | None = None,
    *,
    evaluate_fn: Callable[[Any], Mapping[str, float]] | None = None,
    uri: str | None = None,
    out: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Decide whether ``name@challenger`` replaces ``name@champion``; move the alias when all gates pass.

    ``eval_metrics``: optional ``{version: {metric: value}}`` measured by the caller on ONE frozen eval set,
    used instead of the version's tags (two overridden versions count as comparable). ``evaluate_fn(version)``
    (an MLflow ``ModelVersion``) returns metrics on a common eval set; it is called for both versions only
    when their ``chromaflow.eval_set`` tags differ or are missing. Returns the decision: ``promoted`` (the
    challenger is champion afterwards), ``changed`` (the alias moved), ``reasons``, ``challenger``,
    ``champion``, ``gates``, ``results``. Raises :class:`GateError` / :class:`PromotionError` before any change.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not isinstance(name, str) or not name.strip():
        raise PromotionError(f"model name must be a non-empty string, got {name!r}")
    gates, gates_sha = load_gates(gates_path, name)
    resolved = configure(uri)
    client = MlflowClient(tracking_uri=resolved, registry_uri=resolved)
    try:
        rm = client.get_registered_model(name)
    except MlflowException as e:
        raise PromotionError(f"registered model {name!r} not found at {resolved}: {e.message}") from None
    aliases = dict(rm.aliases or {})
    if CHALLENGER not in aliases:
        raise PromotionError(f"registered model {name!r} has no '{CHALLENGER}' alias (aliases: {aliases or 'none'})")
    challenger = client.get_model_version(name, str(aliases[CHALLENGER]))
    champion = client.get_model_version(name, str(aliases[CHAMPION])) if CHAMPION in aliases else None
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    decision: dict[str, Any] = {
        "model": name,
        "tracking_uri": resolved,
        "gates_file": str(gates_path),
        "gates_sha256": gates_sha,
        "gates": [g.as_dict() for g in gates],
        "time": now,
        "results": [],
    }
    ch_set = (challenger.tags or {}).get(EVAL_SET_TAG, "")

    if champion is not None and champion.version == challenger.version:
        metrics = _version_metrics(challenger, gates, (eval_metrics or {}).get(str(challenger.version)))
        decision.update(
            promoted=True,
            changed=False,
            eval_mode="tags",
            challenger=_describe(challenger, metrics, ch_set),
            champion=_describe(champion, metrics, ch_set),
            reasons=[f"version {challenger.version} is already '{CHAMPION}'; nothing to do"],
        )
        _write(out, decision)
        return decision

    overrides = eval_metrics or {}
    if champion is None:
        metrics = _version_metrics(challenger, gates, overrides.get(str(challenger.version)))
        decision.update(
            eval_mode="override" if str(challenger.version) in overrides else "tags",
            challenger=_describe(challenger, metrics, ch_set),
            champion=None,
            promoted=True,
            reasons=[
                f"no '{CHAMPION}' yet: version {challenger.version} has every gate metric "
                f"({', '.join(f'{k}={v:g}' for k, v in metrics.items())}) and becomes '{CHAMPION}'"
            ],
        )
    else:
        cp_set = (champion.tags or {}).get(EVAL_SET_TAG, "")
        both_overridden = str(challenger.version) in overrides and str(champion.version) in overrides
        if both_overridden:
            mode = "override"
            ch_m = _version_metrics(challenger, gates, overrides[str(challenger.version)])
            cp_m = _version_metrics(champion, gates, overrides[str(champion.version)])
        elif ch_set and ch_set == cp_set:
            mode = "tags"
            ch_m = _version_metrics(challenger, gates, overrides.get(str(challenger.version)))
            cp_m = _version_metrics(champion, gates, overrides.get(str(champion.version)))
        elif evaluate_fn is not None:
            mode = "re-evaluated"
            log.info("eval sets differ (%r vs %r): re-evaluating both versions", ch_set, cp_set)
            ch_m = _version_metrics(challenger, gates, dict(evaluate_fn(challenger)))
            cp_m = _version_metrics(champion, gates, dict(evaluate_fn(champion)))
        else:
            raise PromotionError(
                f"{name!r}: challenger v{challenger.version} (eval set {ch_set or 'unknown'!r}) and champion "
                f"v{champion.version} (eval set {cp_set or 'unknown'!r}) were not evaluated on the same eval set; "
                "pass evaluate_fn to re-evaluate both on one frozen set"
            )
        results, reasons = [], []
        for g in gates:
            delta = g.delta(ch_m[g.metric], cp_m[g.metric])
            ok = delta >= g.min_margin
            results.append(
                {**g.as_dict(), "challenger": ch_m[g.metric], "champion": cp_m[g.metric], "delta": delta, "passed": ok}
            )
            sign = ">=" if ok else "<"
            reasons.append(
                f"{'PASS' if ok else 'FAIL'} {g.metric} ({g.direction}): challenger {ch_m[g.metric]:g} vs champion "
                f"{cp_m[g.metric]:g}, improvement {delta:+g} {sign} min_margin {g.min_margin:g}"
            )
        promoted = all(r["passed"] for r in results)
        reasons.append(
            f"all {len(gates)} gates passed: version {challenger.version} becomes '{CHAMPION}'"
            if promoted
            else f"{sum(not r['passed'] for r in results)} of {len(gates)} gates failed: "
            f"'{CHAMPION}' stays at version {champion.version}"
        )
        decision.update(
            eval_mode=mode,
            challenger=_describe(challenger, ch_m, ch_set if mode == "tags" else mode),
            champion=_describe(champion, cp_m, cp_set if mode == "tags" else mode),
            promoted=promoted,
            results=results,
            reasons=reasons,
        )
    decision["changed"] = decision["promoted"]
    _record(client, challenger, champion, decision)
    _write(out, decision)
    log.info("%s v%s: %s", name, challenger.version, "; ".join(decision["reasons"]))
    return decision


def _record(client: Any, challenger: Any, champion: Any, decision: dict[str, Any]) -> None:
    """Tag and describe the challenger with the decision; move ``champion`` when promoted."""
    name, version = challenger.name, str(challenger.version)
    verdict = "promoted" if decision["promoted"] else "rejected"
    tags = {
        "decision": verdict,
        "reasons": " | ".join(decision["reasons"])[:4900],
        "time": decision["time"],
        "compared_with": str(champion.version) if champion is not None else "none",
        "gates_sha256": decision["gates_sha256"],
        "eval_mode": decision["eval_mode"],
    }
    for k, v in tags.items():
        client.set_model_version_tag(name, version, TAG + k, v)
    text = f"[promotion {decision['time']}] {verdict.upper()}\n" + "\n".join(f"- {r}" for r in decision["reasons"])
    old = (challenger.description or "").strip()
    client.update_model_version(name, version, description=f"{old}\n\n{text}".strip())
    if decision["promoted"]:
        client.set_registered_model_alias(name, CHAMPION, version)
        if champion is not None:
            client.set_model_version_tag(name, str(champion.version), TAG + "replaced_by", version)


def _write(out: str | os.PathLike | None, decision: dict[str, Any]) -> None:
    if out is not None:
        io.write_json(out, decision)
