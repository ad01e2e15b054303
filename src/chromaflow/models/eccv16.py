"""The automatic-colorization network of thesis ch. 2 (Zhang et al., ECCV 2016, the released model).

Eight conv blocks, no pooling; resolution changes by stride-2 convs (conv1-3) and one stride-2
transposed conv (conv8), so the output is at H/4::

    block  convs (3x3, ReLU after each)          out ch  out res   then
    conv1  1->64, 64->64 s2                         64    H/2      BN
    conv2  64->128, 128->128 s2                    128    H/4      BN
    conv3  128->256, 256->256, 256->256 s2         256    H/8      BN
    conv4  256->512, 2x 512->512                   512    H/8      BN
    conv5  3x 512->512, dilation 2 (padding 2)     512    H/8      BN
    conv6  3x 512->512, dilation 2 (padding 2)     512    H/8      BN
    conv7  3x 512->512                             512    H/8      BN
    conv8  ConvT 512->256 k4 s2 p1, 2x 256->256    256    H/4      (no BN)
    head   1x1 256->313 (class) | 1x1 256->2 (regression, ab / ab_norm)

All convs have a bias. Width 1 has 32.2M parameters (class head); ``width`` scales every channel
count except the head's outputs (width 1/4: ~2.0M).

Temperature: the original Caffe model multiplies the class logits by a fixed 2.606 (= 1/0.38) before
its softmax (layer ``class8_313_rh``), i.e. it bakes the annealed-mean temperature T into the
network; the PyTorch port of the released model omits that scale. This module returns raw logits
and the temperature is applied explicitly at decode time (:func:`chromaflow.color.decode_ab`, with
the ``T`` of the model's contract).

    >>> import torch
    >>> from chromaflow.models import create_model
    >>> net = create_model("eccv16", width=0.25).eval()
    >>> net(torch.zeros(1, 1, 64, 64)).shape
    torch.Size([1, 313, 16, 16])
"""

from __future__ import annotations

import torch
from torch import nn

from chromaflow import color
from chromaflow.color.constants import Q
from chromaflow.models.inference import colorization_description
from chromaflow.models.registry import register_description, register_model

HEADS = ("class", "regression")
FEATURE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")  # the blocks transfer evaluation probes
SERVED_SIZE = 64  # network input side as served (the shipped Tiny-ImageNet model's scale; serving/model-config.yaml)


def _block(c_in: int, c_out: int, n: int, *, stride_last: int = 1, dilation: int = 1, bn: bool = True) -> nn.Sequential:
    """``n`` 3x3 conv+ReLU layers (the last with ``stride_last``), then BatchNorm if ``bn``."""
    layers: list[nn.Module] = []
    for i in range(n):
        stride = stride_last if i == n - 1 else 1
        layers += [
            nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, stride=stride, padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
        ]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers)


class ECCV16(nn.Module):
    """L -> distribution over the Q ab bins (class head) or ab (regression head), at H/4.

    Args:
        width: channel multiplier (1.0 = the thesis's network).
        head: ``"class"`` -> ``forward`` returns logits ``(B, Q, H/4, W/4)``;
            ``"regression"`` -> ``(B, 2, H/4, W/4)``, ab / ab_norm (the L2 rows of Table 2.1).

    Input: ``light (B, 1, H, W)``, L normalized as ``(L - l_cent) / l_norm`` (L in [0, 100] -> [-0.5, 0.5]).
    """

    def __init__(self, width: float = 1.0, head: str = "class") -> None:
        super().__init__()
        if not width > 0:
            raise ValueError(f"eccv16: width must be > 0, got {width}")
        if head not in HEADS:
            raise ValueError(f"eccv16: head must be one of {HEADS}, got {head!r}")

        def c(n: int) -> int:
            return max(1, round(n * width))

        self.head_kind = head
        self.conv1 = _block(1, c(64), 2, stride_last=2)
        self.conv2 = _block(c(64), c(128), 2, stride_last=2)
        self.conv3 = _block(c(128), c(256), 3, stride_last=2)
        self.conv4 = _block(c(256), c(512), 3)
        self.conv5 = _block(c(512), c(512), 3, dilation=2)
        self.conv6 = _block(c(512), c(512), 3, dilation=2)
        self.conv7 = _block(c(512), c(512), 3)
        self.conv8 = nn.Sequential(
            nn.ConvTranspose2d(c(512), c(256), 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            *_block(c(256), c(256), 2, bn=False),
        )
        self.head = nn.Conv2d(c(256), Q if head == "class" else 2, 1)

    def features(self, light: torch.Tensor) -> torch.Tensor:
        """``light (B, 1, H, W)`` normalized L -> conv8 features ``(B, C8, H/4, W/4)``."""
        if light.ndim != 4 or light.shape[1] != 1:
            raise ValueError(f"eccv16: expected normalized L of shape (B, 1, H, W), got {tuple(light.shape)}")
        x = self.conv1(light)
        for block in (self.conv2, self.conv3, self.conv4, self.conv5, self.conv6, self.conv7, self.conv8):
            x = block(x)
        return x

    def forward_features(self, light: torch.Tensor) -> dict[str, torch.Tensor]:
        """``light (B, 1, H, W)`` normalized L -> ``{conv1..conv5: (B, C, h, w)}`` (each block's output)."""
        out, x = {}, light
        for name in FEATURE_LAYERS:
            x = out[name] = getattr(self, name)(x)
        return out

    def forward(self, light: torch.Tensor) -> torch.Tensor:
        """``light (B, 1, H, W)`` normalized L -> logits ``(B, Q, H/4, W/4)`` or ab/ab_norm ``(B, 2, H/4, W/4)``."""
        return self.head(self.features(light))


@register_model
def eccv16(width: float = 1.0, head: str = "class") -> ECCV16:
    """Zhang et al. ECCV16 colorization network (thesis ch. 2); see :class:`ECCV16`."""
    return ECCV16(width=width, head=head)


def rgb_features(model: ECCV16, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
    """``rgb (B, 3, H, W)`` uint8 (or float in [0, 1]) -> :meth:`ECCV16.forward_features` of its normalized L."""
    c = model.config["contract"]
    return model.forward_features((color.rgb_to_lab(rgb)[:, :1] - c["l_cent"]) / c["l_norm"])


register_description(
    "eccv16",
    colorization_description(SERVED_SIZE, feature_layers=FEATURE_LAYERS, forward_features=rgb_features),
)
