"""The KFP local runner's per-task warnings that do not apply to our local runs are silenced where we call it."""

import warnings  # no `from __future__ import annotations`: KFP reads the component's real type hints

from kfp import dsl

from chromaflow import pipeline


@dsl.component(base_image="chromaflow:0.1.0")  # like ours: the project's image, not a "python" one
def double(x: int) -> int:
    return 2 * x


@dsl.pipeline(name="tiny")
def tiny(x: int = 1) -> int:
    task = double(x=x)
    task.set_cpu_limit("1").set_memory_limit("1G")  # cluster settings the local runner ignores
    return task.output


def test_run_local_silences_the_docker_runner_and_no_effect_warnings(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "load_pipeline", lambda name: tiny)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = pipeline.run_local("tiny", {"x": 21}, root=tmp_path)
    assert out == {"Output": 42}
    noise = [str(w.message) for w in seen if "DockerRunner" in str(w.message) or "no effect" in str(w.message)]
    assert noise == []
