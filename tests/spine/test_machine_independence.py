"""The stages DVC hashes give the same bytes whatever the CPU's kernels and the thread count.

A DVC remote cache is shared by laptops, CI and cluster nodes, so `prepare`, `stats` and `bapps` must not
depend on the machine. This machine stands in for others by switching what chooses kernels by CPU:
numpy's SIMD dispatch (`NPY_DISABLE_CPU_FEATURES`: baseline only), torch's (`ATEN_CPU_CAPABILITY`),
oneDNN's and MKL's instruction sets, OpenBLAS's core type (which changed `stats.json` and `weights.npy`
before the exact reductions of `chromaflow.exact`), and OpenMP threads 1 vs 2. Training runs as DVC runs it,
with `--portable-kernels` (without it, each of these switches changed the trained weights).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy._core._multiarray_umath as npu

# the data stages of dvc.yaml with their committed params, small counts for bapps (every distortion still drawn)
STAGES = """
import os, sys
from chromaflow.data.bapps import build_proxy_bapps
from chromaflow.data.pairs import prepare_pairs
from chromaflow.data.prepare import prepare
from chromaflow.data.stats import stats
repo = sys.argv[1]
os.chdir(sys.argv[2])  # relative output paths, as DVC runs the stages
prepare(f"{repo}/data/sample", "prepared", max_side=256, val_fraction=0.4, workers=1)
stats("prepared", "stats", split="train", workers=1)
prepare(f"{repo}/data/sample-cifar10", "cifar10", max_side=32, workers=1)
prepare_pairs(f"{repo}/data/bsds-sample", "bsds-pairs", max_side=128)
build_proxy_bapps("bapps", [f"{repo}/data/sample/kodim01.jpg", f"{repo}/data/sample/kodim03.jpg"],
                  [f"{repo}/data/sample/skimage_astronaut.jpg"], n_train=60, n_val=20, n_jnd=20, seed=0)
"""
TRAIN = ["train", "--task", "colorization", "--data", "prepared", "--prior", "stats", "--out", "train", "--width",
         "0.0625", "--steps", "4", "--crop", "32", "--batch-size", "4", "--seed", "0", "--device", "cpu",
         "--portable-kernels"]  # fmt: skip
# the BicycleGAN chain as DVC runs it: train, then the translation protocol (LPIPS, Frechet, real-vs-fake probe)
BG_TRAIN = ["train", "--task", "bicyclegan", "--data", "bsds-pairs", "--out", "bg", "--width", "0.0625", "--steps", "3",
            "--batch-size", "2", "--seed", "0", "--device", "cpu", "--portable-kernels"]  # fmt: skip
BG_EVAL = ["evaluate-translation", "--model", "bg", "--data", "bsds-pairs", "--out", "bg_eval", "--inputs", "4",
           "--samples", "2", "--portable-kernels"]  # fmt: skip


def _variants() -> dict[str, dict[str, str]]:
    other_blas = "Nehalem" if platform.machine() in ("x86_64", "AMD64") else "ARMV8"  # runs on any CPU of the arch
    return {
        "2 threads": {"OMP_NUM_THREADS": "2"},
        "1 thread, baseline SIMD": {
            "OMP_NUM_THREADS": "1",
            "NPY_DISABLE_CPU_FEATURES": " ".join(npu.__cpu_dispatch__),
            "ATEN_CPU_CAPABILITY": "default",
        },
        "other BLAS/MKL/oneDNN kernels": {
            "OMP_NUM_THREADS": "2",
            "OPENBLAS_CORETYPE": other_blas,
            "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
            "ONEDNN_MAX_CPU_ISA": "SSE41",
        },
    }


def _file_hashes(root: Path) -> dict[str, str]:
    """relpath -> md5 of every file, but the clock's (``timing.json``, which no DVC stage lists)."""
    files = (p for p in root.rglob("*") if p.is_file() and p.name != "timing.json")
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


def _run(repo: Path, out: Path, env_over: dict[str, str]) -> dict[str, str]:
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_", "NPY_", "ATEN_", "MKL_", "ONEDNN_"))}
    env.update(env_over)
    squeeze = ["--classifier-dir", str(repo.parent / "shared" / "datasets" / "squeezenet1_1")]
    steps = [STAGES, str(repo), str(out)], TRAIN, BG_TRAIN, [*BG_EVAL, *squeeze]
    for cmd in ([sys.executable, "-c", *steps[0]], *([sys.executable, "-m", "chromaflow.cli", *a] for a in steps[1:])):
        r = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{cmd[2]} failed under {env_over}:\n{r.stderr[-3000:]}"
    return _file_hashes(out)


def test_stage_outputs_are_identical_across_cpu_kernels_and_threads(repo_root, tmp_path):
    runs = {name: _run(repo_root, tmp_path / str(i), env) for i, (name, env) in enumerate(_variants().items())}
    (ref_name, ref), *others = runs.items()
    assert {f.split("/")[0] for f in ref} >= {
        "prepared",
        "stats",
        "cifar10",
        "bapps",
        "bsds-pairs",
        "train",
        "bg",
        "bg_eval",
    }
    for name, got in others:
        assert got.keys() == ref.keys(), f"{name}: other files than {ref_name}: {sorted(got.keys() ^ ref.keys())}"
        differ = sorted(f for f in ref if got[f] != ref[f])
        assert not differ, f"{name} vs {ref_name}: {len(differ)} file(s) differ: {differ[:20]}"
