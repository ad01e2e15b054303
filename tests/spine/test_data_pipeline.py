"""The data pipeline: prepare and stats fanned out over parts (ParallelFor), merged; N = 3 equals N = 1."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from chromaflow import pipeline
from chromaflow.data.dataset import shard_files


def test_data_dag_fans_out_with_requests_and_retries():
    with open(pipeline.package_path("data"), encoding="utf-8") as f:
        spec = next(yaml.safe_load_all(f))
    tasks = spec["root"]["dag"]["tasks"]
    loops = [t for t in tasks.values() if "parameterIterator" in t]
    assert len(loops) == 2 and all(t["iteratorPolicy"]["parallelismLimit"] >= 2 for t in loops)
    assert spec["root"]["inputDefinitions"]["parameters"]["data_parts"]["defaultValue"] == 1
    assert "prepare-merge" in tasks and "stats-merge" in tasks
    inner = [spec["components"][t["componentRef"]["name"]]["dag"]["tasks"] for t in loops]
    assert [set(d) for d in inner] == [{"prepare"}, {"stats"}]
    for d in inner:
        (task,) = d.values()
        assert task["retryPolicy"]["maxRetryCount"] >= 1
    execs = spec["deploymentSpec"]["executors"]
    for name in ("exec-prepare", "exec-stats"):
        res = execs[name]["container"]["resources"]
        assert res["resourceCpuRequest"] and res["resourceMemoryRequest"]


def _rows(root: Path, split: str) -> list[dict]:
    return [r for f in shard_files(root, split) for r in pq.read_table(f).to_pylist()]


def _stats_files(folder: Path) -> dict[str, object]:
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name == "stats.json":  # names its --data (the artifact's path): every other field must match
            s = json.loads(p.read_text())
            s.pop("data")
            out[p.name] = s
        elif p.is_file():
            out[p.name] = hashlib.md5(p.read_bytes()).hexdigest()
    return out


@pytest.mark.slow
def test_three_parts_through_the_local_runner_equal_one(repo_root, tmp_path):
    """~80 s on a loaded 2-core machine (9 + 4 task processes)."""
    args = {"source": str(repo_root / "data" / "sample"), "max_side": 64, "val_fraction": 0.4}
    one = pipeline.run_local("data", {**args, "data_parts": 1}, root=tmp_path / "n1")
    three = pipeline.run_local("data", {**args, "data_parts": 3}, root=tmp_path / "n3")
    d1, d3 = Path(one["dataset"]), Path(three["dataset"])
    for split in ("train", "val"):
        assert _rows(d3, split) == _rows(d1, split) != []
    m1, m3 = (json.loads((d / "manifest.json").read_text()) for d in (d1, d3))
    assert len(m3.pop("shards")) == 3 * len(m1.pop("shards"))  # one train and one val shard per part
    assert m3 == m1 and m1["counts"]["images"] == 30
    s1, s3 = _stats_files(Path(one["stats_dir"])), _stats_files(Path(three["stats_dir"]))
    assert s3 == s1 and "prior.npy" in s1 and s1["stats.json"]["images"] > 0
