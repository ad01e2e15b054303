"""Split-brain autoencoders (thesis ch. 5): AlexNet-style towers that predict one Lab subset from another.

A model is a list of *towers* (disjoint sub-networks; nothing is shared between them). Each tower reads
a subset of the normalized Lab input (``L``, ``ab`` or ``Lab``), runs conv1..conv5 + fc6/fc7 fully
convolutionally, and predicts a target with its own head. The representation of layer ``convK`` is the
concatenation of the towers' ``convK`` maps (Eq. 5.3, ``F^l = {F_1^l, F_2^l}``): two half-width towers
are exactly the thesis's "groups=2" split of one network (every layer split in half by channels).

Variants (:data:`VARIANTS`, Table 5.4 rows trainable here)::

    variant        towers (input -> target, loss, width share)          Table 5.4 row
    lab_lab        Lab -> Lab reg (1)                                     Lab->Lab
    lab_drop50     Lab (50% input dropout while training) -> Lab reg (1)  Lab(drop50)->Lab
    split_reg_reg  L -> ab reg (1/2) + ab -> L reg (1/2)                  Split-Brain Auto (reg,reg)
    split_cl_cl    L -> ab cl (1/2) + ab -> L cl (1/2)                    Split-Brain Auto (cl,cl)
    l_ab_cl        L -> ab cl (1)                                         L->ab(cl)
    l_ab_reg       L -> ab reg (1)                                        L->ab(reg)
    ab_l_cl        ab -> L cl (1)                                         ab->L(cl)
    ab_l_reg       ab -> L reg (1)                                        ab->L(reg)
    ensemble_l_ab  L -> ab cl (1/2) + L -> ab reg (1/2)                   Ensembled L->ab
    gaussian       Lab tower (1), never trained (Gaussian init)           Gaussian
    labels         Lab -> class labels (1), global average pooled         ImageNet-labels

Targets (``cl``): ab -> the 313 in-gamut bins, one-hot (``color.encode_hard``; the thesis drops the
soft-encoding and rebalancing of ch. 2 here); L in [0, 100] -> 50 bins of size 2. ``reg``: l2 on
``ab / ab_norm`` and ``(L - l_cent) / l_norm`` (Eq. 5.1). Loss code: ``chromaflow.train.tasks.splitbrain``.

Architecture (Table 5.2, fully convolutional, BatchNorm after every conv, no LRN), for ``input_size`` S
and ``width`` w (channels of the whole model; a half tower gets half)::

    layer  C (w=1)  kernel / stride / pad                  S=180 (thesis)  S=64   S=32
    conv1    96     11/4/5 (S>=128), 5/2/2 (S>=48), 5/1/2       45           32     32
    pool1    96     max 3/2/1                                    23           16     16
    conv2   256     5/1/2                                        23           16     16
    pool2   256     max 3/2/1                                    12            8      8
    conv3   384     3/1/1                                        12            8      8
    conv4   384     3/1/1                                        12            8      8
    conv5   256     3/1/1                                        12            8      8
    pool5   256     max 3/1/1                                    12            8      8
    fc6    fc_width 3/1/2 dilation 2 (thesis: 6, dil. 2, 4096)   12            8      8
    fc7    fc_width 1                                            12            8      8
    fc8    head     1 (313 | 2 | 50 | 1 | 3 channels)            12            8      8

How this differs from the 227/180 px original: (1) conv1's stride and kernel shrink with the input so
conv3-5 keep an 8x8 map on 64 px (Tiny-ImageNet) and 32 px (CIFAR-10) images instead of 2x2 / 1x1
(stride 2, kernel 5 at 48-127 px; stride 1, kernel 5 below 48 px; the thesis's 11/4 from 128 px up);
(2) fc6 is a 3x3 kernel with dilation 2 (receptive field 5 on the 8x8 map) instead of 6x6 on 12x12,
and fc6/fc7 have ``fc_width`` channels (default 512) instead of 4096; (3) ``width`` scales the
conv channels (default 0.5: 48/128/192/192/128 for the whole model); (4) the two halves are two
separate towers rather than one groups=2 network, which is the same computation except that conv1 can
take 1 (L) and 2 (ab) input channels and the heads can differ in size; (5) BatchNorm is kept at
evaluation time (not folded into the convs; numerically the same function); (6) the ``labels`` model
averages fc8 over space to get class scores (Table 5.3's fc6/fc7 are not used by the probes).
Weights are Gaussian (He-normal, fan-in) at initialization, biases zero.

Input: normalized Lab ``(B, 3, S, S)``: ``(L - l_cent) / l_norm`` and ``ab / ab_norm``
(:func:`normalize_lab`). Output of ``forward``: list of per-tower predictions ``(B, C_t, S/8, S/8)``
(``labels``: ``(B, num_classes)``).

    >>> import torch
    >>> from chromaflow.models import create_model
    >>> import chromaflow.models.splitbrain  # registers "splitbrain" (until it is in registry._BUILTIN)
    >>> net = create_model("splitbrain", variant="split_cl_cl", input_size=64).eval()
    >>> [o.shape for o in net(torch.zeros(2, 3, 64, 64))]
    [torch.Size([2, 313, 8, 8]), torch.Size([2, 50, 8, 8])]
    >>> {k: tuple(v.shape) for k, v in net.layer_features(torch.zeros(2, 3, 64, 64)).items()}["conv5"]
    (2, 128, 8, 8)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from chromaflow import color
from chromaflow.color.constants import AB_NORM, L_CENT, L_NORM, Q
from chromaflow.models.inference import image_example
from chromaflow.models.registry import ModelDescription, register_description, register_model

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
CHANNELS = (96, 256, 384, 384, 256)  # AlexNet conv1..conv5 at width 1
L_BINS = 50  # ab->L(cl): L in [0, 100] quantized into 50 bins of size 2
L_BIN_SIZE = 2.0
INPUTS = {"L": (0, 1), "ab": (1, 3), "Lab": (0, 3)}  # channel slice of the normalized Lab input
HEAD_CHANNELS = {("ab", "cl"): Q, ("ab", "reg"): 2, ("L", "cl"): L_BINS, ("L", "reg"): 1, ("Lab", "reg"): 3}


@dataclass(frozen=True)
class TowerSpec:
    """One sub-network: reads ``source`` channels, predicts ``target`` with loss ``loss`` ("cl" | "reg")."""

    source: str
    target: str  # "ab" | "L" | "Lab" | "labels"
    loss: str
    share: float  # fraction of the model's channels this tower gets


VARIANTS: dict[str, tuple[TowerSpec, ...]] = {
    "lab_lab": (TowerSpec("Lab", "Lab", "reg", 1.0),),
    "lab_drop50": (TowerSpec("Lab", "Lab", "reg", 1.0),),
    "split_reg_reg": (TowerSpec("L", "ab", "reg", 0.5), TowerSpec("ab", "L", "reg", 0.5)),
    "split_cl_cl": (TowerSpec("L", "ab", "cl", 0.5), TowerSpec("ab", "L", "cl", 0.5)),
    "l_ab_cl": (TowerSpec("L", "ab", "cl", 1.0),),
    "l_ab_reg": (TowerSpec("L", "ab", "reg", 1.0),),
    "ab_l_cl": (TowerSpec("ab", "L", "cl", 1.0),),
    "ab_l_reg": (TowerSpec("ab", "L", "reg", 1.0),),
    "ensemble_l_ab": (TowerSpec("L", "ab", "cl", 0.5), TowerSpec("L", "ab", "reg", 0.5)),
    "gaussian": (TowerSpec("Lab", "Lab", "reg", 1.0),),
    "labels": (TowerSpec("Lab", "labels", "cl", 1.0),),
}
# Row names of Table 5.4 / 5.5
TABLE_NAMES = {
    "lab_lab": "Lab→Lab",
    "lab_drop50": "Lab(drop50)→Lab",
    "split_reg_reg": "Split-Brain Auto (reg,reg)",
    "split_cl_cl": "Split-Brain Auto (cl,cl)",
    "l_ab_cl": "L→ab(cl)",
    "l_ab_reg": "L→ab(reg)",
    "ab_l_cl": "ab→L(cl)",
    "ab_l_reg": "ab→L(reg)",
    "ensemble_l_ab": "Ensembled L→ab",
    "gaussian": "Gaussian",
    "labels": "labels (supervised)",
}
INPUT_DROPOUT = {"lab_drop50": 0.5}


def conv1_geometry(input_size: int) -> tuple[int, int, int]:
    """``(kernel, stride, padding)`` of conv1 for square inputs of ``input_size`` px (see module doc)."""
    if input_size >= 128:
        return 11, 4, 5
    if input_size >= 48:
        return 5, 2, 2
    return 5, 1, 2


def normalize_lab(lab: torch.Tensor) -> torch.Tensor:
    """Lab ``(B, 3, H, W)`` (L in [0, 100], ab in about [-110, 110]) -> the network input
    ``[(L - l_cent) / l_norm, a / ab_norm, b / ab_norm]`` (about [-0.5, 0.5] and [-1, 1])."""
    if lab.ndim != 4 or lab.shape[1] != 3:
        raise ValueError(f"normalize_lab: expected Lab of shape (B, 3, H, W), got {tuple(lab.shape)}")
    return torch.cat([(lab[:, :1] - L_CENT) / L_NORM, lab[:, 1:] / AB_NORM], dim=1)


def _conv_bn(c_in: int, c_out: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, s, p, dilation=d), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Tower(nn.Module):
    """AlexNet conv1..fc7 (fully convolutional) + a 1x1 head; see the module docstring for the layout."""

    def __init__(self, c_in: int, channels: tuple[int, ...], fc_width: int, c_head: int, input_size: int) -> None:
        super().__init__()
        k1, s1, p1 = conv1_geometry(input_size)
        c1, c2, c3, c4, c5 = channels
        self.conv1 = _conv_bn(c_in, c1, k1, s1, p1)
        self.conv2 = _conv_bn(c1, c2, 5, 1, 2)
        self.conv3 = _conv_bn(c2, c3, 3, 1, 1)
        self.conv4 = _conv_bn(c3, c4, 3, 1, 1)
        self.conv5 = _conv_bn(c4, c5, 3, 1, 1)
        self.fc6 = _conv_bn(c5, fc_width, 3, 1, 2, d=2)
        self.fc7 = _conv_bn(fc_width, fc_width, 1)
        self.head = nn.Conv2d(fc_width, c_head, 1)

    def layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x (B, c_in, S, S)`` -> post-ReLU maps conv1..conv5 and fc7."""
        out = {}
        x = out["conv1"] = self.conv1(x)
        x = out["conv2"] = self.conv2(F.max_pool2d(x, 3, 2, 1))
        x = out["conv3"] = self.conv3(F.max_pool2d(x, 3, 2, 1))
        x = out["conv4"] = self.conv4(x)
        x = out["conv5"] = self.conv5(x)
        out["fc7"] = self.fc7(self.fc6(F.max_pool2d(x, 3, 1, 1)))
        return out


class SplitBrain(nn.Module):
    """Towers of :data:`VARIANTS` ``[variant]`` over normalized Lab; see the module docstring.

    Args:
        variant: a key of :data:`VARIANTS`.
        input_size: training / evaluation image side in px (sets conv1's stride; 180 = thesis pre-training).
        width: channel multiplier of the whole model (AlexNet 96/256/384/384/256 at 1).
        fc_width: fc6/fc7 channels of the whole model (thesis 4096).
        num_classes: classes of the ``labels`` variant (required there, unused otherwise).
    """

    def __init__(
        self, variant: str = "split_cl_cl", input_size: int = 64, width: float = 0.5, fc_width: int = 512,
        num_classes: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"splitbrain: variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if not isinstance(input_size, int) or input_size < 16:
            raise ValueError(f"splitbrain: input_size must be an int >= 16, got {input_size!r}")
        if not width > 0 or fc_width < 2:
            raise ValueError(f"splitbrain: width must be > 0 and fc_width >= 2, got {width}, {fc_width}")
        if variant == "labels" and not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError(f"splitbrain: variant 'labels' needs num_classes >= 2, got {num_classes!r}")
        self.variant, self.input_size = variant, input_size
        self.specs = VARIANTS[variant]
        self.input_dropout = INPUT_DROPOUT.get(variant, 0.0)
        towers = []
        for spec in self.specs:
            chans = tuple(max(1, round(c * width * spec.share)) for c in CHANNELS)
            c_head = num_classes if spec.target == "labels" else HEAD_CHANNELS[(spec.target, spec.loss)]
            c_in = INPUTS[spec.source][1] - INPUTS[spec.source][0]
            towers.append(Tower(c_in, chans, max(1, round(fc_width * spec.share)), c_head, input_size))
        self.towers = nn.ModuleList(towers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gaussian (He-normal, fan-in) conv weights, zero biases, BatchNorm at identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def _inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"splitbrain: expected normalized Lab of shape (B, 3, H, W), got {tuple(x.shape)}")
        if self.training and self.input_dropout:
            x = F.dropout(x, self.input_dropout, training=True)
        return [x[:, slice(*INPUTS[s.source])] for s in self.specs]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x (B, 3, S, S)`` normalized Lab -> per-tower predictions ``(B, C_t, S/8, S/8)``
        (class logits or regression values; ``labels``: ``(B, num_classes)`` logits)."""
        outs = []
        for spec, tower, xi in zip(self.specs, self.towers, self._inputs(x), strict=True):
            y = tower.head(tower.layers(xi)["fc7"])
            outs.append(y.mean((2, 3)) if spec.target == "labels" else y)
        return outs

    def layer_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x (B, 3, S, S)`` normalized Lab -> ``{conv1..conv5: (B, C_l, h_l, w_l)}``, post-ReLU, the towers'
        maps concatenated along channels (the split-brain representation, Eq. 5.3)."""
        per = [tower.layers(xi) for tower, xi in zip(self.towers, self._inputs(x), strict=True)]
        return {name: torch.cat([p[name] for p in per], dim=1) for name in LAYERS}


@register_model
def splitbrain(
    variant: str = "split_cl_cl", input_size: int = 64, width: float = 0.5, fc_width: int = 512,
    num_classes: int | None = None,
) -> SplitBrain:  # fmt: skip
    """Split-brain autoencoder and its Table 5.4 ablations (thesis ch. 5); see :class:`SplitBrain`."""
    return SplitBrain(variant=variant, input_size=input_size, width=width, fc_width=fc_width, num_classes=num_classes)


REPRESENTATION_LAYER = "conv5"  # the layer the served representation pools (thesis ch. 5)


def rgb_features(model: SplitBrain, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
    """``rgb (B, 3, S, S)`` uint8 (or float in [0, 1]) -> :meth:`SplitBrain.layer_features` of its Lab."""
    return model.layer_features(normalize_lab(color.rgb_to_lab(rgb)))


@torch.inference_mode()
def represent(model: SplitBrain, images: list[torch.Tensor]) -> list[torch.Tensor]:
    """The split-brain model's ``predict``: per ``(3, H, W)`` uint8 image, its :data:`REPRESENTATION_LAYER` maps
    of the towers concatenated (Eq. 5.3), on the image resized (bilinear, antialiased) to the model's
    ``input_size`` when it differs, averaged over space -> float ``(D,)``."""
    if not images:
        return []
    side = int(model.config["kwargs"]["input_size"])
    xs = [
        img
        if tuple(img.shape[-2:]) == (side, side)
        else F.interpolate(
            img[None].float() / 255.0, size=(side, side), mode="bilinear", align_corners=False, antialias=True
        )[0].clamp(0, 1)
        for img in images
    ]
    if len({x.dtype for x in xs}) > 1:  # a mix of native-size uint8 and resized float: one dtype for the batch
        xs = [x.float() / 255.0 if x.dtype == torch.uint8 else x for x in xs]
    feats = rgb_features(model, torch.stack(xs))[REPRESENTATION_LAYER]
    return list(feats.float().mean(dim=(2, 3)))


register_description(
    "splitbrain",
    ModelDescription(
        kind="representation",
        predict=represent,
        to_output=lambda feature: feature.cpu().numpy().astype("float32"),
        example=image_example,
        signature=(("uint8", (-1, -1, -1, 3)), ("float32", (-1, -1))),
        feature_layers=LAYERS,
        forward_features=rgb_features,
    ),
)
