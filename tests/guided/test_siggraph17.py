"""The user-guided network (thesis ch. 3.3.4): one pass gives colour and distribution; hints matter."""

from __future__ import annotations

import pytest
import torch

from chromaflow.models import create_model
from chromaflow.models.siggraph17 import GLOBAL_DIM


def _inputs(b=2, h=32, w=48):
    g = torch.Generator().manual_seed(0)
    l = torch.rand(b, 1, h, w, generator=g) - 0.5
    ab = torch.zeros(b, 2, h, w)
    mask = torch.zeros(b, 1, h, w) - 0.5
    return l, ab, mask


def test_one_pass_gives_colour_and_distribution():
    net = create_model("siggraph17", width=1 / 8).eval()
    out = net(*_inputs())
    assert out.ab.shape == (2, 2, 32, 48)
    assert out.logits.shape == (2, 313, 8, 12)
    assert out.ab.abs().max() <= 1  # tanh output, times ab_norm gives ab


def test_distribution_head_does_not_train_the_main_branch():
    net = create_model("siggraph17", width=1 / 8)
    out = net(*_inputs())
    out.logits.sum().backward()
    assert net.dist.weight.grad is not None
    assert all(p.grad is None for n, p in net.named_parameters() if not n.startswith("dist."))


def test_hints_and_global_hints_change_the_output():
    torch.manual_seed(0)
    net = create_model("siggraph17", width=1 / 8).eval()
    l, ab, mask = _inputs(b=1)
    base = net(l, ab, mask).ab
    ab2, mask2 = ab.clone(), mask.clone()
    ab2[:, :, 10:13, 10:13] = 0.5
    mask2[:, :, 10:13, 10:13] = 0.5
    assert not torch.allclose(base, net(l, ab2, mask2).ab)
    # global hints: two copies of one image, one with a revealed histogram; batch-norm in training mode
    # (at random init the eval-mode signal from conv4 to the output is ~1e-8, too small to test)
    net.train()
    l2, ab2, mask2 = l.repeat(2, 1, 1, 1), ab.repeat(2, 1, 1, 1), mask.repeat(2, 1, 1, 1)
    gh = torch.zeros(2, GLOBAL_DIM)
    gh[1, 0], gh[1, 313] = 1.0, 1.0
    out = net(l2, ab2, mask2, gh).ab
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_contract_and_bad_input():
    net = create_model("siggraph17", width=1 / 8)
    assert net.config["contract"]["mask_cent"] == 0.5
    l, ab, mask = _inputs(h=30, w=32)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(l, ab, mask)
    l, ab, mask = _inputs()
    with pytest.raises(ValueError, match="hint_ab"):
        net(l, ab[:, :1], mask)
    no_global = create_model("siggraph17", width=1 / 8, global_hints=False)
    with pytest.raises(ValueError, match="global-hints"):
        no_global(l, ab, mask, torch.zeros(2, GLOBAL_DIM))
