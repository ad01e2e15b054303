"""``bench/train_step.py --stages`` (``make bench-gpu``) on a machine without mlflow, kfp or dvc (GPU boxes often lack
them): the training path imports none of them, and the stage table runs at toy sizes on the CPU."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLOCKED = ("mlflow", "kfp", "dvc")

# installed first thing in the child: any import of a blocked package (or a submodule) fails
BLOCKER = f"""
import sys
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"blocked for this test: {{name}}")
        return None
sys.meta_path.insert(0, _Blocker())
try:
    import mlflow
    raise SystemExit("the blocker does not block")
except ImportError:
    pass
"""


def _run(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", BLOCKER + code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_training_path_imports_no_mlflow_kfp_dvc():
    code = f"""
import runpy
import chromaflow.train.engine, chromaflow.train.cli, chromaflow.train.tasks.colorization, chromaflow.train.tasks.guided
sys.argv = ["train_step.py", "--help"]
try:
    runpy.run_path("bench/train_step.py", run_name="__main__")
except SystemExit:
    pass
print("loaded:", sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r}))
"""
    r = _run(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "loaded: []" in r.stdout


def test_stage_table_runs_at_toy_sizes_on_cpu():
    """The same command as ``make bench-gpu``, ``--quick``: every column of both models' rows is filled."""
    code = """
import runpy
sys.argv = ["train_step.py", "--stages", "--quick", "--device", "cpu"]
runpy.run_path("bench/train_step.py", run_name="__main__")
"""
    r = _run(code)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {
        line.split()[0]: line.split()
        for line in r.stdout.splitlines()
        if line.split()[:1] in (["eccv16"], ["siggraph17"])
    }
    assert set(rows) == {"eccv16", "siggraph17"}, r.stdout
    for name, cols in rows.items():
        assert len(cols) == 14, cols
        values = [float(c.rstrip("%")) for c in cols[1:]]
        hints = values[2]
        assert math.isnan(hints) == (name == "eccv16")  # only the guided task simulates hints
        assert all(v > 0 for i, v in enumerate(values) if i != 2), cols
