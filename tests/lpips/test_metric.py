"""LPIPS metric: parity with the official package (same weights), shapes, inputs, strict loaders, gradients."""

from __future__ import annotations

import pytest
import torch

from chromaflow.models import lpips as L
from chromaflow.models import save_weights

from .conftest import official_model

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _trunk(net, squeeze_state):
    return squeeze_state if net == "squeeze" else L.random_trunk_state(net, seed=0)


@pytest.mark.parametrize("version", ["0.1", "0.0"])
@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_parity_with_official(net, version, ref_pairs, squeeze_state, shared_datasets):
    trunk = _trunk(net, squeeze_state)
    ours = L.build_lpips(net, trunk=trunk, version=version)
    off = official_model(net, version, trunk, shared_datasets / "lpips_linear_weights")
    x0, x1 = ref_pairs
    with torch.no_grad():
        want = off(x0, x1, normalize=True).flatten()
        got = ours(x0, x1)
    assert got.shape == (len(x0),)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert float(want.std()) > 1e-3  # the pairs are not all alike: the comparison can fail


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_spatial_map_parity(net, ref_pairs, squeeze_state, shared_datasets):
    trunk = _trunk(net, squeeze_state)
    ours = L.build_lpips(net, trunk=trunk)
    off = official_model(net, "0.1", trunk, shared_datasets / "lpips_linear_weights", spatial=True)
    x0, x1 = ref_pairs
    with torch.no_grad():
        want = off(x0, x1, normalize=True)
        got = ours(x0, x1, spatial=True)
    assert got.shape == (len(x0), 1, 64, 64)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_cosine_baseline_parity(ref_pairs, squeeze_state, shared_datasets):
    ours = L.build_lpips("squeeze", trunk=squeeze_state, lin=None)
    off = official_model("squeeze", "0.1", squeeze_state, shared_datasets / "lpips_linear_weights")
    off.lpips = False  # the official baseline: w = 1 (cosine distance)
    x0, x1 = ref_pairs
    with torch.no_grad():
        torch.testing.assert_close(ours(x0, x1), off(x0, x1, normalize=True).flatten(), atol=1e-6, rtol=0)


def test_eq_6_1_from_the_thesis(ref_pairs):
    """Eq. 6.1 written out by hand with torchvision's AlexNet features (independent of our module's code)."""
    import torchvision

    state = L.random_trunk_state("alex", seed=3)
    full = torchvision.models.alexnet(weights=None)
    full.features.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items()})
    w = [
        torch.rand(1, c, 1, 1, generator=torch.Generator().manual_seed(i))
        for i, c in enumerate(L.NETS["alex"].channels)
    ]
    m = L.LPIPS("alex")
    L.load_trunk_weights(m, state)
    L.load_linear_weights(m, {f"lin{i}.model.1.weight": t for i, t in enumerate(w)})
    x0, x1 = ref_pairs
    shift, scale = torch.tensor(L.SHIFT).view(1, 3, 1, 1), torch.tensor(L.SCALE).view(1, 3, 1, 1)
    a, b = ((2 * x - 1 - shift) / scale for x in (x0, x1))
    want = torch.zeros(len(x0))
    with torch.no_grad():
        for k, layer in enumerate(full.features[:12]):
            a, b = layer(a), layer(b.clone())
            if k in (1, 4, 7, 9, 11):
                i = (1, 4, 7, 9, 11).index(k)
                ya = a / (a.norm(dim=1, keepdim=True) + 1e-10)
                yb = b / (b.norm(dim=1, keepdim=True) + 1e-10)
                want += (w[i] * (ya - yb) ** 2).sum(1).mean(dim=(1, 2))
        got = m(x0, x1)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_identity_zero_and_symmetry(ref_pairs):
    m = L.build_lpips("alex", trunk="random")
    x0, x1 = ref_pairs
    with torch.no_grad():
        assert float(m(x0, x0).abs().max()) == 0.0
        torch.testing.assert_close(m(x0, x1), m(x1, x0))


def test_any_size_batched_unbatched_uint8_and_ranges(ref_pairs):
    m = L.build_lpips("alex", trunk="random")
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 3, 45, 97, generator=g), torch.rand(3, 3, 45, 97, generator=g)
    with torch.no_grad():
        d = m(a, b)
        assert d.shape == (3,)
        torch.testing.assert_close(m(a[1], b[1]), d[1:2])  # unbatched == batch row
        torch.testing.assert_close(torch.cat([m(a[i : i + 1], b[i : i + 1]) for i in range(3)]), d)
        assert m(a, b, spatial=True).shape == (3, 1, 45, 97)
        q0, q1 = (a * 255).round().to(torch.uint8), (b * 255).round().to(torch.uint8)
        torch.testing.assert_close(m(q0, q1), m(q0.float() / 255, q1.float() / 255))
        m11 = L.build_lpips("alex", trunk="random", input_range=(-1, 1))
        torch.testing.assert_close(m11(2 * a - 1, 2 * b - 1), d, atol=1e-6, rtol=1e-5)
        d_layers, per = m(a, b, per_layer=True)
        torch.testing.assert_close(sum(per), d_layers)


def test_bad_inputs_are_named():
    m = L.build_lpips("alex", trunk="random")
    with pytest.raises(ValueError, match="x0: alex needs H, W >= 31"):
        m(torch.rand(1, 3, 30, 64), torch.rand(1, 3, 30, 64))
    m(torch.rand(1, 3, 31, 31), torch.rand(1, 3, 31, 31))  # the stated minimum works
    with pytest.raises(ValueError, match="x1: expected RGB"):
        m(torch.rand(1, 3, 64, 64), torch.rand(1, 4, 64, 64))
    with pytest.raises(ValueError, match="same shape"):
        m(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 65))
    with pytest.raises(TypeError, match="x0: expected a torch.Tensor"):
        m([1, 2], torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="unknown backbone"):
        L.LPIPS("resnet")
    for net, size in L.MIN_SIZE.items():  # the table is right: size works, size - 1 is refused
        mm = L.LPIPS(net, linear=False)
        mm(torch.rand(1, 3, size, size), torch.rand(1, 3, size, size))
        with pytest.raises(ValueError):
            mm(torch.rand(1, 3, size - 1, size), torch.rand(1, 3, size - 1, size))


def test_strict_loaders(tmp_path, squeeze_state):
    m = L.LPIPS("squeeze")
    official = torch.load(L.official_linear_path("squeeze"), map_location="cpu", weights_only=True)
    L.load_linear_weights(m, official)
    missing = dict(official)
    missing.pop("lin6.model.1.weight")
    with pytest.raises(ValueError, match="missing"):
        L.load_linear_weights(m, missing)
    with pytest.raises(ValueError, match="unexpected"):
        L.load_linear_weights(m, {**official, "lin7.model.1.weight": torch.ones(1, 3, 1, 1)})
    with pytest.raises(ValueError, match="shape mismatch"):
        L.load_linear_weights(m, {**official, "lin0.model.1.weight": torch.ones(1, 65, 1, 1)})
    with pytest.raises(ValueError, match="negative"):
        L.load_linear_weights(m, {**official, "lin0.model.1.weight": -torch.ones(1, 64, 1, 1)})
    L.load_trunk_weights(m, squeeze_state)  # torchvision full-model keys; classifier.* dropped
    bad = {k: v for k, v in squeeze_state.items() if k != "features.12.expand3x3.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['features.12.expand3x3.bias'\]"):
        L.load_trunk_weights(m, bad)
    with pytest.raises(ValueError, match="unexpected"):
        L.load_trunk_weights(m, {**squeeze_state, "features.13.weight": torch.ones(1)})
    with pytest.raises(ValueError, match="missing keys .*unexpected keys"):
        L.load_trunk_weights(L.LPIPS("alex"), squeeze_state)
    with pytest.raises(FileNotFoundError):
        L.load_trunk_weights(m, tmp_path / "nope.pth")


def test_save_load_roundtrip(tmp_path, ref_pairs):
    m = L.build_lpips("squeeze", trunk="random", seed=5)
    save_weights(m, tmp_path / "m.safetensors")
    back = L.load_distance(tmp_path / "m.safetensors")
    x0, x1 = ref_pairs
    with torch.no_grad():
        torch.testing.assert_close(back(x0, x1), m(x0, x1), atol=0, rtol=0)
    with pytest.raises(ValueError, match="metadata"):
        from safetensors.torch import save_file

        save_file({"a": torch.ones(1)}, str(tmp_path / "x.safetensors"))
        L.load_distance(tmp_path / "x.safetensors")


def test_shipped_assets_equal_official(shared_datasets):
    for v in L.VERSIONS:
        for net in L.NETS:
            assert (
                L.official_linear_path(net, v).read_bytes()
                == (shared_datasets / "lpips_linear_weights" / f"v{v}" / f"{net}.pth").read_bytes()
            )


def test_functional_api_and_no_download(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache: must not download
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        L.lpips(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), net="vgg")
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    d = L.lpips(a, b, net="alex", trunk="random")
    torch.testing.assert_close(d, L.build_lpips("alex", trunk="random")(a, b))


def test_gradcheck_float64():
    m = L.build_lpips("squeeze", trunk="random").double()
    a = torch.rand(1, 3, 17, 17, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 3, 17, 17, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: m(x, b), (a,), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("device", DEVICES)
def test_devices(device, ref_pairs):
    m = L.build_lpips("alex", trunk="random", device=device)
    x0, x1 = ref_pairs
    with torch.no_grad():
        got = m(x0.to(device), x1.to(device)).cpu()
        want = L.build_lpips("alex", trunk="random")(x0, x1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
