"""Semantic interpretability (thesis sec. 2.3.1 item 2): top-1 of an ImageNet classifier on (re)colorized images.

The thesis uses VGG-16; we use the real ImageNet-pretrained SqueezeNet v1.1 found offline (a state_dict that
loads strictly into ``torchvision.models.squeezenet1_1()``, torchvision-normalized RGB, 224 px). The class index
of a label is its position in the sorted list of the 1000 ImageNet wnids (``imagenet_wnids.json``).

    model = load_classifier("../shared/datasets/squeezenet1_1")
    logits = classify(model, rgb_uint8)          # (B, 3, H, W) -> (B, 1000)
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's input normalization (classifier contract, not Lab)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE = 256  # short side before the centre crop (standard ImageNet evaluation)
CROP = 224
_WNID = re.compile(r"n\d{8}")


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet wnids, sorted: position = class index of torchvision's ImageNet models."""
    wnids = json.loads((Path(__file__).with_name("imagenet_wnids.json")).read_text(encoding="utf-8"))
    return tuple(wnids)


def class_index(*names: str | None) -> int | None:
    """Class index of the first ImageNet wnid (``n########``) found in ``names`` (label, id, path), else None."""
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    for name in names:
        if not name:
            continue
        for m in _WNID.finditer(str(name)):
            if m.group(0) in index:
                return index[m.group(0)]
    return None


def find_classifier_weights(classifier_dir: str | Path) -> Path:
    """The ``*.pth`` state_dict in ``classifier_dir`` (or the file itself); FileNotFoundError saying why."""
    p = Path(classifier_dir)
    if p.is_file():
        return p
    if not p.is_dir():
        raise FileNotFoundError(f"classifier_dir {p}: does not exist")
    found = sorted(p.glob("*.pth"))
    if len(found) != 1:
        raise FileNotFoundError(f"classifier_dir {p}: expected exactly one *.pth state_dict, found {len(found)}")
    return found[0]


def load_classifier(classifier_dir: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """SqueezeNet v1.1 with the offline ImageNet weights, strict load, eval mode; never unpickles objects."""
    from torchvision.models import squeezenet1_1

    path = find_classifier_weights(classifier_dir)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = squeezenet1_1(weights=None)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def preprocess(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` uint8 or float [0, 1] -> ``(B, 3, 224, 224)`` float, normalized with ImageNet mean/std.

    Resizes the short side to 256 (bilinear, antialiased) unless it already is 256, then centre-crops 224.
    """
    if not isinstance(rgb, torch.Tensor) or rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb: expected a (B, 3, H, W) tensor, got {getattr(rgb, 'shape', type(rgb))}")
    x = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
    h, w = x.shape[-2:]
    if min(h, w) != RESIZE:
        s = RESIZE / min(h, w)
        size = (max(RESIZE, round(h * s)), max(RESIZE, round(w * s)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        h, w = size
    top, left = (h - CROP) // 2, (w - CROP) // 2
    x = x[..., top : top + CROP, left : left + CROP]
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def classify(model: torch.nn.Module, rgb: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, 1000)`` of ``rgb (B, 3, H, W)`` (uint8 or float [0, 1]) on the model's device."""
    device = next(model.parameters()).device
    return model(preprocess(rgb.to(device)))
