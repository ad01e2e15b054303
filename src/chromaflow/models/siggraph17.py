"""The user-guided colorization network of thesis ch. 3 (Zhang et al., SIGGRAPH 2017).

A U-Net on ``[L, ab hints, hint mask]``: conv1-4 halve the resolution and double the channels,
conv5-6 are dilated (factor 2), conv7 keeps the bottleneck, conv8-10 upsample with symmetric
shortcuts (conv3->conv8, conv2->conv9, conv1->conv10). One forward pass returns both outputs::

    block   convs (3x3, ReLU after each)             out ch  out res   then
    conv1   4->64, 64->64                              64    H        BN   (input: L, ab, mask)
    conv2   64->128, 128->128                         128    H/2      BN   (input subsampled [::2])
    conv3   128->256, 2x 256->256                     256    H/4      BN
    conv4   256->512, 2x 512->512                     512    H/8      BN   (+ global hints, summed)
    conv5/6 3x 512->512, dilation 2                   512    H/8      BN
    conv7   3x 512->512                               512    H/8      BN
    conv8   ConvT 512->256 k4 s2 + conv3 shortcut, ReLU, 2x 256->256    256  H/4  BN
    conv9   ConvT 256->128 k4 s2 + conv2 shortcut, ReLU, 128->128       128  H/2  BN
    conv10  ConvT 128->128 k4 s2 + conv1 shortcut, ReLU, 128->128, LeakyReLU(0.2)   128  H
    out     1x1 128->2, tanh  -> ab / ab_norm at H
    dist    1x1 256->313 on conv8 (detached: the side task does not train the main branch) at H/4

Global hints (ch. 3.3.3): ``[histogram (Q), B_hist, saturation, B_sat]`` -> four 1x1 conv+ReLU
layers of 512 channels, broadcast over conv4's grid and added to it.

The released PyTorch port computed the decoder tail twice to return colour and distribution; here
one pass returns both (:class:`GuidedOutput`).

Inputs follow the hint contract of ``model.config["contract"]``: ``L`` as ``(L - l_cent) / l_norm``,
hint ab as ``ab / ab_norm``, mask as ``mask - mask_cent``.

    >>> import torch
    >>> from chromaflow.models import create_model
    >>> net = create_model("siggraph17", width=0.25).eval()
    >>> out = net(torch.zeros(1, 1, 64, 64), torch.zeros(1, 2, 64, 64), torch.zeros(1, 1, 64, 64) - 0.5)
    >>> out.ab.shape, out.logits.shape
    (torch.Size([1, 2, 64, 64]), torch.Size([1, 313, 16, 16]))
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from chromaflow import color
from chromaflow.color.constants import Q
from chromaflow.models.eccv16 import FEATURE_LAYERS, _block
from chromaflow.models.guided import guided_ab, guided_batch
from chromaflow.models.inference import image_example, to_uint8_hwc
from chromaflow.models.registry import ModelDescription, register_description, register_model

__all__ = ["GLOBAL_DIM", "SIGGRAPH17", "GuidedOutput", "guided_ab", "siggraph17"]

GLOBAL_DIM = Q + 3  # histogram (Q) + B_hist + saturation + B_sat
SERVED_SIZE = 64  # network input side as served (a multiple of 8; serving/guided-model-config.yaml)


class GuidedOutput(NamedTuple):
    """``ab (B, 2, H, W)`` in [-1, 1] (times ab_norm gives ab); ``logits (B, Q, H/4, W/4)``."""

    ab: torch.Tensor
    logits: torch.Tensor


class SIGGRAPH17(nn.Module):
    """L + local hints (+ optional global hints) -> ab and a distribution over the Q bins.

    Args:
        width: channel multiplier (1.0 = the thesis's network).
        global_hints: build the global-hints branch (ch. 3.3.3).
    """

    def __init__(self, width: float = 1.0, global_hints: bool = True) -> None:
        super().__init__()
        if not width > 0:
            raise ValueError(f"siggraph17: width must be > 0, got {width}")

        def c(n: int) -> int:
            return max(1, round(n * width))

        self.conv1 = _block(4, c(64), 2)
        self.conv2 = _block(c(64), c(128), 2)
        self.conv3 = _block(c(128), c(256), 3)
        self.conv4 = _block(c(256), c(512), 3)
        self.conv5 = _block(c(512), c(512), 3, dilation=2)
        self.conv6 = _block(c(512), c(512), 3, dilation=2)
        self.conv7 = _block(c(512), c(512), 3)
        self.up8 = nn.ConvTranspose2d(c(512), c(256), 4, stride=2, padding=1)
        self.short3_8 = nn.Conv2d(c(256), c(256), 3, padding=1)
        self.conv8 = _block(c(256), c(256), 2)
        self.up9 = nn.ConvTranspose2d(c(256), c(128), 4, stride=2, padding=1)
        self.short2_9 = nn.Conv2d(c(128), c(128), 3, padding=1)
        self.conv9 = _block(c(128), c(128), 1)
        self.up10 = nn.ConvTranspose2d(c(128), c(128), 4, stride=2, padding=1)
        self.short1_10 = nn.Conv2d(c(64), c(128), 3, padding=1)
        self.conv10 = nn.Sequential(nn.Conv2d(c(128), c(128), 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        self.out = nn.Sequential(nn.Conv2d(c(128), 2, 1), nn.Tanh())
        self.dist = nn.Conv2d(c(256), Q, 1)
        self.global_branch = (
            nn.Sequential(
                nn.Conv2d(GLOBAL_DIM, c(512), 1),
                nn.ReLU(inplace=True),
                *[m for _ in range(3) for m in (nn.Conv2d(c(512), c(512), 1), nn.ReLU(inplace=True))],
            )
            if global_hints
            else None
        )

    def _encode(self, l: torch.Tensor, hint_ab: torch.Tensor, hint_mask: torch.Tensor) -> list[torch.Tensor]:
        """conv1..conv4 outputs (full, 1/2, 1/4, 1/8 resolution) before the global hints."""
        c1 = self.conv1(torch.cat([l, hint_ab, hint_mask], dim=1))
        c2 = self.conv2(c1[:, :, ::2, ::2])
        c3 = self.conv3(c2[:, :, ::2, ::2])
        return [c1, c2, c3, self.conv4(c3[:, :, ::2, ::2])]

    def forward_features(
        self, l: torch.Tensor, hint_ab: torch.Tensor, hint_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Normalized inputs as :meth:`forward` -> ``{conv1..conv5: (B, C, h, w)}`` (no global hints)."""
        feats = dict(zip(FEATURE_LAYERS, self._encode(l, hint_ab, hint_mask), strict=False))
        feats["conv5"] = self.conv5(feats["conv4"])
        return feats

    def forward(
        self, l: torch.Tensor, hint_ab: torch.Tensor, hint_mask: torch.Tensor, global_hint: torch.Tensor | None = None
    ) -> GuidedOutput:
        """``l (B,1,H,W)``, ``hint_ab (B,2,H,W)``, ``hint_mask (B,1,H,W)``, ``global_hint (B, Q+3)``.

        H and W must be multiples of 8 (three halvings).
        """
        b, _, h, w = l.shape
        if l.ndim != 4 or l.shape[1] != 1 or hint_ab.shape != (b, 2, h, w) or hint_mask.shape != (b, 1, h, w):
            raise ValueError(
                "siggraph17: expected l (B,1,H,W), hint_ab (B,2,H,W), hint_mask (B,1,H,W); got "
                f"{tuple(l.shape)}, {tuple(hint_ab.shape)}, {tuple(hint_mask.shape)}"
            )
        if h % 8 or w % 8:
            raise ValueError(f"siggraph17: H and W must be multiples of 8, got {h}x{w}")
        c1, c2, c3, c4 = self._encode(l, hint_ab, hint_mask)
        if global_hint is not None:
            if self.global_branch is None:
                raise ValueError("siggraph17: this model was built without the global-hints branch")
            if global_hint.shape != (b, GLOBAL_DIM):
                raise ValueError(f"siggraph17: global_hint must be (B, {GLOBAL_DIM}), got {tuple(global_hint.shape)}")
            c4 = c4 + self.global_branch(global_hint[:, :, None, None])
        c7 = self.conv7(self.conv6(self.conv5(c4)))
        c8 = self.conv8(torch.relu(self.up8(c7) + self.short3_8(c3)))
        c9 = self.conv9(torch.relu(self.up9(c8) + self.short2_9(c2)))
        c10 = self.conv10(torch.relu(self.up10(c9) + self.short1_10(c1)))
        return GuidedOutput(ab=self.out(c10), logits=self.dist(c8.detach()))


@register_model
def siggraph17(width: float = 1.0, global_hints: bool = True) -> SIGGRAPH17:
    """Zhang et al. SIGGRAPH17 user-guided colorization network (thesis ch. 3); see :class:`SIGGRAPH17`."""
    return SIGGRAPH17(width=width, global_hints=global_hints)


def rgb_features(model: SIGGRAPH17, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
    """``rgb (B, 3, H, W)`` uint8 (or float in [0, 1]) -> :meth:`SIGGRAPH17.forward_features` with no hints
    (ab 0, mask 0), in the model's contract."""
    c = model.config["contract"]
    lum = (color.rgb_to_lab(rgb)[:, :1] - c["l_cent"]) / c["l_norm"]
    b, _, h, w = lum.shape
    return model.forward_features(lum, lum.new_zeros(b, 2, h, w), lum.new_zeros(b, 1, h, w) - c["mask_cent"])


register_description(
    "siggraph17",
    ModelDescription(
        kind="guided",
        predict=guided_batch,
        to_output=lambda result: to_uint8_hwc(result.rgb),
        example=image_example,
        served_size=SERVED_SIZE,
        feature_layers=FEATURE_LAYERS,
        forward_features=rgb_features,
        handler="guided",
    ),
)
