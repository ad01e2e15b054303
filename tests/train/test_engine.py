"""The engine on a toy task: outputs, resume == uninterrupted, grad accumulation, DDP (2 gloo procs), no-op re-run."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from toy import ToyTask

from chromaflow import runlog
from chromaflow.models import load_weights, sha256_file
from chromaflow.tracking import MLFLOW
from chromaflow.train.engine import StreamSampler, TrainConfig, fit, load_checkpoint

REPO = Path(__file__).resolve().parents[2]


def _cfg(out, **kw) -> TrainConfig:
    base = dict(out=str(out), steps=12, batch_size=8, lr=1e-2, device="cpu", log_every=5)
    return TrainConfig(**{**base, **kw})


def _losses(out) -> list[float]:
    with open(Path(out) / "history.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_outputs_and_learning(tmp_path):
    m = fit(ToyTask(), _cfg(tmp_path, steps=60))
    for name in ("checkpoint.pt", "model.safetensors", "metrics.json", "history.csv"):
        assert (tmp_path / name).is_file(), name
    losses = _losses(tmp_path)
    assert len(losses) == 60
    assert m["final_loss"] < losses[0] / 3, (losses[0], m["final_loss"])  # it learns
    assert json.loads((tmp_path / "metrics.json").read_text())["model_sha256"] == sha256_file(
        tmp_path / "model.safetensors"
    )
    assert "val_loss" in m
    model = load_weights(tmp_path / "model.safetensors", expected_sha256=m["model_sha256"])
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")  # weights_only=True inside
    assert ckpt["step"] == 60
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k


def test_resume_matches_uninterrupted(tmp_path):
    """Stop at step 7 (a 'preemption'), resume to 12: the loss curve and weights equal the uninterrupted run."""
    task = ToyTask(noise=True)  # augmentation noise + dropout: needs the RNG states restored
    full = fit(task, _cfg(tmp_path / "full", ckpt_every=5))
    part = fit(task, _cfg(tmp_path / "part", ckpt_every=5, stop_at=7))
    assert part["stopped"] and part["step"] == 7
    assert not (tmp_path / "part" / "model.safetensors").exists()
    resumed = fit(task, _cfg(tmp_path / "part", ckpt_every=5, resume="auto"))
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert len(a) == len(b) == 12
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-6, (a, b)
    assert full["final_loss"] == pytest.approx(resumed["final_loss"], abs=1e-6)
    wa = load_weights(tmp_path / "full" / "model.safetensors").state_dict()
    wb = load_weights(tmp_path / "part" / "model.safetensors").state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_resume_without_rng_would_differ(tmp_path):
    """Guard that the resume test can fail: a fresh run with another seed gives another curve."""
    fit(ToyTask(noise=True), _cfg(tmp_path / "a"))
    fit(ToyTask(noise=True), _cfg(tmp_path / "b", seed=1))
    assert _losses(tmp_path / "a") != _losses(tmp_path / "b")


def test_rerun_is_noop_and_resume_missing_is_error(tmp_path):
    fit(ToyTask(), _cfg(tmp_path))
    stamp = (tmp_path / "model.safetensors").stat().st_mtime_ns
    again = fit(ToyTask(), _cfg(tmp_path))
    assert (tmp_path / "model.safetensors").stat().st_mtime_ns == stamp
    assert again["step"] == 12
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fit(ToyTask(), _cfg(tmp_path / "new", resume=str(tmp_path / "nope.pt")))


def test_grad_accumulation_matches_full_batch(tmp_path):
    a = fit(ToyTask(), _cfg(tmp_path / "a", batch_size=8))
    b = fit(ToyTask(), _cfg(tmp_path / "b", batch_size=8, grad_accum=4))
    assert _losses(tmp_path / "a") == pytest.approx(_losses(tmp_path / "b"), abs=1e-5)
    assert a["final_loss"] == pytest.approx(b["final_loss"], abs=1e-5)


def test_bad_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="not divisible"):
        fit(ToyTask(), _cfg(tmp_path, batch_size=6, grad_accum=4))
    with pytest.raises(ValueError, match="schedule"):
        fit(ToyTask(), _cfg(tmp_path, schedule="linear"))
    with pytest.raises(ValueError, match="fewer than one global micro-batch"):
        fit(ToyTask(n=4), _cfg(tmp_path, batch_size=8))


def test_stream_sampler_shards_one_global_order():
    """Two ranks' slices interleave into exactly the single-process stream."""
    one = StreamSampler(10, 4, seed=3)
    r0, r1 = StreamSampler(10, 2, rank=0, world=2, seed=3), StreamSampler(10, 2, rank=1, world=2, seed=3)
    it1, i0, i1 = iter(one), iter(r0), iter(r1)
    for _ in range(5):  # 5 global micro-batches span 2+ epochs (2 per epoch, 2 items dropped)
        single = [next(it1) for _ in range(4)]
        assert single == [next(i0), next(i0), next(i1), next(i1)]
        assert len(set(single)) == 4
    late = StreamSampler(10, 4, seed=3, start=3)  # resuming after 3 micro-batches
    ref = iter(StreamSampler(10, 4, seed=3))
    for _ in range(12):
        next(ref)
    assert next(iter(late)) == next(ref)


DDP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from toy import ToyTask
    from chromaflow.train.engine import TrainConfig, fit
    from chromaflow.train import distributed
    class Capture(ToyTask):
        def build_model(self):
            self.model = super().build_model()
            return self.model
    out, task = sys.argv[1], Capture()
    m = fit(task, TrainConfig(out=out, steps=12, batch_size=8, lr=1e-2, device="cpu", log_every=5))
    rank = int(os.environ.get("RANK", 0))
    torch.save({"world": m["world"], "state": task.model.state_dict()}, os.path.join(out, f"rank{rank}.pt"))
    distributed.cleanup()
    """
)


@pytest.mark.slow  # three processes importing torch: ~15 s idle, ~45 s on a loaded 2-core machine
def test_ddp_two_processes_match_single(tmp_path):
    """torchrun --nproc-per-node 2 (gloo): same global batch -> same losses and weights as one process."""
    single = tmp_path / "single"
    fit(ToyTask(), _cfg(single))
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(Path(__file__).parent)]),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
           str(tmp_path / "ddp")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ddp = tmp_path / "ddp"
    r0, r1 = (torch.load(ddp / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])  # ranks stay in sync
    assert _losses(ddp) == pytest.approx(_losses(single), abs=1e-5)
    wa = load_weights(single / "model.safetensors").state_dict()
    wb = load_weights(ddp / "model.safetensors").state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


@pytest.mark.slow  # MLflow's sqlite store set-up takes ~20 s
def test_mlflow_run_gets_params_losses_and_artifacts(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    with runlog.using(MLFLOW):  # what chromaflow train installs
        fit(ToyTask(), _cfg(tmp_path / "out", experiment="engine-test", log_every=4))
    run = mlflow.search_runs(experiment_names=["engine-test"], output_format="list")[0]
    client = mlflow.tracking.MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")][:3] == [4, 8, 12]
    assert run.data.params["task"] == "toy" and run.data.params["batch_size"] == "8"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"model.safetensors", "metrics.json"}


class Recorder:
    """A :class:`chromaflow.runlog.RunLogger` that keeps what it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @contextlib.contextmanager
    def open_run(self, experiment, run_name=None, params=None, *, data=None):
        self.calls.append(("open", experiment, run_name, dict(params or {})))
        yield
        self.calls.append(("close", experiment))

    def log_params(self, d):
        self.calls.append(("params", dict(d)))

    def log_metrics(self, d, step=None):
        self.calls.append(("metrics", dict(d), step))

    def log_artifact(self, path, artifact_path=None):
        self.calls.append(("artifact", Path(path).name))


def test_the_installed_run_logger_gets_the_run(tmp_path):
    """The engine logs to the logger installed by its caller (chromaflow.runlog), and to nothing without one."""
    rec = Recorder()
    with runlog.using(rec):
        fit(ToyTask(), _cfg(tmp_path / "a", experiment="toy-exp", log_every=4))
    assert isinstance(runlog.current(), runlog.NoRunLogger)  # uninstalled after the block
    assert rec.calls[0][:2] == ("open", "toy-exp") and rec.calls[0][3]["task"] == "toy"
    assert rec.calls[-1] == ("close", "toy-exp")
    losses = [c for c in rec.calls if c[0] == "metrics" and "lr" in c[1]]
    assert [c[2] for c in losses] == [4, 8, 12] and losses[-1][1]["loss"] == _losses(tmp_path / "a")[-1]
    final = next(c for c in rec.calls if c[0] == "metrics" and "final_loss" in c[1])
    assert final[2] == 12 and final[1]["step"] == 12
    arts = [c[1] for c in rec.calls if c[0] == "artifact"]
    assert arts == ["model.safetensors", "metrics.json", "timing.json", "history.csv"]
    other = Recorder()
    with runlog.using(other):
        fit(ToyTask(), _cfg(tmp_path / "b"))  # no experiment: params go to the caller's run, if any
    assert other.calls[0][0] == "params" and not [c for c in other.calls if c[0] == "open"]
    fit(ToyTask(), _cfg(tmp_path / "c", experiment="toy-exp"))  # nothing installed: no run, same outputs
    assert (tmp_path / "c" / "history.csv").read_bytes() == (tmp_path / "a" / "history.csv").read_bytes()
