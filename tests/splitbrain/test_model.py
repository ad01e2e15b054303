"""Split-brain model: variants, shapes per layer, disjoint halves (gradient check), registry round trip."""

from __future__ import annotations

import pytest
import torch

import chromaflow.models.splitbrain as sb  # registers "splitbrain" (until registry._BUILTIN lists it)
from chromaflow.models import create_model, load_weights, save_weights
from chromaflow.train.tasks.splitbrain import l_bins, tower_loss

SMALL = {"width": 0.125, "fc_width": 32}


def _lab(b: int = 2, s: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    lab = torch.rand(b, 3, s, s, generator=g)
    return torch.cat([lab[:, :1] * 100, lab[:, 1:] * 160 - 80], 1)  # L in [0, 100], ab in [-80, 80]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (64, {"conv1": 32, "conv2": 16, "conv3": 8, "conv4": 8, "conv5": 8}),
        (32, {"conv1": 32, "conv2": 16, "conv3": 8, "conv4": 8, "conv5": 8}),
        (180, {"conv1": 45, "conv2": 23, "conv3": 12, "conv4": 12, "conv5": 12}),  # Table 5.2
    ],
)
def test_layer_shapes(size, expected):
    net = create_model("splitbrain", variant="split_cl_cl", input_size=size, width=0.25, fc_width=16).eval()
    feats = net.layer_features(torch.zeros(2, 3, size, size))
    chans = {"conv1": 24, "conv2": 64, "conv3": 96, "conv4": 96, "conv5": 64}  # AlexNet x 0.25, halves concatenated
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        k: (2, chans[k], expected[k], expected[k]) for k in sb.LAYERS
    }
    outs = net(torch.zeros(2, 3, size, size))
    s5 = expected["conv5"]
    assert [tuple(o.shape) for o in outs] == [(2, 313, s5, s5), (2, 50, s5, s5)]


@pytest.mark.parametrize("variant", sorted(sb.VARIANTS))
def test_every_variant_builds_and_has_same_representation_size(variant):
    kw = {"num_classes": 5} if variant == "labels" else {}
    net = create_model("splitbrain", variant=variant, input_size=32, **SMALL, **kw).eval()
    feats = net.layer_features(_lab())
    ref = create_model("splitbrain", variant="lab_lab", input_size=32, **SMALL).eval().layer_features(_lab())
    assert {k: v.shape for k, v in feats.items()} == {k: v.shape for k, v in ref.items()}
    outs = net(sb.normalize_lab(_lab()))
    assert len(outs) == len(sb.VARIANTS[variant])
    if variant == "labels":
        assert outs[0].shape == (2, 5)


def test_halves_are_disjoint_gradient_check():
    """ab->L loss gives no gradient to the L->ab tower and vice versa; each sees only its own channels."""
    net = create_model("splitbrain", variant="split_cl_cl", input_size=32, **SMALL).train()
    lab = _lab()
    x = sb.normalize_lab(lab).requires_grad_(True)
    out_ab, out_l = net(x)
    towers = net.towers
    for k, (spec, out) in enumerate(zip(net.specs, (out_ab, out_l), strict=True)):
        net.zero_grad(set_to_none=True)
        x.grad = None
        tower_loss(spec, out, lab, None).backward(retain_graph=True)
        own, other = towers[k], towers[1 - k]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in own.parameters() if p.ndim > 1)
        assert all(p.grad is None or not p.grad.any() for p in other.parameters())
        seen = x.grad.abs().sum((0, 2, 3)) > 0  # which input channels this loss depends on
        assert seen.tolist() == ([False, True, True] if spec.source == "ab" else [True, False, False])


def test_gaussian_and_unknown_variant():
    with pytest.raises(ValueError, match="variant must be one of"):
        create_model("splitbrain", variant="nope")
    with pytest.raises(ValueError, match="num_classes"):
        create_model("splitbrain", variant="labels")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        create_model("splitbrain", input_size=32, **SMALL)(torch.zeros(1, 1, 32, 32))


def test_drop50_drops_input_only_in_training():
    net = create_model("splitbrain", variant="lab_drop50", input_size=32, **SMALL)
    x = sb.normalize_lab(_lab())
    net.eval()
    a, b = net(x)[0], net(x)[0]
    assert torch.equal(a, b)
    net.train()
    torch.manual_seed(0)
    (xi,) = net._inputs(x)
    frac = float((xi == 0).float().mean())
    assert 0.4 < frac < 0.6


def test_l_bins_are_size_two():
    lum = torch.tensor([0.0, 1.99, 2.0, 50.0, 99.9, 100.0]).view(1, 1, 1, 6)
    assert l_bins(lum).flatten().tolist() == [0, 0, 1, 25, 49, 49]


def test_ab_class_target_is_the_nearest_bin(monkeypatch):
    """cl loss on ab equals cross-entropy on the nearest of the 313 bins (one-hot, thesis 5.4)."""
    from chromaflow import color

    spec = sb.VARIANTS["split_cl_cl"][0]
    lab = _lab(1, 8)
    logits = torch.randn(1, 313, 1, 1)
    mean_ab = lab[:, 1:].mean((2, 3))  # area-downsampled to 1x1
    nearest = int(((color.ab_bins() - mean_ab).pow(2).sum(1)).argmin())
    expected = -torch.log_softmax(logits[0, :, 0, 0], 0)[nearest]
    assert torch.allclose(tower_loss(spec, logits, lab, None), expected, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    net = create_model("splitbrain", variant="ensemble_l_ab", input_size=32, **SMALL).eval()
    save_weights(net, tmp_path / "m.safetensors")
    back = load_weights(tmp_path / "m.safetensors")
    x = sb.normalize_lab(_lab())
    for a, b in zip(net(x), back(x), strict=True):
        assert torch.equal(a, b)
