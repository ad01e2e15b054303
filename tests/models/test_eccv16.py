"""The ch. 2 network: registry, the architecture table (param count 32.2M), shapes, heads, input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from chromaflow.color.constants import LAB_CONTRACT, Q
from chromaflow.models import ECCV16, create_model, list_models

# The released model's layer table (Zhang et al. ECCV16 / thesis Fig. 2.2): (block, c_in, c_out, kernel) per conv.
TABLE = (
    [("conv1", 1, 64, 3), ("conv1", 64, 64, 3)]
    + [("conv2", 64, 128, 3), ("conv2", 128, 128, 3)]
    + [("conv3", 128, 256, 3)] + [("conv3", 256, 256, 3)] * 2
    + [("conv4", 256, 512, 3)] + [("conv4", 512, 512, 3)] * 2
    + [(b, 512, 512, 3) for b in ("conv5", "conv6", "conv7") for _ in range(3)]
    + [("conv8", 512, 256, 4)] + [("conv8", 256, 256, 3)] * 2
)  # fmt: skip
BN = [64, 128, 256, 512, 512, 512, 512]  # one BatchNorm (weight + bias) after conv1..conv7


def table_params(head_out: int = Q) -> int:
    convs = sum(cin * cout * k * k + cout for _, cin, cout, k in TABLE)
    return convs + 2 * sum(BN) + 256 * head_out + head_out


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registry():
    assert "eccv16" in list_models()
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        create_model("nope")
    m = create_model("eccv16", width=0.125)
    assert isinstance(m, ECCV16)
    assert m.config == {"name": "eccv16", "kwargs": {"width": 0.125, "head": "class"}, "contract": LAB_CONTRACT}
    m2 = create_model("eccv16", width=0.125, contract={"T": 0.5})
    assert m2.config["contract"] == {**LAB_CONTRACT, "T": 0.5}
    with pytest.raises(ValueError, match="unknown key"):
        create_model("eccv16", contract={"temperature": 0.5})
    with pytest.raises(TypeError, match="accepted arguments"):
        create_model("eccv16", depth=3)


def test_param_count_matches_architecture_table():
    full = create_model("eccv16")
    assert n_params(full) == table_params() == 32_235_385
    assert round(n_params(full) / 1e6, 1) == 32.2  # the known count of the released model
    assert n_params(create_model("eccv16", head="regression")) == table_params(head_out=2)
    assert round(n_params(create_model("eccv16", width=0.25)) / 1e6, 1) == 2.0


def test_layer_structure():
    m = create_model("eccv16", width=0.125)
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d | nn.ConvTranspose2d)]
    assert len(convs) == len(TABLE) + 1  # + the 1x1 head
    assert all(c.bias is not None for c in convs)
    for block in (m.conv1, m.conv2, m.conv3):
        cs = [c for c in block if isinstance(c, nn.Conv2d)]
        assert [c.stride[0] for c in cs] == [1] * (len(cs) - 1) + [2]
        assert isinstance(block[-1], nn.BatchNorm2d) and isinstance(block[-2], nn.ReLU)
    for block in (m.conv5, m.conv6):
        assert all(c.dilation == (2, 2) and c.padding == (2, 2) for c in block if isinstance(c, nn.Conv2d))
    t = m.conv8[0]
    assert isinstance(t, nn.ConvTranspose2d) and (t.kernel_size, t.stride, t.padding) == ((4, 4), (2, 2), (1, 1))
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.conv8)
    assert m.head.kernel_size == (1, 1) and m.head.out_channels == Q


@pytest.mark.parametrize(("head", "c"), [("class", Q), ("regression", 2)])
@pytest.mark.parametrize("hw", [(48, 80), (37, 53)])
def test_output_shape(head, c, hw):
    m = create_model("eccv16", width=0.125, head=head).eval()
    with torch.no_grad():
        y = m(torch.rand(2, 1, *hw) - 0.5)
    half = lambda s: (s + 1) // 2  # noqa: E731  (a stride-2, padding-1 3x3 conv)
    exp = [2 * half(half(half(s))) for s in hw]  # three stride-2 convs, then one x2 transposed conv
    assert y.shape == (2, c, *exp)
    if hw[0] % 8 == 0:
        assert exp[0] == hw[0] // 4


def test_bad_inputs():
    m = create_model("eccv16", width=0.125)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        m(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="head"):
        create_model("eccv16", head="gan")
    with pytest.raises(ValueError, match="width"):
        create_model("eccv16", width=0)
