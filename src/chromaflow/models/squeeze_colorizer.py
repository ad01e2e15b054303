"""A colorizer on an ImageNet-pretrained SqueezeNet v1.1 trunk with a U-Net decoder (beyond the thesis).

Larsson et al. (2016) colorize from hypercolumns of an ImageNet-pretrained network; this is the same idea at
the size this project ships (< 10 MB in fp16). Same interface as :mod:`.eccv16`: normalized L in, logits over
the Q = 313 ab bins (class head) or ab / ab_norm (regression head) out, so the colorization task (soft
encoding, rebalancing), the annealed-mean decode, evaluation and serving use it unchanged. Its grid is
H/4 like eccv16's; the gain is that it is meant to run at 128-256 px input instead of eccv16's 64 (grid 32-64
instead of 16) and that its features come from a network that has seen ImageNet's 1.2M labelled photos.

Trunk input: the gray image of the given L (``lab_to_rgb`` of ``(L, 0, 0)``: the sRGB gray with that
lightness, three equal channels), normalized the torchvision way (ImageNet mean/std). Trunk = torchvision's
``squeezenet1_1().features`` (same layer names, so its state dict loads strictly; torchvision itself is not
needed). Decoder (``C = round(256 * width)``), every conv followed by BatchNorm + ReLU::

    trunk tap         res    ch    decoder
    features.12       H/16   512   1x1 -> C
    features.7        H/8    256   up(x2, bilinear) ++ tap -> 3x3 C -> 3x3 C
    features.4        H/4    128   up ++ tap -> 3x3 C -> 3x3 C -> head 1x1 (Q | 2)

The output is resized (bilinear) to exactly ``(ceil(H/4), ceil(W/4))`` (the trunk's unpadded stride-2 conv
and ceil-mode pools give H/4-ish grids that are off by one for most sizes). Width 1: 4.18M parameters
(trunk 0.72M), 8.0 MiB in fp16; width 0.75: 2.87M.

Pretrained weights: :func:`load_trunk` (``model.load_trunk(path)``) reads the torchvision-keyed SqueezeNet
v1.1 file with ``torch.load(weights_only=True)`` and loads its ``features.*`` strictly (its ``classifier.*`` is
not used). Without it the trunk is randomly initialized (tests; and :func:`chromaflow.models.load_weights`,
which overwrites every tensor).

    >>> import torch
    >>> from chromaflow.models import create_model
    >>> net = create_model("squeeze_colorizer", width=0.25).eval()
    >>> net(torch.zeros(1, 1, 128, 100)).shape
    torch.Size([1, 313, 32, 25])
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from chromaflow import color
from chromaflow.color.constants import LAB_CONTRACT, Q
from chromaflow.models.inference import colorization_description
from chromaflow.models.registry import register_description, register_model

HEADS = ("class", "regression")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's input normalization of the trunk (not the Lab contract)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIDE = 32  # smaller inputs leave the trunk's last pool with nothing to pool
TAPS = (4, 7, 12)  # indices in ``features`` of the H/4, H/8, H/16 taps
TRUNK_PREFIX = "features."  # key prefix of the trunk in torchvision's squeezenet1_1 state dict
SERVED_SIZE = 128  # network input side as served: its training scale (64 px Tiny-ImageNet upscaled to 128)


class Fire(nn.Module):
    """SqueezeNet's Fire module (torchvision's layer names): 1x1 squeeze, then 1x1 and 3x3 expands concatenated."""

    def __init__(self, c_in: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


def squeezenet1_1_features() -> nn.Sequential:
    """torchvision's ``squeezenet1_1().features`` (13 modules; output 512 ch at about H/16)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(64, 16, 64, 64),
        Fire(128, 16, 64, 64),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(128, 32, 128, 128),
        Fire(256, 32, 128, 128),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(256, 48, 192, 192),
        Fire(384, 48, 192, 192),
        Fire(384, 64, 256, 256),
        Fire(512, 64, 256, 256),
    )


def _cbr(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class SqueezeColorizer(nn.Module):
    """Normalized L ``(B, 1, H, W)`` -> logits ``(B, Q, ceil(H/4), ceil(W/4))`` or ab/ab_norm ``(B, 2, ...)``.

    Args:
        width: decoder channel multiplier (1.0 = 256 channels); the trunk is fixed.
        head: ``"class"`` (313-bin logits) or ``"regression"`` (ab / ab_norm).

    Attributes: ``trunk`` (the SqueezeNet features, torchvision layout) and ``decoder`` modules, so an
    optimizer can give the pretrained trunk its own learning rate.
    """

    def __init__(self, width: float = 1.0, head: str = "class") -> None:
        super().__init__()
        if not width > 0:
            raise ValueError(f"squeeze_colorizer: width must be > 0, got {width}")
        if head not in HEADS:
            raise ValueError(f"squeeze_colorizer: head must be one of {HEADS}, got {head!r}")
        c = max(1, round(256 * width))
        self.head_kind = head
        self.trunk = squeezenet1_1_features()
        self.decoder = nn.ModuleDict(
            {
                "lat16": _cbr(512, c, 1),
                "up8": nn.Sequential(_cbr(c + 256, c, 3), _cbr(c, c, 3)),
                "up4": nn.Sequential(_cbr(c + 128, c, 3), _cbr(c, c, 3)),
                "head": nn.Conv2d(c, Q if head == "class" else 2, 1),
            }
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def trunk_input(self, light: torch.Tensor) -> torch.Tensor:
        """Normalized L ``(B, 1, H, W)`` -> the trunk's input ``(B, 3, H, W)``: gray sRGB, ImageNet-normalized."""
        if light.ndim != 4 or light.shape[1] != 1:
            raise ValueError(
                f"squeeze_colorizer: expected normalized L of shape (B, 1, H, W), got {tuple(light.shape)}"
            )
        if min(light.shape[-2:]) < MIN_SIDE:
            raise ValueError(f"squeeze_colorizer: input sides must be >= {MIN_SIDE} px, got {tuple(light.shape[-2:])}")
        contract = (getattr(self, "config", None) or {}).get("contract", LAB_CONTRACT)
        with torch.autocast(light.device.type, enabled=False):
            L = light.float() * contract["l_norm"] + contract["l_cent"]  # [0, 100]
            gray = color.lab_to_rgb(torch.cat([L, torch.zeros_like(L), torch.zeros_like(L)], 1))  # (B, 3, H, W)
            x = (gray - self.mean) / self.std
        return x.to(light.dtype)

    def taps(self, light: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's features at :data:`TAPS`: ``[(B, 128, ~H/4, ~W/4), (B, 256, ~H/8, ..), (B, 512, ~H/16, ..)]``."""
        x, out = self.trunk_input(light), []
        for i, layer in enumerate(self.trunk):
            x = layer(x)
            if i in TAPS:
                out.append(x)
        return out

    def forward(self, light: torch.Tensor) -> torch.Tensor:
        f4, f8, f16 = self.taps(light)
        d = self.decoder
        x = d["lat16"](f16)
        x = d["up8"](torch.cat([_resize(x, f8.shape[-2:]), f8], 1))
        x = d["up4"](torch.cat([_resize(x, f4.shape[-2:]), f4], 1))
        h, w = light.shape[-2:]
        return _resize(d["head"](x), (math.ceil(h / 4), math.ceil(w / 4)))

    def load_trunk(self, path: str | os.PathLike) -> None:
        """Load the pretrained trunk from ``path`` (see :func:`load_trunk`)."""
        load_trunk(self, path)


def _resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return (
        x
        if tuple(x.shape[-2:]) == tuple(size)
        else F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    )


def trunk_state(state: Mapping[str, object], source: str) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a torchvision ``squeezenet1_1`` state dict, keyed as ``trunk``'s state dict.

    Raises ``ValueError`` naming ``source`` when it is not a dict of tensors or holds keys other than
    ``features.*`` / ``classifier.*`` (not a SqueezeNet state dict).
    """
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"load_trunk: {source}: expected a state dict of tensors (torchvision squeezenet1_1)")
    odd = sorted(k for k in state if not (k.startswith(TRUNK_PREFIX) or k.startswith("classifier.")))
    if odd:
        raise ValueError(
            f"load_trunk: {source}: not a torchvision squeezenet1_1 state dict (unexpected keys {odd[:5]})"
        )
    return {k[len(TRUNK_PREFIX) :]: v for k, v in state.items() if k.startswith(TRUNK_PREFIX)}  # type: ignore[misc]


def load_trunk(model: SqueezeColorizer, path: str | os.PathLike) -> None:
    """Load the ImageNet SqueezeNet v1.1 ``features`` at ``path`` into ``model.trunk``, strictly.

    ``path``: a torchvision-keyed state dict (``.pth``), read with ``torch.load(weights_only=True)`` (never
    unpickles code). ``FileNotFoundError`` / ``ValueError`` name the file and the reason (missing,
    unexpected or mis-shaped keys).
    """
    from chromaflow.models.weights import load_state_strict

    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_trunk: {path}: no such file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    load_state_strict(model.trunk, trunk_state(state, str(path)), source=str(path))


@register_model
def squeeze_colorizer(width: float = 1.0, head: str = "class") -> SqueezeColorizer:
    """SqueezeNet-v1.1-trunk colorizer with a U-Net decoder; see :class:`SqueezeColorizer`."""
    return SqueezeColorizer(width=width, head=head)


register_description("squeeze_colorizer", colorization_description(SERVED_SIZE))
