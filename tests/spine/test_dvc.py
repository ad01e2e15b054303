"""DVC: dvc.yaml/params.yaml are consistent, and `dvc repro` in a fresh repo reproduces the committed dvc.lock."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# chains: colorization stages are named after their step; the other systems' stages `<system>_<step>`
STAGES = {
    "": ["prepare", "stats", "train", "evaluate", "promote", "export"],
    "splitbrain": ["prepare", "train", "transfer"],
    "lpips": ["bapps", "train", "evaluate"],
    "bicyclegan": ["prepare", "train", "evaluate", "export"],
}
# stages whose step's CLI command is named otherwise (the paired data and the translation protocol)
COMMAND = {"bicyclegan_prepare": "prepare-pairs", "bicyclegan_evaluate": "evaluate-translation"}
NAMES = [f"{system}_{step}" if system else step for system, steps in STAGES.items() for step in steps]
DATA_STAGES = ("prepare", "stats", "splitbrain_prepare", "lpips_bapps", "bicyclegan_prepare")
# per-file md5s of the data stages' output folders, as DVC lists them: names the files when a .dir hash differs
LISTING = Path(__file__).with_name("dvc_data_files.json")
COPY = ["dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore", "data/sample", "data/sample-cifar10", "data/bsds-sample",
        "src/chromaflow", "mlflow", "serving"]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `chromaflow` and `dvc` of this venv
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def _sh(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture
def fresh_repo(repo_root, tmp_path) -> Path:
    """A fresh git + DVC repo holding just what `dvc repro` needs (a 'fresh clone')."""
    if not (repo_root / "dvc.lock").is_file():
        pytest.fail("dvc.lock is not committed: run `dvc repro` at the repo root")
    for rel in COPY:
        src, dst = repo_root / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    _sh(["git", "init", "-q"], tmp_path)
    _sh([str(Path(sys.executable).parent / "dvc"), "init", "-q"], tmp_path)
    return tmp_path


def _lock(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["stages"]


def _outs(stage: dict) -> dict[str, str]:
    return {o["path"]: o.get("md5") for o in stage.get("outs", [])}


def _dir_md5(files: dict[str, str]) -> str:
    """DVC's hash of a folder from its files' md5s (``dvc_data.hashfile.tree.Tree.digest``)."""
    entries = [{"md5": md5, "relpath": rel} for rel, md5 in sorted(files.items())]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def _cached_listing(repo: Path, dir_md5: str) -> dict[str, str]:
    """The files of a folder output that DVC stored in ``repo``'s cache: relpath -> md5."""
    obj = repo / ".dvc" / "cache" / "files" / "md5" / dir_md5[:2] / dir_md5[2:]
    return {e["relpath"]: e["md5"] for e in json.loads(obj.read_text())}


def test_committed_file_listing_matches_lock(repo_root):
    """The listing that names differing files is the one dvc.lock hashes (refresh both together)."""
    listing, lock = json.loads(LISTING.read_text()), _lock(repo_root / "dvc.lock")
    for stage in DATA_STAGES:
        for path, md5 in _outs(lock[stage]).items():
            assert _dir_md5(listing[path]) == md5, (
                f"{LISTING.name} is stale for {path}: run tests/spine/test_dvc.py with CHROMAFLOW_WRITE_LISTING=1"
            )


def test_every_stage_is_the_cli_with_its_params_section(repo_root):
    from chromaflow.cli import STEPS

    spec = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    assert list(spec) == NAMES
    for name, stage in spec.items():
        step = COMMAND.get(name, name.rsplit("_", 1)[-1])
        assert step in STEPS and stage["cmd"].split()[:2] == ["chromaflow", step], (
            f"{name} must call `chromaflow {step}`"
        )
        own, *shared = stage["params"]
        assert own == name and name in params, f"stage {name} reads its own params.yaml section first"
        for key in shared:  # a value of an upstream stage (e.g. the trained network's width), read where it is set
            section, _, field = key.partition(".")
            assert section in NAMES[: NAMES.index(name)] and field in params[section], f"{name}: bad params {key}"
        assert stage.get("deps") and (stage.get("outs") or stage.get("metrics")), f"stage {name} lacks deps/outs"
    assert sorted(params) == sorted(NAMES), "params.yaml holds exactly one section per stage"
    lock = _lock(repo_root / "dvc.lock")
    assert set(lock) == set(NAMES), f"dvc.lock covers {sorted(lock)}, dvc.yaml {NAMES}: run `dvc repro`"


def test_repro_of_the_data_stages_matches_committed_lock(fresh_repo, repo_root):
    _sh(["dvc", "repro", "stats", "splitbrain_prepare", "lpips_bapps", "bicyclegan_prepare"], fresh_repo)
    kept, got = _lock(repo_root / "dvc.lock"), _lock(fresh_repo / "dvc.lock")
    for stage in DATA_STAGES:
        src = [d for d in got[stage]["deps"] if d["path"] != "data/prepared"]  # inputs, not the upstream output
        assert src == [d for d in kept[stage]["deps"] if d["path"] != "data/prepared"], (
            f"dvc.lock is stale for {stage}: run `dvc repro`"
        )
        assert got[stage]["params"] == kept[stage]["params"]
    status = _sh(["dvc", "status", "stats"], fresh_repo)
    assert "up to date" in status.lower() or not status.strip()
    # a local remote in .dvc/config.local (git-ignored): the committed .dvc/config stays untouched
    remote = fresh_repo / "runs" / "dvc-remote"
    config = (fresh_repo / ".dvc" / "config").read_text()
    _sh(["dvc", "remote", "add", "--local", "-d", "local", str(remote)], fresh_repo)
    _sh(["dvc", "push", "stats"], fresh_repo)
    assert (fresh_repo / ".dvc" / "config").read_text() == config
    assert sum(1 for p in remote.rglob("*") if p.is_file()) > 5, "dvc push stored nothing in the local remote"
    # byte-identical outputs: prepare fingerprints local sources by content (mtimes do not survive a clone)
    fresh = {p: _cached_listing(fresh_repo, md5) for stage in DATA_STAGES for p, md5 in _outs(got[stage]).items()}
    if os.environ.get("CHROMAFLOW_WRITE_LISTING"):  # after `dvc repro` refreshed dvc.lock
        LISTING.write_text(json.dumps(fresh, indent=0, sort_keys=True) + "\n")
    listing = json.loads(LISTING.read_text())
    for stage in DATA_STAGES:
        for path, md5 in _outs(got[stage]).items():
            want = listing.get(path, {})
            differ = sorted(f for f in want.keys() | fresh[path].keys() if want.get(f) != fresh[path].get(f))
            assert md5 == _outs(kept[stage])[path], (
                f"{stage}: a fresh repro gave different outputs in {path} ({md5} vs the lock's "
                f"{_outs(kept[stage])[path]}): {len(differ)} file(s) differ: {differ[:20]}"
            )


@pytest.mark.slow
def test_exp_run_with_set_param_trains_and_reports_metrics(fresh_repo):
    _sh(["git", "add", "-A"], fresh_repo)
    _sh(["git", "commit", "-q", "-m", "baseline"], fresh_repo)
    # the colorization chain (its two leaves as targets): the LPIPS chain needs ../shared, absent here
    _sh(["dvc", "exp", "run", "--set-param", "train.steps=3", "--set-param", "evaluate.t_sweep=1", "promote",
         "export"], fresh_repo)  # fmt: skip
    metrics = yaml.safe_load(_sh(["dvc", "metrics", "show", "--json"], fresh_repo))
    flat = yaml.safe_dump(metrics)
    assert "auc_rebal" in flat and "final_loss" in flat
    assert yaml.safe_load((fresh_repo / "params.yaml").read_text())["train"]["steps"] == 3
    assert any(p.suffix == ".mar" for p in (fresh_repo / "runs/dvc/export").iterdir())


@pytest.mark.slow
def test_splitbrain_chain_reproduces_in_a_fresh_repo(fresh_repo):
    """prepare (labelled sample) -> train (split-brain cl,cl) -> transfer: the probes learn well above chance."""
    _sh(["dvc", "repro", "splitbrain_transfer"], fresh_repo)
    m = yaml.safe_load((fresh_repo / "runs/dvc/transfer/metrics.json").read_text())
    assert set(m["rows"]) == {"Split-Brain Auto (cl,cl)", "Gaussian"} and m["chance_top1"] == 10.0
    assert m["transfer_best_top1"] > 2 * m["chance_top1"], m["rows"]
    assert "up to date" in _sh(["dvc", "status", "splitbrain_transfer"], fresh_repo).lower()
