"""``translate_batch`` (the bicyclegan description's predict): the served A equals the training pairs' A (checked
against ``PairDataset`` on a pair written by ``prepare_pairs``), codes by seed / z / style, polarity, ragged
batches whose items do not depend on their neighbours, and every refused item."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from chromaflow.data.pair_dataset import PairDataset
from chromaflow.data.pairs import prepare_pairs
from chromaflow.models import create_model, describe
from chromaflow.models.translation import MAX_SAMPLES, TranslateInput, translate_batch

SIZE = 64  # network short side in these tests (stride 32 at num_downs 5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = create_model("bicyclegan", num_downs=5, width=0.125, input_nc=1, paths=(), e_depth=3)
    with torch.no_grad():  # a louder generator than the 0.02-gain init, so samples differ visibly
        for p in net.generator.parameters():
            p.mul_(20.0)
    return net.eval()


def edges(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A boundary map ``(h, w)`` uint8, white lines on black (as BSDS500's)."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    for _ in range(6):
        if rng.random() < 0.5:
            m[rng.integers(0, h), :] = 255
        else:
            m[:, rng.integers(0, w)] = 255
    return m


def rgb_of(m: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.repeat(m[None], 3, 0)))


def samples_of(model, a: torch.Tensor, z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The reference: G(A, z) on a training A ``(1, h, w)`` uint8 for each code of ``z (n, nz)``, resized to ``size``
    (bicubic, antialiased) and rounded to uint8 ``(n, 3, H, W)``."""
    with torch.no_grad():
        out = (model(a[None].float().expand(len(z), -1, -1, -1) / 127.5 - 1.0, z) + 1) / 2
    out = F.interpolate(out, size=size, mode="bicubic", align_corners=False, antialias=True)
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)


def test_served_input_is_the_training_pairs_input(model, tmp_path):
    """A square map translated with explicit z == G(A_train, z) resized back, A_train from PairDataset (val)."""
    m = edges(128, 128)
    for d in ("images/val", "boundaries/val"):
        (tmp_path / "src" / d).mkdir(parents=True)
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(tmp_path / "src/images/val/p.png")
    Image.fromarray(m).save(tmp_path / "src/boundaries/val/p_0.png")
    prepare_pairs(str(tmp_path / "src"), tmp_path / "pairs", max_side=128)
    a_train = PairDataset(tmp_path / "pairs", split="val", size=SIZE, train=False)[0]["a"]  # (1, 64, 64) uint8
    z = torch.randn(3, model.nz, generator=torch.Generator().manual_seed(1))
    ref = samples_of(model, a_train, z, (128, 128))
    out = translate_batch(model, [TranslateInput(rgb_of(m), n=3, z=z)], size=SIZE)[0]
    assert out.source == "given" and out.seed is None and not out.inverted
    assert torch.equal(out.images, ref)


def test_served_gray_input_is_the_gray_pairs_input(model, tmp_path):
    """A colour photo sent as a gray input: the network sees the CIE L that ``prepare-pairs --pairs gray`` stores
    (not PIL's Rec. 601 luma), resized as ``PairDataset`` resizes it."""
    rng = np.random.default_rng(4)
    photo = (rng.random((128, 128, 3)) * np.array([255, 60, 200])).astype(np.uint8)  # far from gray
    (tmp_path / "src" / "val").mkdir(parents=True)
    Image.fromarray(photo).save(tmp_path / "src/val/p.png")
    prepare_pairs(str(tmp_path / "src"), tmp_path / "pairs", pairs="gray", max_side=128)
    a_train = PairDataset(tmp_path / "pairs", split="val", size=SIZE, train=False)[0]["a"]  # (1, 64, 64) uint8
    z = torch.randn(2, model.nz, generator=torch.Generator().manual_seed(1))
    ref = samples_of(model, a_train, z, (128, 128))
    rgb = torch.from_numpy(photo).permute(2, 0, 1).contiguous()
    out = translate_batch(model, [TranslateInput(rgb, n=2, z=z, input_kind="gray")], size=SIZE)[0]
    assert torch.equal(out.images, ref)


def test_sizes_seed_and_samples(model):
    items = [TranslateInput(rgb_of(edges(50, 70)), n=4, seed=3), TranslateInput(rgb_of(edges(33, 20, 1)), n=1)]
    a, b = translate_batch(model, items, size=SIZE)
    assert a.images.shape == (4, 3, 50, 70) and a.images.dtype == torch.uint8 and a.z.shape == (4, model.nz)
    assert b.images.shape == (1, 3, 33, 20) and isinstance(b.seed, int)  # a fresh seed, reported
    again = translate_batch(model, [TranslateInput(rgb_of(edges(50, 70)), n=4, seed=3)], size=SIZE)[0]
    assert torch.equal(again.z, a.z) and (again.images.int() - a.images.int()).abs().max() <= 1
    diffs = [(a.images[0].float() - a.images[k].float()).abs().mean() for k in range(1, 4)]
    assert min(diffs) > 1.0  # different z, different samples
    assert torch.equal(a.z, torch.randn(4, model.nz, generator=torch.Generator().manual_seed(3)))


def test_item_does_not_depend_on_its_batch(model):
    item = TranslateInput(rgb_of(edges(40, 90)), n=2, seed=5)
    alone = translate_batch(model, [item], size=SIZE)[0].images
    others = [TranslateInput(rgb_of(edges(40, 90, 2)), n=3, seed=1), TranslateInput(rgb_of(edges(64, 64)), n=5)]
    mixed = translate_batch(model, [others[0], item, others[1]], size=SIZE)[1].images
    assert (alone.int() - mixed.int()).abs().max() <= 1


def test_black_on_white_maps_are_inverted(model):
    m = edges(48, 60)
    bright = translate_batch(model, [TranslateInput(rgb_of(m), n=2, seed=0)], size=SIZE)[0]
    dark = translate_batch(model, [TranslateInput(rgb_of(255 - m), n=2, seed=0)], size=SIZE)[0]
    forced = translate_batch(model, [TranslateInput(rgb_of(255 - m), n=2, seed=0, polarity="bright")], size=SIZE)[0]
    assert dark.inverted and not bright.inverted and not forced.inverted
    assert torch.equal(bright.images, dark.images)
    assert not torch.equal(bright.images, forced.images)


def test_style_code_is_the_encoders_mean(model):
    style = torch.randint(0, 256, (3, 80, 100), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    res = translate_batch(model, [TranslateInput(rgb_of(edges(64, 64)), n=3, seed=2, style=style)], size=SIZE)[0]
    from PIL import Image as I

    img = I.fromarray(style.permute(1, 2, 0).numpy()).resize((80, 64), I.Resampling.BICUBIC, reducing_gap=3.0)
    b = torch.from_numpy(np.asarray(img.crop((8, 0, 72, 64))).copy()).permute(2, 0, 1).float() / 127.5 - 1
    with torch.no_grad():
        mu, _ = model.encode(b[None])
    assert res.source == "style" and torch.allclose(res.z[0], mu[0], atol=1e-6)
    assert not torch.allclose(res.z[1], mu[0])  # the others are drawn from q(z | style)
    given = translate_batch(model, [TranslateInput(rgb_of(edges(64, 64)), z=mu)], size=SIZE)[0]
    assert torch.equal(given.images[0], res.images[0])


def test_gray_input_is_not_binarized(model):
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    e = translate_batch(model, [TranslateInput(rgb_of(ramp), seed=0)], size=SIZE)[0].images
    g = translate_batch(model, [TranslateInput(rgb_of(ramp), seed=0, input_kind="gray")], size=SIZE)[0].images
    assert not torch.equal(e, g)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"n": 0}, "n must be"),
        ({"n": MAX_SAMPLES + 1}, "n must be"),
        ({"seed": -1}, "seed must be"),
        ({"z": torch.zeros(1, 3)}, "z must be"),
        ({"z": torch.full((1, 8), float("nan"))}, "z must be"),
        ({"z": torch.zeros(1, 8), "style": torch.zeros(3, 8, 8, dtype=torch.uint8)}, "not both"),
        ({"input_kind": "sketch"}, "input_kind"),
        ({"polarity": "up"}, "polarity"),
        ({"image": torch.zeros(3, 8, 8)}, "image must be uint8"),
    ],
)
def test_bad_items_are_named(model, change, match):
    item = TranslateInput(**({"image": rgb_of(edges(16, 16))} | change))
    with pytest.raises(ValueError, match=f"item 1: .*{match}|item 1: {match}"):
        translate_batch(model, [TranslateInput(rgb_of(edges(16, 16))), item], size=SIZE)


def test_style_needs_an_encoder():
    net = create_model("bicyclegan", num_downs=5, width=0.125, input_nc=1, paths=(), encoder=None)
    style = torch.zeros(3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="encoder"):
        translate_batch(net, [TranslateInput(rgb_of(edges(16, 16)), style=style)], size=SIZE)


def test_description():
    d = describe("bicyclegan")
    assert (d.kind, d.handler, d.served_size) == ("translation", "translate", 128)
    net = create_model("bicyclegan", num_downs=5, width=0.125, input_nc=1, paths=())
    x = torch.from_numpy(d.example()).permute(0, 3, 1, 2)
    out = [d.to_output(r) for r in d.predict(net, list(x), size=SIZE)]
    assert out[0].shape == (1, *d.example().shape[1:]) and out[0].dtype == np.uint8
