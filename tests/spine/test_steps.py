"""The library helpers behind the guided / transfer / LPIPS pipelines: task-flag conversion for the train
component, LPIPS headline metrics, the combined transfer table, and the guided evaluation's CLI and scalars."""

from __future__ import annotations

import json

import pytest

from chromaflow import pipeline
from chromaflow.io import write_json

# ---------------------------------------------------------------------------------- train_arguments


def test_train_arguments_converts_kfp_json_values_with_the_flags_types():
    # KFP hands a dict over as JSON: ints as floats, pipeline parameters inside it as strings
    got = pipeline.train_arguments(
        "splitbrain",
        {"variant": "split_cl_cl", "classes": "3.0", "fc_width": 64.0, "input_size": "32", "val": "false"},
        width=0.25,
        loss=None,
        steps=2,
    )
    assert got == {"width": 0.25, "steps": 2, "variant": "split_cl_cl", "classes": 3, "fc_width": 64,
                   "input_size": 32, "val": False}  # fmt: skip
    assert type(got["classes"]) is int and type(got["fc_width"]) is int
    assert pipeline.train_arguments("lpips", {"variant": "tune", "trunk": "random"}) == {"variant": "tune",
                                                                                        "trunk": "random"}  # fmt: skip
    assert pipeline.train_arguments("guided", {"global_hints": "True"})["global_hints"] is True


@pytest.mark.parametrize(
    ("task", "options", "flags", "match"),
    [
        ("guided", {}, {"loss": "rebalanced"}, r"no flag\(s\) \['loss'\]"),  # guided has no --loss
        ("splitbrain", {"variant": "nope"}, {}, "not one of"),
        ("colorization", {"width": 0.5}, {"width": 0.25}, "both as component inputs and in options"),
        ("splitbrain", {"classes": 2.5}, {}, "expected an integer"),
        ("guided", {"global_hints": "maybe"}, {}, "true/false"),
        ("lpips", {"net": "resnet"}, {}, "not one of"),
    ],
)
def test_train_arguments_rejects_with_the_reason(task, options, flags, match):
    with pytest.raises(ValueError, match=match):
        pipeline.train_arguments(task, options, **flags)


def test_train_arguments_are_accepted_by_the_engine_entry_point():
    """Every key it returns is a keyword of chromaflow.train.train for that task (no TypeError)."""
    import argparse

    from chromaflow.train import cli, tasks

    for task, opts in [("colorization", {"soft_k": 5.0}), ("splitbrain", {"variant": "l_ab_cl"}),
                       ("lpips", {"net": "squeeze"}), ("guided", {"dist_weight": "0.5"})]:  # fmt: skip
        p = argparse.ArgumentParser()
        cli.add_engine_arguments(p)
        tasks.load(task).add_arguments(p)
        dests = {a.dest for a in p._actions}
        assert set(pipeline.train_arguments(task, opts, steps=1, seed=0)) <= dests


# ------------------------------------------------------------------------------------ lpips_headline


def _lpips_result():
    return {
        "2afc": {"L2": {"traditional": 0.6, "All": 0.6}, "model: squeeze": {"traditional": 0.8, "All": 0.8}},
        "jnd": {"L2": {"traditional": 0.4, "All": 0.4}, "model: squeeze": {"traditional": 0.7, "All": 0.7}},
        "groups": {"L2": "Low-level", "model: squeeze": "LPIPS (trained here)"},
    }


def test_lpips_headline_picks_the_trained_row_and_fingerprints_the_data(tmp_path):
    write_json(tmp_path / "manifest.json", {"proxy": True, "params": {"n_val": 5, "seed": 0}})
    h = pipeline.lpips_headline(_lpips_result(), tmp_path)
    assert h["lpips_2afc"] == 0.8 and h["lpips_jnd"] == 0.7 and h["lpips_model"] == "model: squeeze"
    write_json(tmp_path / "manifest.json", {"proxy": True, "params": {"n_val": 6, "seed": 0}})
    assert pipeline.lpips_headline(_lpips_result(), tmp_path)["eval_set"] != h["eval_set"]
    res = _lpips_result()
    res["groups"]["model: squeeze"] = "Low-level"
    with pytest.raises(ValueError, match="no trained LPIPS model"):
        pipeline.lpips_headline(res, tmp_path)


# ---------------------------------------------------------------------------------- combine_transfer


def _transfer_metrics(folder, label, rows, settings=None):
    settings = settings or {"data_fingerprint": "abc", "classes": ["a", "b"], "train_per_class": None,
                            "val_per_class": None, "size": 32, "target_dim": 256, "wd": [0.01], "max_iter": 20,
                            "seed": 0}  # fmt: skip
    best = max(rows.values())
    write_json(folder / "metrics.json", {"rows": {label: rows}, "primary": label, "settings": settings,
                                         "transfer_best_top1": best, "n_train": 16, "n_val": 8,
                                         "chance_top1": 50.0})  # fmt: skip
    return folder


def test_combine_transfer_merges_rows_and_picks_the_best(tmp_path):
    from chromaflow.evaluate.transfer import LAYERS, combine_transfer

    a = _transfer_metrics(tmp_path / "a", "split_cl_cl", dict(zip(LAYERS, [50, 60, 70, 65, 55], strict=True)))
    b = _transfer_metrics(tmp_path / "b", "l_ab_cl", dict(zip(LAYERS, [50, 75, 60, 55, 50], strict=True)))
    m = combine_transfer([a, b / "metrics.json"], tmp_path / "out")
    assert set(m["rows"]) == {"split_cl_cl", "l_ab_cl"}
    assert m["best_index"] == 1 and m["best_label"] == "l_ab_cl" and m["transfer_best_top1"] == 75
    assert m["best"]["split_cl_cl"] == {"layer": "conv3", "top1": 70}
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["eval_set"] == m["eval_set"] and len(m["eval_set"]) == 64
    assert "| l_ab_cl |" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "transfer.png").read_bytes()[:4] == b"\x89PNG"


def test_combine_transfer_refuses_incomparable_or_clashing_runs(tmp_path):
    from chromaflow.evaluate.transfer import LAYERS, combine_transfer

    rows = dict(zip(LAYERS, [1, 2, 3, 4, 5], strict=True))
    a = _transfer_metrics(tmp_path / "a", "x", rows)
    other = {"data_fingerprint": "zzz", "classes": ["a", "b"], "size": 32}
    b = _transfer_metrics(tmp_path / "b", "y", rows, settings=other)
    with pytest.raises(ValueError, match="not comparable"):
        combine_transfer([a, b], tmp_path / "out")
    c = _transfer_metrics(tmp_path / "c", "x", rows)
    with pytest.raises(ValueError, match="labels must be unique"):
        combine_transfer([a, c], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        combine_transfer([tmp_path / "none"], tmp_path / "out")


# ---------------------------------------------------------------------------------- guided evaluation


@pytest.fixture(scope="module")
def guided_weights(tmp_path_factory):
    import torch

    import chromaflow.models.siggraph17  # noqa: F401  (registers the model)
    from chromaflow.models import create_model, save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("guided") / "model.safetensors"
    save_weights(create_model("siggraph17", width=0.0625), path)
    return path


def test_evaluate_task_guided_cli_writes_scalars_for_the_gates(guided_weights, tmp_path, repo_root):
    from chromaflow import cli

    out = tmp_path / "eval"
    argv = ["evaluate", "--task", "guided", "--weights", str(guided_weights), "--data", str(repo_root / "data/sample"),
            "--out", str(out), "--points", "0,1,10", "--size", "32", "--max-images", "2", "--no-levin",
            "--placements", "random"]  # fmt: skip
    assert cli.main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["curves"]) == {"random"}
    curve = m["curves"]["random"]["Ours"]["mean"]
    assert [m[f"psnr_at_{n}_random"] for n in (0, 1, 10)] == curve
    assert m["psnr_auto_guided"] == curve[0]
    assert (out / "psnr_vs_points.png").is_file() and (out / "report.md").is_file()


def test_evaluate_guided_auto_row_sees_the_same_input_side(guided_weights, tmp_path, repo_root):
    """The automatic network's 0-point row is measured at --size, like the guided network beside it."""
    import torch

    from chromaflow.evaluate.eval_set import load_eval_items
    from chromaflow.evaluate.eval_set import load_rgb as _load_rgb
    from chromaflow.evaluate.eval_set import to_uint8 as _to_uint8
    from chromaflow.evaluate.guided import psnr_sweep
    from chromaflow.evaluate.metrics import psnr
    from chromaflow.models import colorize, create_model, save_weights

    torch.manual_seed(1)
    auto = create_model("eccv16", width=0.0625).eval()
    save_weights(auto, tmp_path / "auto.safetensors")
    data = repo_root / "data/sample"
    r = psnr_sweep(guided_weights, data, tmp_path / "e", points=(0,), size=32, max_images=2, placements=("random",),
                   levin=False, auto_weights=tmp_path / "auto.safetensors")  # fmt: skip
    items, _ = load_eval_items(data, split="val", size=32, max_images=2, seed=0)
    rgbs = [_load_rgb(it, 32)[None] for it in items]
    expected = [float(psnr(_to_uint8(colorize(auto, x, size=32)), x)[0]) for x in rgbs]
    assert r["auto_psnr"] == pytest.approx(sum(expected) / len(expected), abs=1e-6)


def test_evaluate_guided_feeds_the_revealed_patches_to_the_network(guided_weights, tmp_path, repo_root):
    """Spy on siggraph17's input inside ``psnr_sweep``: at N points the mask plane is ``mask - 0.5`` with exactly the
    N random 3x3 patches at +0.5 (the placement drawn from the documented seed), and the hint plane holds each
    patch's mean ground-truth ab (skimage) / 110; at N = 0 nothing is revealed."""
    import numpy as np
    import torch
    from skimage.color import rgb2lab

    from chromaflow.evaluate.eval_set import load_eval_items
    from chromaflow.evaluate.eval_set import load_rgb as _load_rgb
    from chromaflow.evaluate.guided import psnr_sweep
    from chromaflow.models.siggraph17 import SIGGRAPH17

    seen = []

    def spy(module, args):
        if isinstance(module, SIGGRAPH17):
            seen.append((args[1].clone(), args[2].clone()))

    size, patch, points = 32, 3, (0, 1, 4)
    handle = torch.nn.modules.module.register_module_forward_pre_hook(spy)
    try:
        psnr_sweep(guided_weights, repo_root / "data/sample", tmp_path / "e", points=points, patch=patch, size=size,
                   max_images=1, placements=("random",), levin=False)  # fmt: skip
    finally:
        handle.remove()
    assert len(seen) == len(points)
    (item,), _ = load_eval_items(repo_root / "data/sample", split="val", size=size, max_images=1, seed=0)
    gt_ab = rgb2lab(_load_rgb(item, size).permute(1, 2, 0).numpy())[..., 1:]
    rng = np.random.default_rng([0, 0])  # psnr_sweep's placement seed for image 0
    ys, xs = rng.integers(0, size - patch + 1, max(points)), rng.integers(0, size - patch + 1, max(points))
    for n, (hint_in, mask_in) in zip(points, seen, strict=True):
        want = np.zeros((size, size))
        hint = np.zeros((size, size, 2))
        for y, x in zip(ys[:n], xs[:n], strict=True):
            want[y : y + patch, x : x + patch] = 1
            hint[y : y + patch, x : x + patch] = gt_ab[y : y + patch, x : x + patch].mean((0, 1))
        np.testing.assert_array_equal(mask_in[0, 0].numpy(), want - 0.5)
        np.testing.assert_allclose(hint_in[0].permute(1, 2, 0).numpy(), hint / 110, atol=0.05 / 110)
    assert np.abs(seen[-1][0].numpy()).max() > 1 / 110  # a coloured patch, not gray


def test_evaluate_task_guided_cli_names_bad_input(guided_weights, tmp_path, repo_root):
    from chromaflow import cli

    base = ["evaluate", "--task", "guided", "--weights", str(guided_weights), "--data", str(repo_root / "data/sample"),
            "--out", str(tmp_path / "e"), "--size", "32", "--max-images", "1", "--no-levin"]  # fmt: skip
    assert cli.main([*base, "--placements", "everywhere"]) == 2
    assert cli.main([*base, "--size", "30"]) == 2  # not a multiple of 8
