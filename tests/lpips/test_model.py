"""LPIPS as registered models: listed, described, saved and loaded like every other, one predict for pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chromaflow.models import create_model, describe, list_models, load_weights, save_weights
from chromaflow.models import lpips as L


def test_both_lpips_models_are_listed_and_described_as_lpips():
    assert {"lpips", "lpips_2afc"} <= set(list_models())
    for name in ("lpips", "lpips_2afc"):
        d = describe(name)
        assert d.kind == d.handler == "lpips" and d.served_size is None
        x = d.example()
        assert x.dtype == np.uint8 and x.shape == (1, 2, L.EXAMPLE_SIZE, L.EXAMPLE_SIZE, 3)
        assert d.signature == (("uint8", (-1, 2, -1, -1, 3)), ("float32", (-1,)))


def test_2afc_weights_round_trip_and_load_distance_projects_w(tmp_path):
    """A trained file is a plain save_weights file; its distance has w >= 0 (the last projection) and no dropout."""
    torch.manual_seed(0)
    two = create_model("lpips_2afc", net="squeeze")
    L.load_trunk_weights(two.lpips, L.random_trunk_state("squeeze", 1))
    with torch.no_grad():
        for w in two.lpips.lins:
            w.uniform_(-0.5, 1)  # some negative entries, as after an optimizer step
    save_weights(two, tmp_path / "m.safetensors")
    back = load_weights(tmp_path / "m.safetensors")
    for a, b in zip(two.state_dict().values(), back.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    dist = L.load_distance(tmp_path / "m.safetensors")
    assert isinstance(dist, L.LPIPS) and dist.dropout == 0.0 and not dist.training
    assert all(float(w.min()) >= 0 for w in dist.lins)
    want = [w.clamp(min=0) for w in two.lpips.lins]
    for w, ref in zip(dist.lins, want, strict=True):
        torch.testing.assert_close(w, ref, atol=0, rtol=0)
    with pytest.raises(TypeError, match="lpips_distance"):
        L.lpips_distance(create_model("eccv16", width=0.25))


def test_predict_answers_a_ragged_batch_of_pairs_as_the_model_does():
    model = L.build_lpips("squeeze", trunk="random", seed=2)
    g = torch.Generator().manual_seed(0)
    items = [
        torch.randint(0, 256, (2, 3, h, w), generator=g, dtype=torch.uint8) for h, w in ((40, 44), (33, 33), (40, 44))
    ]
    got = describe("lpips").predict(model, items)
    assert len(got) == 3
    for pair, d in zip(items, got, strict=True):
        with torch.no_grad():
            torch.testing.assert_close(d, model(pair[0:1], pair[1:2])[0], rtol=1e-5, atol=1e-7)
    assert describe("lpips").to_output(got[0]).dtype == np.float32
    with pytest.raises(ValueError, match="item 0"):
        describe("lpips").predict(model, [torch.zeros(3, 40, 40, dtype=torch.uint8)])
