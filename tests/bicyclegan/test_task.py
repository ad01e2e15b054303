"""The bicyclegan task: each Fig. 4.6 variant trains the terms and networks it should, in the original's order."""

from __future__ import annotations

import pytest
import torch

from chromaflow.train import losses_gan as L
from chromaflow.train.engine import TrainConfig, seed_all
from chromaflow.train.tasks.bicyclegan import VARIANTS, BicycleGANTask, default_downs

TERMS = {
    "pix2pix_noise": {"g_gan_random", "l1_image", "d_random"},
    "cae_gan": {"g_gan_encoded", "l1_image", "d_encoded"},
    "cvae_gan": {"g_gan_encoded", "l1_image", "kl", "d_encoded"},
    "cvae_gan_pp": {"g_gan_encoded", "l1_image", "kl", "g_gan_random", "d_encoded", "d_random"},
    "clr_gan": {"g_gan_random", "l1_latent", "d_random"},
    "bicyclegan": {"g_gan_encoded", "l1_image", "kl", "g_gan_random", "l1_latent", "d_encoded", "d_random"},
}
CFG = TrainConfig(out="unused", lr=1e-3, beta1=0.5, beta2=0.999, weight_decay=0.0)


def batch(n: int = 4, size: int = 64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "a": (torch.rand(n, 1, size, size, generator=g) > 0.9).to(torch.uint8) * 255,
        "b": torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
    }


def task(variant: str, **kw) -> BicycleGANTask:
    return BicycleGANTask([], variant=variant, size=64, width=0.0625, num_downs=5, **kw)


def test_the_six_variants_of_fig_4_6():
    assert set(VARIANTS) == set(TERMS)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_trains_its_terms_and_steps_every_network(variant):
    t = task(variant)
    seed_all(0)
    model = t.build_model()
    opts = t.optimizers(model, CFG)
    assert set(opts) == {"ge"} | {f"d_{p}" for p in VARIANTS[variant].paths}
    assert (model.encoder is not None) == VARIANTS[variant].has_encoder
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    loss, logs = t.train_step(model, batch(), opts)
    assert set(logs) == TERMS[variant]
    assert torch.isfinite(loss)
    g_terms = sum(v for k, v in logs.items() if not k.startswith("d_"))
    assert loss.item() == pytest.approx(g_terms, rel=1e-5)  # the logged loss is G/E's objective
    changed = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("disc") else "")
               for k, v in model.state_dict().items() if not torch.equal(v, before[k])}  # fmt: skip
    expected = {"generator"} | ({"encoder"} if model.encoder is not None else set())
    expected |= {f"discriminators.{p}" for p in VARIANTS[variant].paths}
    assert changed == expected


def _latent_grads(variant: str) -> tuple[bool, bool]:
    """Whether the latent-regression term alone reaches (G, E)."""
    t = task(variant)
    seed_all(0)
    model = t.build_model()
    out = t.forward_paths(model, batch())
    term = L.latent_l1(out["mu_random"], out["z_random"])
    reach = []
    for net in (model.generator, model.encoder):
        grads = torch.autograd.grad(term, list(net.parameters()), retain_graph=True, allow_unused=True)
        reach.append(any(g is not None and g.abs().sum() > 0 for g in grads))
    return reach[0], reach[1]


def test_latent_term_moves_g_only_in_bicyclegan_but_also_e_in_clr_gan():
    assert _latent_grads("bicyclegan") == (True, False)  # thesis 4.3.5: "while keeping E fixed"
    assert _latent_grads("clr_gan") == (True, True)  # E has no other signal there


def test_cae_uses_the_mean_and_cvae_samples():
    for variant, stochastic in (("cae_gan", False), ("cvae_gan", True)):
        t = task(variant)
        seed_all(0)
        model = t.build_model().eval()
        with torch.no_grad():
            model.encoder.fc_logvar.bias.fill_(2.0)  # a wide posterior: sampling must show
            f1 = t.forward_paths(model, batch())["fake_encoded"]
            f2 = t.forward_paths(model, batch())["fake_encoded"]
        assert (not torch.equal(f1, f2)) == stochastic, variant


def test_two_paths_split_the_batch_and_refuse_odd_sizes():
    t = task("bicyclegan")
    seed_all(0)
    model = t.build_model()
    out = t.forward_paths(model, batch(4))
    assert out["fake_encoded"].shape[0] == out["fake_random"].shape[0] == out["real_random"].shape[0] == 2
    b = L.image_l1(out["real_random"], out["b"])
    assert b > 0  # D_random's real images are the other half
    with pytest.raises(ValueError, match="splits each batch in two; batch size 3 is odd"):
        t.forward_paths(model, batch(3))
    assert task("cvae_gan").forward_paths(model, batch(3))["fake_encoded"].shape[0] == 3  # one path: whole batch


def test_validation_metrics(tmp_path):
    t = task("bicyclegan")
    seed_all(0)
    model = t.build_model().eval()
    items = [{"a": b_["a"], "b": b_["b"], "id": str(i), "photo": str(i)} for i, b_ in enumerate(_items(4))]
    loader = torch.utils.data.DataLoader(items, batch_size=2, collate_fn=t.collate)
    m1, m2 = t.validate(model, loader, torch.device("cpu")), t.validate(model, loader, torch.device("cpu"))
    assert set(m1) == {"val_recon_l1", "val_latent_l1"} and m1 == m2  # fixed z: repeatable
    assert 0 < m1["val_recon_l1"] < 2 and m1["val_latent_l1"] > 0


def _items(n: int) -> list[dict]:
    b = batch(n)
    return [{"a": b["a"][i], "b": b["b"][i]} for i in range(n)]


def test_default_downs_and_bad_variant():
    assert [default_downs(s) for s in (64, 96, 128, 256, 512)] == [6, 5, 7, 8, 8]
    with pytest.raises(ValueError, match="--size 48: must be divisible by 2\\*\\*5 = 32"):
        default_downs(48)
    with pytest.raises(ValueError, match="--variant must be one of"):
        BicycleGANTask([], variant="pix2pix")


def test_sizes_the_networks_cannot_take_are_refused_at_build():
    with pytest.raises(ValueError, match="--size 32: below the discriminators' minimum side 47"):
        BicycleGANTask([], variant="bicyclegan", size=32, width=0.0625, num_downs=5).build_model()
    with pytest.raises(ValueError, match="--size 96: not divisible by the networks' stride 64"):
        BicycleGANTask([], variant="bicyclegan", size=96, width=0.0625, num_downs=6).build_model()
