"""BicycleGAN networks: shapes for several sizes, where z enters G, encoders at non-256 sizes, bad input."""

from __future__ import annotations

import pytest
import torch

from chromaflow.models import create_model, load_weights, save_weights
from chromaflow.models.bicyclegan import ENCODERS, PATHS, WHERE_ADD, Z_DIMS

SMALL = {"num_downs": 5, "width": 0.0625, "input_nc": 1}  # stride 32, 4 base channels: fast on a CPU


@pytest.mark.parametrize("where_add", WHERE_ADD)
@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("size", [(64, 64), (96, 64), (64, 160)])
def test_shapes_for_several_sizes(where_add, encoder, size):
    net = create_model("bicyclegan", where_add=where_add, encoder=encoder, **SMALL).eval()
    a, b = torch.rand(3, 1, *size) * 2 - 1, torch.rand(3, 3, *size) * 2 - 1
    out = net(a, torch.randn(3, 8))
    assert out.shape == (3, 3, *size)
    assert out.abs().max() <= 1  # tanh
    mu, logvar = net.encode(b)
    assert mu.shape == logvar.shape == (3, 8)
    for path in PATHS:
        scores = net.discriminators[path](b)
        assert len(scores) == 2 and all(s.shape[:2] == (3, 1) for s in scores)
        assert scores[1].shape[-1] < scores[0].shape[-1]  # the second scale sees the input at half size


@pytest.mark.parametrize("nz", Z_DIMS)
def test_z_sizes_of_the_thesis(nz):
    net = create_model("bicyclegan", nz=nz, **SMALL).eval()
    assert net(torch.zeros(1, 1, 32, 32), torch.randn(1, nz)).shape == (1, 3, 32, 32)
    assert net.encode(torch.zeros(1, 3, 32, 32))[0].shape == (1, nz)


def _z_input_channels(net) -> list[int]:
    """In-channels of every down-sampling conv of G, outermost first."""
    level, out = net.generator.net, []
    while level is not None:
        out.append(next(m for m in level.down if isinstance(m, torch.nn.Conv2d)).in_channels)
        level = level.sub
    return out


def test_z_enters_the_input_only_or_every_down_conv():
    nz, w = 8, 4
    inp = _z_input_channels(create_model("bicyclegan", where_add="input", **SMALL))
    allz = _z_input_channels(create_model("bicyclegan", where_add="all", **SMALL))
    assert inp == [1 + nz, w, 2 * w, 4 * w, 8 * w]
    assert allz == [1 + nz, w + nz, 2 * w + nz, 4 * w + nz, 8 * w + nz]


@pytest.mark.parametrize("where_add", WHERE_ADD)
def test_output_depends_on_z_and_only_on_its_own_row(where_add):
    net = create_model("bicyclegan", where_add=where_add, dropout=False, **SMALL).eval()
    with torch.no_grad():
        for p in net.parameters():  # the original's 0.02-gain init leaves tiny activations: widen them
            p.mul_(50)
    a = torch.rand(2, 1, 64, 64) * 2 - 1
    z = torch.randn(2, 8)
    z2 = z.clone()
    z2[1] += 1.0
    y, y2 = net(a, z), net(a, z2)
    assert torch.equal(y[0], y2[0])  # instance norm: no mixing across the batch
    assert (y[1] - y2[1]).abs().mean() > 1e-3


def test_encoder_stride_and_size_errors_name_the_size():
    net = create_model("bicyclegan", **SMALL)
    with pytest.raises(ValueError, match=r"input size 48x64 is not divisible by the stride 32"):
        net(torch.zeros(1, 1, 48, 64), torch.zeros(1, 8))
    with pytest.raises(ValueError, match=r"encoder \(resnet\): input size 40x64"):
        net.encode(torch.zeros(1, 3, 40, 64))
    with pytest.raises(ValueError, match=r"z must have shape \(1, 8\), got \(1, 4\)"):
        net(torch.zeros(1, 1, 32, 32), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, H, W\), got \(1, 3, 32, 32\)"):
        net(torch.zeros(1, 3, 32, 32), torch.zeros(1, 8))
    with pytest.raises(ValueError, match=r"discriminator: input size 32x32 is below its minimum side 47"):
        net.discriminators["random"](torch.zeros(1, 3, 32, 32))
    d = net.discriminators["random"].train()  # the smallest side it accepts runs (instance norm needs > 1 pixel)
    assert [s.shape[-1] for s in d(torch.zeros(2, 3, d.min_size, d.min_size))] == [3, 1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"where_add": "middle"}, "where_add must be one of"),
        ({"encoder": "vgg"}, "encoder must be one of"),
        ({"num_downs": 4}, "num_downs must be an int >= 5"),
        ({"nz": 0}, "nz must be a positive int"),
        ({"paths": ["cycle"]}, "paths must be a subset"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model("bicyclegan", **{**SMALL, **kwargs})


def test_without_encoder_or_discriminators():
    net = create_model("bicyclegan", encoder=None, paths=["random"], **SMALL)
    assert net.encoder is None and list(net.discriminators) == ["random"]
    with pytest.raises(ValueError, match="no encoder"):
        net.encode(torch.zeros(1, 3, 32, 32))


def test_full_size_defaults_take_256_and_other_sizes():
    net = create_model("bicyclegan", width=0.0625).eval()  # the thesis's depth (unet_256, E_ResNet 5 blocks)
    assert net.generator.stride == 256
    assert net(torch.zeros(1, 3, 256, 512), torch.zeros(1, 8)).shape == (1, 3, 256, 512)
    assert net.encode(torch.zeros(1, 3, 512, 256))[0].shape == (1, 8)  # the original E took 256 x 256 only


def test_weights_round_trip(tmp_path):
    net = create_model("bicyclegan", where_add="input", encoder="cnn", **SMALL).eval()
    save_weights(net, tmp_path / "m.safetensors")
    back = load_weights(tmp_path / "m.safetensors").eval()
    a, z = torch.rand(1, 1, 32, 32), torch.randn(1, 8)
    assert torch.equal(net(a, z), back(a, z))
