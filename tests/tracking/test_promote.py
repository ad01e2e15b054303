"""promote() against a real MLflow server: gates, aliases, recorded decisions, and refusals that change nothing."""

from __future__ import annotations

import argparse
import json

import pytest

from chromaflow.export.register import add_arguments, main
from chromaflow.tracking.gates import GateError
from chromaflow.tracking.promote import PromotionError, promote
from chromaflow.tracking.runs import open_run

GATES = """
models:
  {name}:
    gates:
      - {{metric: auc_rebal, direction: higher, min_margin: 0.5}}
      - {{metric: auc_raw, direction: higher, min_margin: -1.0}}
      - {{metric: loss, direction: lower, min_margin: 0.0}}
"""


@pytest.fixture
def client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def gates(tmp_path, model_name):
    p = tmp_path / "promotion.yaml"
    p.write_text(GATES.format(name=model_name))
    return p


@pytest.fixture
def source_run(client, uri, model_name):
    """One run per test that every version points at, and the (empty) registered model."""
    client.create_registered_model(model_name)
    with open_run("test-promote", uri=uri) as run:
        pass
    return run.info.run_id


def add_version(client, source_run, name, metrics, eval_set="eval-A", alias=None):
    """A registered version carrying ``metric.<k>`` tags, as log_model writes them (no weights needed)."""
    tags = {f"metric.{k}": str(v) for k, v in metrics.items()}
    if eval_set is not None:
        tags["chromaflow.eval_set"] = eval_set
    mv = client.create_model_version(name, source=f"runs:/{source_run}/model", run_id=source_run, tags=tags)
    if alias:
        client.set_registered_model_alias(name, alias, mv.version)
    return mv.version


def state(client, name):
    """Everything promote may change: aliases, and per version its promotion tags and description."""
    rm = client.get_registered_model(name)
    versions = client.search_model_versions(f"name='{name}'")
    return dict(rm.aliases), {
        v.version: ({k: x for k, x in v.tags.items() if k.startswith("chromaflow.promotion.")}, v.description)
        for v in versions
    }


BASE = {"auc_rebal": 60.0, "auc_raw": 89.0, "loss": 2.0}


def test_first_challenger_becomes_champion(client, uri, source_run, model_name, gates, tmp_path):
    v = add_version(client, source_run, model_name, BASE, alias="challenger")
    out = tmp_path / "decision.json"
    d = promote(model_name, gates, uri=uri, out=out)
    assert d["promoted"] and d["changed"] and d["champion"] is None
    assert "no 'champion' yet" in d["reasons"][0]
    assert client.get_registered_model(model_name).aliases["champion"] == v
    mv = client.get_model_version(model_name, v)
    assert mv.tags["chromaflow.promotion.decision"] == "promoted"
    assert mv.tags["chromaflow.promotion.compared_with"] == "none"
    assert "PROMOTED" in mv.description
    assert json.loads(out.read_text())["promoted"] is True


def test_all_gates_pass_moves_champion(client, uri, source_run, model_name, gates):
    old = add_version(client, source_run, model_name, BASE, alias="champion")
    # exactly at the margins: +0.5 rebal, -1.0 raw, equal loss (boundaries pass: delta >= min_margin)
    new = add_version(
        client, source_run, model_name, {"auc_rebal": 60.5, "auc_raw": 88.0, "loss": 2.0}, alias="challenger"
    )
    d = promote(model_name, gates, uri=uri)
    assert d["promoted"], d["reasons"]
    assert [r["passed"] for r in d["results"]] == [True, True, True]
    assert client.get_registered_model(model_name).aliases["champion"] == new
    assert client.get_model_version(model_name, old).tags["chromaflow.promotion.replaced_by"] == new
    mv = client.get_model_version(model_name, new)
    assert mv.tags["chromaflow.promotion.compared_with"] == old
    assert mv.tags["chromaflow.promotion.eval_mode"] == "tags"


@pytest.mark.parametrize(
    ("metrics", "failing"),
    [
        ({"auc_rebal": 60.4, "auc_raw": 89.0, "loss": 2.0}, "auc_rebal"),  # improvement below 0.5
        ({"auc_rebal": 65.0, "auc_raw": 87.9, "loss": 2.0}, "auc_raw"),  # lost more than 1 point
        ({"auc_rebal": 65.0, "auc_raw": 90.0, "loss": 2.01}, "loss"),  # lower is better
    ],
)
def test_one_failing_gate_keeps_champion(client, uri, source_run, model_name, gates, metrics, failing):
    old = add_version(client, source_run, model_name, BASE, alias="champion")
    new = add_version(client, source_run, model_name, metrics, alias="challenger")
    d = promote(model_name, gates, uri=uri)
    assert not d["promoted"] and not d["changed"]
    assert [r["metric"] for r in d["results"] if not r["passed"]] == [failing]
    assert any(r.startswith(f"FAIL {failing}") for r in d["reasons"])
    assert client.get_registered_model(model_name).aliases["champion"] == old
    mv = client.get_model_version(model_name, new)
    assert mv.tags["chromaflow.promotion.decision"] == "rejected"
    assert "REJECTED" in mv.description and failing in mv.tags["chromaflow.promotion.reasons"]


def test_different_eval_sets_refused_without_evaluate_fn(client, uri, source_run, model_name, gates, tmp_path):
    add_version(client, source_run, model_name, BASE, eval_set="eval-A", alias="champion")
    add_version(client, source_run, model_name, {**BASE, "auc_rebal": 70.0}, eval_set="eval-B", alias="challenger")
    before = state(client, model_name)
    with pytest.raises(PromotionError, match="not evaluated on the same eval set"):
        promote(model_name, gates, uri=uri, out=tmp_path / "d.json")
    assert state(client, model_name) == before and not (tmp_path / "d.json").exists()


def test_different_eval_sets_re_evaluated(client, uri, source_run, model_name, gates):
    old = add_version(client, source_run, model_name, BASE, eval_set="eval-A", alias="champion")
    # by its tags the challenger would win; on the common set it loses
    new = add_version(
        client, source_run, model_name, {**BASE, "auc_rebal": 70.0}, eval_set="eval-B", alias="challenger"
    )
    seen = []

    def evaluate_fn(mv):
        seen.append(mv.version)
        return {"auc_rebal": 61.0 if mv.version == old else 61.2, "auc_raw": 89.0, "loss": 2.0}

    d = promote(model_name, gates, uri=uri, evaluate_fn=evaluate_fn)
    assert sorted(seen) == sorted([old, new])
    assert d["eval_mode"] == "re-evaluated" and not d["promoted"]
    assert d["results"][0]["challenger"] == 61.2 and d["results"][0]["champion"] == 61.0


def test_already_champion_is_a_noop(client, uri, source_run, model_name, gates):
    v = add_version(client, source_run, model_name, BASE, alias="champion")
    client.set_registered_model_alias(model_name, "challenger", v)
    before = state(client, model_name)
    d = promote(model_name, gates, uri=uri)
    assert d["promoted"] and not d["changed"] and "already" in d["reasons"][0]
    assert state(client, model_name) == before


def test_missing_model(uri, tmp_path):
    gates = tmp_path / "g.yaml"
    gates.write_text("default:\n  gates: [{metric: auc_raw, direction: higher}]\n")
    with pytest.raises(PromotionError, match="registered model 'no-such-model-xyz' not found"):
        promote("no-such-model-xyz", gates, uri=uri)


def test_missing_challenger_alias(client, uri, source_run, model_name, gates):
    add_version(client, source_run, model_name, BASE, alias="champion")
    before = state(client, model_name)
    with pytest.raises(PromotionError, match="no 'challenger' alias"):
        promote(model_name, gates, uri=uri)
    assert state(client, model_name) == before


@pytest.mark.parametrize("champion_has_metric", [True, False])
def test_missing_metric_changes_nothing(client, uri, source_run, model_name, gates, champion_has_metric):
    partial = {"auc_rebal": 70.0, "auc_raw": 90.0}  # no loss
    add_version(client, source_run, model_name, BASE if champion_has_metric else partial, alias="champion")
    add_version(client, source_run, model_name, partial if champion_has_metric else BASE, alias="challenger")
    before = state(client, model_name)
    with pytest.raises(PromotionError, match="no metric 'loss'"):
        promote(model_name, gates, uri=uri)
    assert state(client, model_name) == before


def test_first_challenger_missing_metric(client, uri, source_run, model_name, gates):
    add_version(client, source_run, model_name, {"auc_rebal": 70.0}, alias="challenger")
    with pytest.raises(PromotionError, match="no metric 'auc_raw'"):
        promote(model_name, gates, uri=uri)
    assert "champion" not in client.get_registered_model(model_name).aliases


def test_non_numeric_metric(client, uri, source_run, model_name, gates):
    add_version(client, source_run, model_name, {**BASE, "loss": "n/a"}, alias="challenger")
    with pytest.raises(PromotionError, match="not a number"):
        promote(model_name, gates, uri=uri)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("models: {m: [", "not valid YAML"),
        ("default:\n  gates: [{metric: auc_raw, direction: sideways}]\n", "sideways"),
    ],
)
def test_bad_gates_change_nothing(client, uri, source_run, model_name, tmp_path, text, match):
    add_version(client, source_run, model_name, BASE, alias="champion")
    add_version(client, source_run, model_name, {**BASE, "auc_rebal": 99.0}, alias="challenger")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    before = state(client, model_name)
    with pytest.raises(GateError, match=match):
        promote(model_name, bad, uri=uri)
    assert state(client, model_name) == before


def test_cli(client, uri, source_run, model_name, gates, tmp_path, capsys):
    add_version(client, source_run, model_name, BASE, alias="champion")
    add_version(client, source_run, model_name, {**BASE, "auc_rebal": 59.0}, alias="challenger")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "decision.json"
    argv = ["--model", model_name, "--gates", str(gates), "--tracking-uri", uri, "--out", str(out)]
    assert main(parser.parse_args(argv)) == 0
    assert json.loads(out.read_text())["promoted"] is False
    assert main(parser.parse_args([*argv, "--fail-if-rejected"])) == 1
    assert main(parser.parse_args(["--model", "nope-xyz", "--gates", str(gates), "--tracking-uri", uri])) == 2
