"""Each new pipeline end to end in this interpreter (KFP local SubprocessRunner), on tiny data and settings.

Slow: every task is a fresh Python process importing torch + MLflow; on a loaded 2-core machine one run takes
about 1 min (guided, lpips) to 2.5 min (transfer, two variants).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chromaflow.pipeline import run_local


def _labelled_folder(root: Path) -> Path:
    """Two tinted-noise classes, 8 train + 4 val images of 32 px each (labels from the folder names)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        for label, tint in (("warm", (1.0, 0.5, 0.2)), ("cool", (0.2, 0.5, 1.0))):
            d = root / split / label
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                x = rng.random((32, 32, 1)) * np.array(tint) * 255
                Image.fromarray(x.astype(np.uint8)).save(d / f"{label}_{i}.png")
    return root


def _common(repo_root: Path, tmp_path: Path) -> dict:
    return {"gates": str(repo_root / "mlflow" / "promotion.yaml"), "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}


def _decision(out: dict) -> dict:
    return json.loads(Path(out["decision"]).read_text())


@pytest.mark.slow
def test_guided_pipeline_runs_locally(repo_root, tmp_path):
    args = {"source": str(repo_root / "data" / "sample"), "steps": 2, "crop": 32, "batch_size": 4,
            "points": [0, 1, 10], "placements": ["random"], "eval_size": 64, "eval_images": 3, "levin": False,
            **_common(repo_root, tmp_path)}  # fmt: skip
    out = run_local("guided", args, root=tmp_path / "kfp")
    m = json.loads((Path(out["evaluation"]) / "metrics.json").read_text())
    assert {"psnr_at_10_random", "psnr_auto_guided"} <= set(m)
    d = _decision(out)
    assert d["model"] == "chromaflow-guided" and d["promoted"] is True  # a fresh store: first version wins
    assert any(p.suffix == ".mar" for p in Path(out["mar"]).iterdir())


@pytest.mark.slow
def test_lpips_pipeline_runs_locally(repo_root, tmp_path):
    photos = sorted(str(p) for p in (repo_root / "data" / "sample").glob("kodim*.jpg"))
    args = {"train_images": photos[:6], "val_images": photos[6:10], "n_train": 20, "n_val": 10, "n_jnd": 10,
            "net": "squeeze", "trunk": "random", "steps": 2, "batch_size": 5, **_common(repo_root, tmp_path)}  # fmt: skip
    out = run_local("lpips", args, root=tmp_path / "kfp")
    m = json.loads((Path(out["evaluation"]) / "metrics.json").read_text())
    assert 0.0 <= m["lpips_2afc"] <= 1.0 and m["proxy"] is True
    assert _decision(out)["model"] == "chromaflow-lpips"


@pytest.mark.slow
def test_transfer_pipeline_runs_locally(repo_root, tmp_path):
    args = {"source": str(_labelled_folder(tmp_path / "labelled")), "max_side": 32, "variants": ["split_cl_cl", "l_ab_cl"],
            "classes": 2, "input_size": 32, "width": 0.0625, "fc_width": 16, "steps": 2, "batch_size": 4,
            "train_per_class": 0, "target_dim": 256, "max_iter": 20, **_common(repo_root, tmp_path)}  # fmt: skip
    out = run_local("transfer", args, root=tmp_path / "kfp")
    table = json.loads((Path(out["table"]) / "metrics.json").read_text())
    assert set(table["rows"]) == {"split_cl_cl", "l_ab_cl"} and table["best_label"] in table["rows"]
    assert (Path(out["best_model"]) / "model.safetensors").is_file()
    assert _decision(out)["model"] == "chromaflow-splitbrain"


@pytest.mark.slow
def test_bicyclegan_pipeline_runs_locally(repo_root, tmp_path):
    args = {"source": str(repo_root / "data" / "bsds-sample"), "steps": 2, "width": 0.0625, "eval_inputs": 4,
            "eval_samples": 2, "classifier_dir": str(repo_root.parent / "shared/datasets/squeezenet1_1"),
            **_common(repo_root, tmp_path)}  # fmt: skip
    out = run_local("bicyclegan", args, root=tmp_path / "kfp")
    m = json.loads((Path(out["evaluation"]) / "metrics.json").read_text())
    assert m["split"] == "test" and m["n_inputs"] == 4 and m["diversity_lpips"] >= 0.0
    d = _decision(out)
    assert d["model"] == "chromaflow-bicyclegan" and d["promoted"] is True  # a fresh store: first version wins
    assert [p.name for p in Path(out["mar"]).iterdir() if p.suffix == ".mar"] == ["translate.mar"]
