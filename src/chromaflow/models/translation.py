"""Multimodal translation (BicycleGAN, thesis ch. 4): the ragged-batch ``translate_batch``, the one inference path.

An item is an input image A (a boundary map, or a gray photo) and how its codes z are chosen: ``n`` draws from
the prior N(0, I) with a ``seed``, ``n`` explicit codes, or the code of a ``style`` photo (mu of E(style)). Each
item gives ``n`` RGB images at its own size.

A is prepared as the training pairs are (:class:`chromaflow.data.pair_dataset.PairDataset`): luminance
(PIL ``L``), resized so its short side is ``size`` (a boundary map by area and binarized at
``EDGE_LEVEL``: :func:`~chromaflow.data.pair_dataset.resize_edges`; a gray photo bicubic), then padded on the right
and bottom to a multiple of the networks' stride (with 0: no boundary) and the padding cropped off the output,
which is resized (bicubic, antialiased) back to the input's size. Boundary maps are bright lines on black (as
BSDS500's); ``polarity="auto"`` inverts a map whose median is bright (black lines on white, as people draw).
A style photo is prepared as a training target: short side ``size`` (bicubic), centre ``size x size`` crop.

    >>> import torch
    >>> from chromaflow.models import create_model
    >>> net = create_model("bicyclegan", num_downs=5, width=0.125, input_nc=1, paths=())
    >>> res = translate_batch(net, [TranslateInput(torch.zeros(3, 40, 50, dtype=torch.uint8), n=2, seed=0)], size=32)
    >>> res[0].images.shape, res[0].images.dtype, res[0].z.shape
    (torch.Size([2, 3, 40, 50]), torch.uint8, torch.Size([2, 8]))
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from chromaflow.color.lab import lightness_u8
from chromaflow.data.pair_dataset import resize_edges, resize_photo, short_side
from chromaflow.models.registry import IMAGE_SIG, ModelDescription

MAX_SAMPLES = 16  # outputs per input
INPUT_KINDS = ("edges", "gray")  # a boundary map (binarized as in training) | a gray photo (bicubic)
POLARITIES = ("auto", "bright", "dark")  # boundaries bright on black | dark on white | auto: by the median
BARE_SEED = 0  # the seed of an item given as a bare image (the pyfunc): one sample, reproducible
MAX_SEED = 2**53 - 1  # seeds stay exact in JSON read by a browser
CHUNK = 32  # generator inputs per forward pass
SERVED_SIZE = 128  # short side the network sees: the shipped model's training crops (BSDS500 at 128 px)
EXAMPLE_SIDE = 48


@dataclass
class TranslateInput:
    """One item. ``image``: ``(3 | 1, H, W)`` uint8; ``n``: outputs (1..:data:`MAX_SAMPLES`); codes from
    ``z`` (``(n, nz)`` float) if given, else from ``style`` (``(3, h, w)`` uint8 RGB: sample 0 is mu of E(style),
    the others drawn from q(z | style) with ``seed``), else ``n`` draws from N(0, I) with ``seed`` (``None``: a
    fresh seed, reported in the result). ``input_kind``: :data:`INPUT_KINDS`; ``polarity``: :data:`POLARITIES`."""

    image: torch.Tensor
    n: int = 1
    seed: int | None = None
    z: torch.Tensor | None = None
    style: torch.Tensor | None = None
    input_kind: str = "edges"
    polarity: str = "auto"


@dataclass
class TranslateResult:
    """``images``: ``(n, 3, H, W)`` uint8 at the input's size; ``z``: ``(n, nz)`` float32 codes used; ``seed``: the
    seed of the drawn codes (``None`` when every code was given); ``source``: ``prior | given | style``;
    ``inverted``: whether the boundary map was inverted (black lines on white)."""

    images: torch.Tensor
    z: torch.Tensor
    seed: int | None
    source: str
    inverted: bool


def network_size(h: int, w: int, size: int) -> tuple[int, int]:
    """``(h', w')``: the input resized so its short side is ``size`` (aspect kept, as the training pairs)."""
    nw, nh = short_side((w, h), size)
    return nh, nw


def padded(side: int, stride: int) -> int:
    """``side`` rounded up to a multiple of ``stride``."""
    return max(stride, math.ceil(side / stride) * stride)


def _luma(image: torch.Tensor, input_kind: str) -> Image.Image:
    """``(3 | 1, H, W)`` uint8 -> a PIL ``L`` image as the training pairs hold it: a colour boundary map by PIL's
    conversion (as ``PairDataset`` reads an edges input), a colour photo given as a gray input by its CIE L
    (as ``prepare-pairs --pairs gray`` makes one); a one-channel image as it is."""
    arr = image.detach().cpu().numpy()
    if arr.shape[0] == 1:
        return Image.fromarray(np.ascontiguousarray(arr[0]), "L")
    rgb = np.ascontiguousarray(arr.transpose(1, 2, 0))
    if input_kind == "gray":
        return Image.fromarray(lightness_u8(rgb), "L")
    return Image.fromarray(rgb, "RGB").convert("L")


def prepare_input(item: TranslateInput, size: int, stride: int) -> tuple[torch.Tensor, tuple[int, int], bool]:
    """A as the network sees it: ``((1, H', W') float in [-1, 1] padded to ``stride``, (h', w') unpadded, inverted)``."""
    lum = _luma(item.image, item.input_kind)
    inverted = False
    if item.input_kind == "edges":
        inverted = item.polarity == "dark" or (item.polarity == "auto" and float(np.median(np.asarray(lum))) > 127)
        if inverted:
            lum = lum.point(lambda v: 255 - v)
    h, w = network_size(lum.height, lum.width, size)
    small = (resize_edges if item.input_kind == "edges" else resize_photo)(lum, (w, h))
    a = torch.from_numpy(np.asarray(small).copy()).float()[None] / 127.5 - 1.0  # (1, h, w) in [-1, 1]
    pad = (0, padded(w, stride) - w, 0, padded(h, stride) - h)
    edges = item.input_kind == "edges"  # a map is padded with "no boundary" (-1), a photo with its border
    a = F.pad(a, pad, value=-1.0) if edges else F.pad(a[None], pad, mode="replicate")[0]
    return a, (h, w), inverted


def prepare_style(style: torch.Tensor, size: int) -> torch.Tensor:
    """A style photo as a training target: short side ``size`` (bicubic), centre crop -> ``(3, size, size)`` in [-1, 1]."""
    arr = style.detach().cpu().numpy()
    img = Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)), "RGB")
    new = short_side(img.size, size)
    img = resize_photo(img, new)
    x, y = (new[0] - size) // 2, (new[1] - size) // 2
    img = img.crop((x, y, x + size, y + size))
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1.0


def check_item(i: int, item: TranslateInput, nz: int) -> None:
    """``ValueError`` naming item ``i`` and the field for anything :func:`translate_batch` cannot run."""
    img = item.image
    if not isinstance(img, torch.Tensor) or img.dtype != torch.uint8 or img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"translate: item {i}: image must be uint8 (3 | 1, H, W), got {getattr(img, 'shape', img)}")
    if isinstance(item.n, bool) or not isinstance(item.n, int) or not 1 <= item.n <= MAX_SAMPLES:
        raise ValueError(f"translate: item {i}: n must be an int in [1, {MAX_SAMPLES}], got {item.n!r}")
    if item.seed is not None and (isinstance(item.seed, bool) or not isinstance(item.seed, int)
                                  or not 0 <= item.seed <= MAX_SEED):  # fmt: skip
        raise ValueError(f"translate: item {i}: seed must be an int in [0, 2**53 - 1], got {item.seed!r}")
    if item.z is not None and (item.z.shape != (item.n, nz) or not torch.isfinite(item.z).all()):
        raise ValueError(f"translate: item {i}: z must be ({item.n}, {nz}) finite numbers, got {tuple(item.z.shape)}")
    if item.z is not None and item.style is not None:
        raise ValueError(f"translate: item {i}: give z or style, not both")
    if item.style is not None and (item.style.dtype != torch.uint8 or item.style.ndim != 3 or item.style.shape[0] != 3):
        raise ValueError(f"translate: item {i}: style must be uint8 (3, H, W), got {tuple(item.style.shape)}")
    if item.input_kind not in INPUT_KINDS:
        raise ValueError(f"translate: item {i}: input_kind must be one of {INPUT_KINDS}, got {item.input_kind!r}")
    if item.polarity not in POLARITIES:
        raise ValueError(f"translate: item {i}: polarity must be one of {POLARITIES}, got {item.polarity!r}")


def _codes(model: nn.Module, item: TranslateInput, seed: int | None, style_stats: tuple | None) -> torch.Tensor:
    """``(n, nz)`` float32 codes of one item on the CPU (see :class:`TranslateInput`)."""
    if item.z is not None:
        return item.z.detach().float().cpu()
    gen = torch.Generator().manual_seed(seed)
    eps = model.sample_z(item.n, generator=gen).float()
    if style_stats is None:
        return eps
    mu, logvar = style_stats
    z = mu[None] + torch.exp(0.5 * logvar)[None] * eps
    z[0] = mu  # the style's own code first
    return z


@torch.inference_mode()
def translate_batch(
    model: nn.Module, items: Sequence[TranslateInput | torch.Tensor], *, size: int = SERVED_SIZE
) -> list[TranslateResult]:
    """Translate a ragged batch: every item's ``n`` samples; inputs of one padded size share the forward passes.

    Args:
        model: a ``bicyclegan`` model (``forward(a, z)``, ``encode``, ``sample_z``, ``stride``, ``nz``); eval mode
            is set. A bare ``(3, H, W)`` uint8 image is ``TranslateInput(image, seed=BARE_SEED)``.
        size: short side of A as the network sees it (the training crop size).
    Returns:
        per item, a :class:`TranslateResult` (uint8 images ``(n, 3, H, W)`` on the CPU).
    """
    if not items:
        return []
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"translate: size must be a positive int, got {size!r}")
    items = [it if isinstance(it, TranslateInput) else TranslateInput(image=it, seed=BARE_SEED) for it in items]
    for i, it in enumerate(items):
        check_item(i, it, model.nz)
    model.eval()
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    seeds = [it.seed if it.seed is not None or it.z is not None else secrets.randbelow(MAX_SEED) for it in items]
    styled = [i for i, it in enumerate(items) if it.style is not None]
    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    if styled:
        if getattr(model, "encoder", None) is None:
            raise ValueError("translate: a style image needs a model with an encoder; this one has none")
        for part in [styled[k : k + CHUNK] for k in range(0, len(styled), CHUNK)]:
            b = torch.stack([prepare_style(items[i].style, size) for i in part]).to(device, dtype)
            mu, logvar = model.encode(b)
            stats |= {i: (mu[j].float().cpu(), logvar[j].float().cpu()) for j, i in enumerate(part)}
    prepared = [prepare_input(it, size, model.stride) for it in items]
    codes = [_codes(model, it, seeds[i], stats.get(i)) for i, it in enumerate(items)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (a, _, _) in enumerate(prepared):
        groups.setdefault(tuple(a.shape), []).append(i)
    fakes: list[torch.Tensor] = [None] * len(items)  # type: ignore[list-item]
    for members in groups.values():
        a = torch.cat([prepared[i][0][None].expand(items[i].n, -1, -1, -1) for i in members])  # (sum n, 1, H', W')
        z = torch.cat([codes[i] for i in members])
        out = torch.cat(
            [model(ac.to(device, dtype), zc.to(device, dtype)).float().cpu() for ac, zc in zip(a.split(CHUNK), z.split(CHUNK), strict=True)]
        )  # fmt: skip
        for i, part in zip(members, out.split([items[i].n for i in members]), strict=True):
            fakes[i] = part
    results = []
    for i, it in enumerate(items):
        (h, w), (H, W) = prepared[i][1], it.image.shape[1:]
        rgb = (fakes[i][:, :, :h, :w] + 1.0) / 2.0  # (n, 3, h, w) in [0, 1]
        if (h, w) != (H, W):
            rgb = F.interpolate(rgb, size=(H, W), mode="bicubic", align_corners=False, antialias=True)
        images = (rgb.clamp(0, 1) * 255.0).round().to(torch.uint8)
        source = "given" if it.z is not None else "style" if it.style is not None else "prior"
        seed = None if it.z is not None or (it.style is not None and it.n == 1) else seeds[i]
        results.append(TranslateResult(images, codes[i], seed, source, prepared[i][2]))
    return results


def to_uint8_samples(result: TranslateResult) -> np.ndarray:
    """One result -> uint8 ``(n, H, W, 3)`` (the pyfunc's output per input image)."""
    return np.ascontiguousarray(result.images.permute(0, 2, 3, 1).numpy())


def edges_example() -> np.ndarray:
    """A uint8 ``(1, S, S, 3)`` boundary map (S = :data:`EXAMPLE_SIDE`): a square outline, white on black."""
    x = np.zeros((1, EXAMPLE_SIDE, EXAMPLE_SIDE, 3), np.uint8)
    lo, hi = EXAMPLE_SIDE // 4, 3 * EXAMPLE_SIDE // 4
    x[0, lo:hi, [lo, hi - 1]] = 255
    x[0, [lo, hi - 1], lo:hi] = 255
    return x


SAMPLES_SIG = ("uint8", (-1, -1, -1, -1, 3))  # per input image, n RGB samples (the pyfunc: n = 1)


def translation_description(served_size: int = SERVED_SIZE) -> ModelDescription:
    """The :class:`~chromaflow.models.registry.ModelDescription` of a multimodal translator (kind ``translation``,
    the ``translate`` handler): :func:`translate_batch` as ``predict``; the pyfunc maps uint8 ``(N, H, W, 3)`` to
    ``(N, 1, H, W, 3)`` (one sample per image, seed :data:`BARE_SEED`)."""
    return ModelDescription(
        kind="translation",
        predict=translate_batch,
        to_output=to_uint8_samples,
        example=edges_example,
        signature=(IMAGE_SIG, SAMPLES_SIG),
        served_size=served_size,
        handler="translate",
    )
