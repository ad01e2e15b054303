"""The local pipeline run and `chromaflow demo` (slow: they train a tiny model end to end)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chromaflow import demo, io
from chromaflow.pipeline import run_local


def _eval_numbers(path) -> dict:
    m = io.read_json(path)
    return {"rows": m["rows"], "eval_set": m["eval_set"], **{k: m.get(k) for k in demo.METRIC_KEYS}}


@pytest.mark.slow
def test_same_seed_same_metrics(tmp_path, repo_root):
    """Two local pipeline runs with the same seed (separate stores) give identical evaluation metrics."""
    import yaml

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    got = []
    for k in range(2):
        uri = demo._prepare_tracking(tmp_path / f"mlflow{k}", "colorization")
        args = demo.pipeline_arguments(repo_root, params, uri, steps=4)
        out = run_local("colorization", args, root=tmp_path / f"kfp{k}")
        got.append(_eval_numbers(f"{out['evaluation']}/metrics.json"))
    assert got[0] == got[1]


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    if shutil.which("java") is None:
        pytest.skip("java (TorchServe's frontend) is not installed")
    res = demo.run_demo(tmp_path / "demo", steps=4)
    report = (tmp_path / "demo" / "report.html").read_text()
    assert "Promotion decision" in report and "data:image/png;base64," in report
    # the shipped model is registered first and becomes champion; the 4-step challenger loses the gates to it
    assert res["seed_decision"]["promoted"] is True
    assert res["decision"]["promoted"] is False and any("FAIL" in r for r in res["decision"]["reasons"])
    assert "The champion on the committed sample" in report
    assert (tmp_path / "demo" / "served.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["serve"]["status"] == 200
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=res["paths"]["mlflow store"])
    mv = client.get_model_version_by_alias("chromaflow-colorization", "champion")
    assert mv.tags.get("metric.auc_rebal") is not None
    from chromaflow.models.shipped import card

    assert str(mv.version) == "1" and mv.tags["chromaflow.weights_sha256"] == card("colorization")["sha256"]
    assert str(tmp_path / "demo" / "mlflow" / "artifacts") in mv.source or mv.run_id
    assert {"pipeline (total)", "total"} <= set(res["timings"])


def test_pipeline_arguments_are_absolute_and_typed(repo_root):
    import yaml

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    args = demo.pipeline_arguments(repo_root, params, "sqlite:////x/mlflow.db", steps=None)
    assert args["source"].startswith("/") and args["gates"].startswith("/")
    assert args["steps"] == params["train"]["steps"] and isinstance(args["width"], float)
    from chromaflow.pipeline import load_pipeline

    inputs = load_pipeline("colorization").component_spec.inputs
    assert set(args) <= set(inputs), f"demo passes unknown pipeline inputs {set(args) - set(inputs)}"


def _result(promoted: bool = False, class_top1: float | None = None) -> dict:
    """A demo result as run_demo returns it, with hand-picked numbers: the challenger below Random on raw AuC
    and PSNR, above it on the rebalanced AuC; the champion above every baseline except Gray's raw AuC."""

    def row(auc_raw, auc_rebal, psnr, top1=None):
        return {"auc_raw": auc_raw, "auc_rebal": auc_rebal, "class_top1": top1, "psnr": psnr,
                "colorfulness": 30.0, "chroma": 20.0}  # fmt: skip

    rows = {"Ground truth": row(100.0, 100.0, None), "Gray": row(89.0, 70.0, 23.0),
            "Random": row(87.0, 73.0, 20.0), "Ours": row(84.0, 74.0, 19.5, class_top1)}  # fmt: skip
    gate = {"metric": "auc_rebal", "delta": -4.25, "min_margin": 0.5, "passed": promoted}
    return {
        "evaluation": {"n_images": 9, "rows": rows},
        "champion": {"version": "1", "metrics": row(90.0, 78.0, 24.0)},
        "decision": {"promoted": promoted, "challenger": {"version": "2"}, "results": [gate], "reasons": ["r"]},
        "arguments": {"width": 0.0625, "steps": 80},
    }


def test_comparison_has_champion_challenger_baselines_and_the_gate_in_one_table():
    rows, columns, notes = demo.comparison(_result())
    assert columns == ["row", "auc_raw", "auc_rebal", "psnr", "colorfulness", "chroma", "gate decision"]
    labels = [r[0] for r in rows]
    assert labels[0].startswith("Champion: shipped model") and labels[0].endswith("v1")
    assert labels[1] == "Challenger: quick width-1/16 model, 80 steps (this run) v2"
    assert labels[2:] == ["Baseline: Ground truth", "Baseline: Gray", "Baseline: Random"]
    assert rows[0][1:4] == [90.0, 78.0, 24.0] and rows[1][1:4] == [84.0, 74.0, 19.5]
    assert rows[0][-1] == "stays champion" and rows[1][-1] == "not promoted: auc_rebal -4.25 < +0.5"
    # the champion is below no baseline; the challenger is below Gray and Random on raw AuC and PSNR only
    assert len(notes) == 1 and notes[0].startswith("The challenger sits below Gray on raw AuC (84.00 vs 89.00)")
    assert "Random on raw AuC (84.00 vs 87.00) and PSNR (19.50 vs 20.00)" in notes[0]
    assert "rebalanced AuC" not in notes[0] and "1-2 minutes of CPU" in notes[0]


def test_comparison_keeps_a_filled_classifier_column_and_says_when_promoted():
    rows, columns, _ = demo.comparison(_result(promoted=True, class_top1=33.5))
    assert "class_top1" in columns and rows[1][columns.index("class_top1")] == 33.5
    assert rows[0][-1] == "replaced" and rows[1][-1] == "promoted to champion"


def test_quiet_output_shows_progress_and_logs_everything(tmp_path, capsys):
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    lib = logging.getLogger("chromaflow.test_quiet")
    lib.addHandler(handler)
    lib.propagate = False
    try:
        with demo.quiet_output(tmp_path / "demo.log") as path:
            demo.say("1/4 champion")
            print("14:47:27.679 - INFO - Executing task \x1b[96m'train'\x1b[0m")
            print('    [KFP Executor] Got executor_input:\n    {"inputs": {"parameterValues": {}}}')
            print("14:48:23.067 - INFO - Task \x1b[96m'train'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m")
            print("14:48:23.067 - INFO - Task 'export' finished with status FAILURE")
            lib.warning("a library warning")
            print("x.py:1: RuntimeWarning: a runtime warning", file=sys.stderr)  # how warnings are shown
    finally:
        lib.removeHandler(handler)
    shown = capsys.readouterr()
    assert shown.out.splitlines() == [
        "demo: 1/4 champion",
        "demo:     task train ...",
        "demo:     task export: FAILURE (details in the log)",
    ]
    assert shown.err == ""
    logged = path.read_text()
    assert "executor_input" in logged and "a library warning" in logged and "a runtime warning" in logged
    assert handler.stream is sys.stderr  # the handler points at the console again


def test_closing_hint_is_the_venv_mlflow_and_no_xdg_open_when_headless(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    res = _result() | {"timings": {"total": 1.0}, "paths": {"report": "r.html", "mlflow store": "sqlite:///m.db"}}
    demo.print_summary(res, tmp_path / "demo.log")
    out = capsys.readouterr().out
    assert "xdg-open" not in out and "Open the report:      r.html" in out
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    assert f"Browse MLflow:        {mlflow_bin} ui --backend-store-uri sqlite:///m.db" in out
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "mlflow").symlink_to(mlflow_bin)  # a checkout's own venv: the short form
    demo.print_summary(res, None)
    assert "Browse MLflow:        .venv/bin/mlflow ui" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "verbose"), [(["demo"], False), (["demo", "--verbose"], True), (["-v", "demo"], True)]
)
def test_demo_verbose_flag_reaches_main(argv, verbose):
    from chromaflow.cli import build_parser

    args = build_parser(only="demo").parse_args(argv)
    assert bool(args.demo_verbose or args.verbose) is verbose


def test_a_failing_demo_says_where_its_log_is(tmp_path, capsys):
    import argparse

    args = argparse.Namespace(out=str(tmp_path / "d"), params=str(tmp_path / "nope.yaml"), steps=None, serve=False,
                              demo_verbose=False, verbose=False)  # fmt: skip
    assert demo.main(args) == 2
    shown = capsys.readouterr()
    log_path = tmp_path / "d" / "demo.log"
    assert f"demo: stopped; everything the steps printed is in {log_path}" in shown.out
    assert f"(the last 40 lines of {log_path})" in shown.err
