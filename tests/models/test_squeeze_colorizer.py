"""The pretrained-backbone colorizer (issue 22): shapes, the trunk against torchvision's SqueezeNet 1.1 with the
same weights on a real photo, fine-tuning (gradients reach the trunk, the trunk's own lr, a few steps lower the
loss on real images through the ColorizationTask), and the weights file round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from chromaflow import color
from chromaflow.color.constants import LAB_CONTRACT, Q
from chromaflow.models import create_model, describe, list_models, load_weights, save_weights
from chromaflow.models.squeeze_colorizer import IMAGENET_MEAN, IMAGENET_STD, SqueezeColorizer, load_trunk
from chromaflow.train.tasks.colorization import ColorizationTask

TRUNK = "squeezenet1_1/squeezenet1_1_caffe_folded_torchvision_norm_tvkeys.pth"


@pytest.fixture(scope="module")
def trunk_path(shared_file):
    return shared_file(TRUNK)


def _photo(shared_file, name: str, side: int) -> torch.Tensor:
    """uint8 ``(3, side, side)``: the centre square of a Kodak photo, resized."""
    img = Image.open(shared_file(f"kodak24/{name}")).convert("RGB")
    s = min(img.size)
    img = img.crop(((img.width - s) // 2, (img.height - s) // 2, (img.width + s) // 2, (img.height + s) // 2))
    img = img.resize((side, side), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


def _norm_light(rgb: torch.Tensor) -> torch.Tensor:
    return (color.rgb_to_lab(rgb)[:, :1] - LAB_CONTRACT["l_cent"]) / LAB_CONTRACT["l_norm"]


def test_registered_with_config_and_description():
    assert "squeeze_colorizer" in list_models()
    m = create_model("squeeze_colorizer", width=0.5)
    assert isinstance(m, SqueezeColorizer)
    assert m.config == {
        "name": "squeeze_colorizer",
        "kwargs": {"width": 0.5, "head": "class"},
        "contract": LAB_CONTRACT,
    }
    d = describe("squeeze_colorizer")
    assert d.kind == "colorization" and d.served_size >= 128 and d.handler == "colorize"
    with pytest.raises(ValueError, match="width must be > 0"):
        create_model("squeeze_colorizer", width=0)
    with pytest.raises(ValueError, match="head must be one of"):
        create_model("squeeze_colorizer", head="gan")


def test_size_fits_the_shipping_limit():
    n = sum(p.numel() for p in create_model("squeeze_colorizer", width=1.0).parameters())
    assert 2 * n < 10 * 2**20  # fp16 weights under 10 MB
    assert sum(p.numel() for p in create_model("squeeze_colorizer").trunk.parameters()) == 722_496  # SqueezeNet 1.1


@pytest.mark.parametrize(("h", "w"), [(32, 32), (33, 47), (64, 64), (100, 77), (128, 128), (130, 250)])
@pytest.mark.parametrize("head", ["class", "regression"])
def test_output_grid_is_a_quarter_of_any_input(h, w, head):
    m = create_model("squeeze_colorizer", width=0.125, head=head).eval()
    out = m(torch.rand(2, 1, h, w) - 0.5)
    assert out.shape == (2, Q if head == "class" else 2, math.ceil(h / 4), math.ceil(w / 4))
    assert torch.isfinite(out).all()


def test_bad_inputs_are_named():
    m = create_model("squeeze_colorizer", width=0.125)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        m(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="sides must be >= 32"):
        m(torch.zeros(1, 1, 31, 64))


def test_trunk_input_is_the_gray_photo_normalized_like_torchvision(shared_file):
    """Independent reference: skimage's lab2rgb of (L, 0, 0), then torchvision's ImageNet normalization."""
    from skimage.color import lab2rgb

    rgb = _photo(shared_file, "kodim23.png", 64)[None]
    m = create_model("squeeze_colorizer", width=0.125)
    x = m.trunk_input(_norm_light(rgb))
    L = color.rgb_to_lab(rgb)[0, 0].double().numpy()
    gray = lab2rgb(np.stack([L, np.zeros_like(L), np.zeros_like(L)], -1))  # (H, W, 3) in [0, 1]
    ref = (gray - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.abs(x[0].permute(1, 2, 0).double().numpy() - ref).max() < 1e-3


def test_trunk_loads_strictly_and_matches_torchvision(shared_file, trunk_path):
    torchvision = pytest.importorskip("torchvision")
    state = torch.load(trunk_path, map_location="cpu", weights_only=True)
    ref = torchvision.models.squeezenet1_1(weights=None).eval()
    ref.load_state_dict(state, strict=True)
    m = create_model("squeeze_colorizer", width=0.25).eval()
    before = m.trunk[0].weight.clone()
    load_trunk(m, trunk_path)
    assert not torch.equal(before, m.trunk[0].weight)
    rgb = _photo(shared_file, "kodim05.png", 224)[None]
    x = m.trunk_input(_norm_light(rgb))
    with torch.no_grad():
        ours, theirs = m.trunk(x), ref.features(x)
        assert ours.shape == theirs.shape == (1, 512, 13, 13)
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5)
        # the trunk is really ImageNet-trained: the gray photo gets a confident class from torchvision's head
        assert torch.softmax(ref.classifier(theirs).flatten(1), 1).max() > 0.2
        taps = m.taps(_norm_light(rgb))
    assert [tuple(t.shape[1:2]) for t in taps] == [(128,), (256,), (512,)]


def test_load_trunk_errors_name_the_file(tmp_path, trunk_path):
    m = create_model("squeeze_colorizer", width=0.125)
    with pytest.raises(FileNotFoundError, match="nope.pth: no such file"):
        load_trunk(m, tmp_path / "nope.pth")
    state = torch.load(trunk_path, map_location="cpu", weights_only=True)
    bad = tmp_path / "bad.pth"
    torch.save({**state, "head.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match=r"bad.pth: not a torchvision squeezenet1_1 .*head.weight"):
        load_trunk(m, bad)
    short = tmp_path / "short.pth"
    torch.save({k: v for k, v in state.items() if k != "features.0.bias"}, short)
    with pytest.raises(ValueError, match=r"short.pth: missing keys \['0.bias'\]"):
        load_trunk(m, short)


class _Photos(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {"rgb": self.items[i], "id": str(i), "label": None}


@pytest.fixture(scope="module")
def photos(shared_file):
    return torch.stack([_photo(shared_file, f"kodim{i:02d}.png", 64) for i in (3, 5, 14, 23)])


def _task(photos, trunk_path, **kw):
    return ColorizationTask(_Photos(list(photos)), model="squeeze_colorizer", width=0.25, trunk=str(trunk_path), **kw)


def test_gradients_reach_the_trunk(photos, trunk_path):
    task = _task(photos, trunk_path)
    model = task.build_model()
    loss, _ = task.loss(model, {"rgb": photos})
    loss.backward()
    for name, p in model.trunk.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_trunk_has_its_own_learning_rate(photos, trunk_path):
    task = _task(photos, trunk_path, trunk_lr_mult=0.1)
    model = task.build_model()
    groups = task.param_groups(model, 1e-3)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.trunk.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(_task(photos, trunk_path).param_groups(model, 1e-3)) == 1  # mult 1: one group, as for eccv16
    assert task.params()["model"] == "squeeze_colorizer" and task.params()["trunk_lr_mult"] == 0.1
    eccv = ColorizationTask(_Photos(list(photos)), width=0.125)
    assert not {"model", "trunk", "trunk_lr_mult"} & set(eccv.params())  # eccv16 runs keep their fingerprints
    with pytest.raises(ValueError, match="has no pretrained trunk"):
        ColorizationTask(_Photos(list(photos)), width=0.125, trunk=str(trunk_path)).build_model()


def test_a_few_steps_lower_the_loss_on_real_photos(photos, trunk_path):
    torch.manual_seed(0)
    task = _task(photos, trunk_path)
    model = task.build_model().train()
    opt = torch.optim.Adam(task.param_groups(model, 1e-3))
    losses = []
    for _ in range(12):
        loss, _ = task.loss(model, {"rgb": photos})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_weights_round_trip(tmp_path, photos):
    m = create_model("squeeze_colorizer", width=0.25, contract={"T": 0.5}).eval()
    for mod in m.modules():  # non-trivial BatchNorm statistics, so the buffers must be saved too
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    x = _norm_light(photos)
    with torch.no_grad():
        ref = m(x)
        digest = save_weights(m, tmp_path / "m.safetensors")
        back = load_weights(tmp_path / "m.safetensors", expected_sha256=digest)
        assert back.config == m.config and back.config["contract"]["T"] == 0.5
        assert torch.equal(back(x), ref)
        save_weights(m, tmp_path / "h.safetensors", dtype=torch.float16)
        half = load_weights(tmp_path / "h.safetensors")
        assert (half(x) - ref).abs().max() < 0.05 * ref.abs().max()
