"""LPIPS, the learned perceptual image patch similarity of thesis ch. 6 (Eq. 6.1).

For a backbone ``F`` with tapped layers ``l = 1..L`` (AlexNet conv1-5, VGG-16 conv1_2..conv5_3, SqueezeNet
conv1 + 6 fire modules), features are unit-normalized over channels, the squared difference is scaled per
channel by non-negative weights ``w_l``, summed over channels, averaged over space and summed over layers::

    d(x, x0) = sum_l 1/(H_l W_l) sum_{h,w} || w_l * (yhat^l_hw - yhat0^l_hw) ||_2^2

(``w_l`` multiplies the *squared* difference, as in the released code; ``w_l = 1`` gives the cosine
baseline). ``spatial=True`` returns the map before the spatial average, each layer upsampled bilinearly
to the input size and summed: ``(B, 1, H, W)``.

Inputs are RGB ``(B, 3, H, W)`` (or ``(3, H, W)``) float in ``[0, 1]`` or uint8 in ``[0, 255]``; pass
``input_range=(-1, 1)`` for the official package's convention. Any size at least :data:`MIN_SIZE`.

Two registered models (``chromaflow.models.create_model``), saved and loaded with ``save_weights`` /
``load_weights`` like every other: ``lpips`` (the distance) and ``lpips_2afc`` (the distance + the ranking
network ``G`` trained on 2AFC judgments, thesis sec. 6.3); :func:`load_distance` gives the distance of either.

Weights: the six official linear layers ship with the package (``assets/lpips``, BSD-2, see its README).
Backbone ImageNet weights are never downloaded: pass a torchvision ``state_dict`` file (e.g. the Caffe
SqueezeNet 1.1 in ``../shared/datasets/squeezenet1_1``) or ``"random"`` for a seeded random trunk.
Every loader is strict: a missing, unexpected or mis-shaped key is a ``ValueError``.

    >>> import torch
    >>> from chromaflow.models.lpips import build_lpips
    >>> m = build_lpips("alex", trunk="random", seed=0)           # random trunk, official v0.1 weights
    >>> m(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)).shape
    torch.Size([2])
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from chromaflow.models.registry import ModelDescription, register_description, register_model
from chromaflow.models.weights import load_state_strict, load_weights, unwrap

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets" / "lpips"
VERSIONS = ("0.0", "0.1")
EPS_NORM = 1e-10  # unit-normalization guard, as in the released code
# v0.1 input scaling of [-1, 1] RGB: equals torchvision's ImageNet mean/std normalization of [0, 1] RGB
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


@dataclass(frozen=True)
class NetSpec:
    """A backbone: torchvision factory, indices of ``features`` whose outputs are tapped, their channels."""

    factory: str
    taps: tuple[int, ...]
    channels: tuple[int, ...]
    min_size: int  # smallest square input whose deepest tap is non-empty


NETS: dict[str, NetSpec] = {
    "alex": NetSpec("alexnet", (1, 4, 7, 9, 11), (64, 192, 384, 256, 256), 31),
    "vgg": NetSpec("vgg16", (3, 8, 15, 22, 29), (64, 128, 256, 512, 512), 16),
    "squeeze": NetSpec("squeezenet1_1", (1, 4, 7, 9, 10, 11, 12), (64, 128, 256, 384, 384, 512, 512), 17),
}
MIN_SIZE = {k: v.min_size for k, v in NETS.items()}


def _check_net(net: str) -> NetSpec:
    if net not in NETS:
        raise ValueError(f"net: unknown backbone {net!r}; choose one of {sorted(NETS)}")
    return NETS[net]


class Trunk(nn.Module):
    """torchvision ``features`` up to the last tap; ``forward(x) -> [ (B, C_l, H_l, W_l) ]`` for each tap.

    Built on the meta device (torchvision's classifier heads, up to 100M parameters, are never
    materialized), then initialised by :meth:`reset_parameters`; real weights come from
    :func:`load_trunk_weights`.
    """

    def __init__(self, net: str) -> None:
        super().__init__()
        self.spec = _check_net(net)
        with torch.device("meta"):
            full = getattr(torchvision.models, self.spec.factory)(weights=None)
        self.features = full.features[: self.spec.taps[-1] + 1].to_empty(device="cpu")
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Random Gaussian init (thesis "scratch"): conv weights ``N(0, 2 / fan_out)``, biases 0."""
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs, taps = [], set(self.spec.taps)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in taps:
                outs.append(x)
        return outs


def normalize_channels(feat: torch.Tensor, eps: float = EPS_NORM) -> torch.Tensor:
    """Unit-normalize ``(B, C, H, W)`` features over C: ``f / (||f||_2 + eps)``."""
    return feat / (torch.sqrt(torch.sum(feat * feat, dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """The LPIPS distance (Eq. 6.1) as a module.

    Args:
        net: ``"alex" | "vgg" | "squeeze"``.
        version: ``"0.1"`` (inputs scaled by :data:`SHIFT`/:data:`SCALE`) or ``"0.0"`` (no scaling).
        linear: learned per-channel weights ``w`` (True) or the cosine baseline ``w = 1`` (False).
        input_range: the value range of float inputs, ``(0, 1)`` (default) or ``(-1, 1)``.
        dropout: dropout probability on the squared differences in training mode (the released
            training code uses 0.5); no effect in eval mode.

    ``forward(x0, x1, spatial=False, per_layer=False)``: ``x0, x1 (B, 3, H, W)`` -> distance ``(B,)``, or
    ``(B, 1, H, W)`` with ``spatial``; with ``per_layer`` also the list of per-layer terms.
    Weights ``w`` are initialised to 1 (cosine); load calibrated ones with :func:`load_linear_weights`.
    """

    def __init__(
        self,
        net: str = "alex",
        version: str = "0.1",
        linear: bool = True,
        input_range: tuple[float, float] = (0.0, 1.0),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        spec = _check_net(net)
        if version not in VERSIONS:
            raise ValueError(f"version: expected one of {VERSIONS}, got {version!r}")
        lo, hi = (float(v) for v in input_range)
        if not hi > lo:
            raise ValueError(f"input_range: expected (low, high) with high > low, got {input_range}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
        self.net_name, self.version, self.linear, self.input_range = net, version, bool(linear), (lo, hi)
        self.dropout = float(dropout)
        self.net = Trunk(net)
        self.lins = nn.ParameterList([nn.Parameter(torch.ones(1, c, 1, 1)) for c in spec.channels]) if linear else None
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def _prepare(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{name}: expected RGB of shape (B, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
        m = self.net.spec.min_size
        if min(x.shape[-2:]) < m:
            raise ValueError(f"{name}: {self.net_name} needs H, W >= {m}, got {tuple(x.shape[-2:])}")
        ref = self.shift
        if x.dtype == torch.uint8:
            x = x.to(ref.dtype) / 255.0 * 2 - 1
        elif not x.is_floating_point():
            raise TypeError(f"{name}: expected a float or uint8 tensor, got {x.dtype}")
        elif self.input_range != (-1.0, 1.0):
            lo, hi = self.input_range
            x = 2 * x - 1 if (lo, hi) == (0.0, 1.0) else 2 * (x - lo) / (hi - lo) - 1
        x = x.to(device=ref.device, dtype=ref.dtype)
        return (x - self.shift) / self.scale if self.version == "0.1" else x

    def embed(self, x: torch.Tensor, name: str = "x") -> list[torch.Tensor]:
        """Unit-normalized features ``[(B, C_l, H_l, W_l)]`` of RGB ``x`` (see the class docstring for ranges)."""
        return [normalize_channels(f) for f in self.net(self._prepare(name, x))]

    def compare(self, fa: Sequence[torch.Tensor], fb: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-layer terms ``[(B, 1, H_l, W_l)]``: ``w_l``-weighted squared differences of normalized features."""
        terms = []
        for k, (a, b) in enumerate(zip(fa, fb, strict=True)):
            diff = (a - b) ** 2
            if self.lins is None:
                terms.append(diff.sum(dim=1, keepdim=True))
            else:
                if self.dropout and self.training:
                    diff = F.dropout(diff, self.dropout, training=True)
                terms.append(F.conv2d(diff, self.lins[k]))
        return terms

    def layer_terms(self, x0: torch.Tensor, x1: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer weighted squared differences ``[(B, 1, H_l, W_l)]`` (before the spatial average)."""
        a, b = self._prepare("x0", x0), self._prepare("x1", x1)
        if a.shape != b.shape:
            raise ValueError(f"x0 {tuple(a.shape)} and x1 {tuple(b.shape)} must have the same shape")
        n = a.shape[0]
        feats = [normalize_channels(f) for f in self.net(torch.cat([a, b]))]  # one trunk pass: (2B, C_l, H_l, W_l)
        return self.compare([f[:n] for f in feats], [f[n:] for f in feats])

    @staticmethod
    def reduce(terms: Sequence[torch.Tensor]) -> torch.Tensor:
        """Spatial mean of each term, summed over layers: ``(B,)``."""
        val = terms[0].mean(dim=(2, 3))
        for t in terms[1:]:
            val = val + t.mean(dim=(2, 3))
        return val.flatten()

    def forward(
        self, x0: torch.Tensor, x1: torch.Tensor, spatial: bool = False, per_layer: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        terms = self.layer_terms(x0, x1)
        if spatial:
            size = (x0.shape[-2], x0.shape[-1])
            res = [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in terms]
        else:
            res = [t.mean(dim=(2, 3), keepdim=True) for t in terms]
        val = res[0]
        for r in res[1:]:
            val = val + r
        if not spatial:
            val = val.flatten()
            res = [r.flatten() for r in res]
        return (val, res) if per_layer else val

    @torch.no_grad()
    def clamp_weights(self) -> None:
        """Project ``w`` onto the constraint set ``w >= 0`` (thesis sec. 6.3, after every step)."""
        if self.lins is not None:
            for w in self.lins:
                w.clamp_(min=0)


# ----------------------------------------------------------------------------------------------- loaders


def _read_state(source: str | os.PathLike | Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with code, or not a torch file at all
        raise ValueError(f"{what}: {path}: not a plain tensor state_dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what}: {path}: expected a dict of tensors")
    return dict(state)


def official_linear_path(net: str, version: str = "0.1") -> Path:
    """The shipped official linear-weight file for ``net`` and ``version``."""
    _check_net(net)
    if version not in VERSIONS:
        raise ValueError(f"version: expected one of {VERSIONS}, got {version!r}")
    return ASSETS / f"v{version}" / f"{net}.pth"


def load_linear_weights(model: LPIPS, source: str | os.PathLike | Mapping[str, torch.Tensor] = "official") -> LPIPS:
    """Load ``w`` strictly from the official layout (``lin{k}.model.1.weight``, ``(1, C_k, 1, 1)``, all >= 0).

    ``source``: ``"official"`` (the shipped file for the model's net and version), a ``.pth`` path or a dict.
    """
    if model.lins is None:
        raise ValueError("load_linear_weights: the model was built with linear=False (no w to load)")
    if isinstance(source, str) and source == "official":
        source = official_linear_path(model.net_name, model.version)
    state = _read_state(source, "linear weights")
    renamed = {}
    for k, v in state.items():
        m = re.fullmatch(r"lin(\d+)\.model\.1\.weight", k)
        renamed[f"{m.group(1)}" if m else f"<unexpected>{k}"] = v
    neg = [k for k, v in state.items() if v.is_floating_point() and bool((v < 0).any())]
    if neg:
        raise ValueError(f"linear weights: negative entries in {neg} (w must be >= 0)")
    load_state_strict(model.lins, renamed, source=f"linear weights for {model.net_name}")
    return model


def load_trunk_weights(model: LPIPS, source: str | os.PathLike | Mapping[str, torch.Tensor]) -> LPIPS:
    """Load backbone weights strictly from a torchvision ``state_dict`` (``features.N.*``).

    The torchvision classifier head (``classifier.*``) is the only part dropped, since LPIPS taps
    ``features`` only; the official package's ``net.sliceK.N.*`` layout is also accepted.
    """
    state = _read_state(source, "trunk weights")
    feats = {}
    for k, v in state.items():
        if k.startswith("classifier."):
            continue
        m = re.fullmatch(r"(?:net\.)?slice\d+\.(\d+\..+)", k)
        feats[f"features.{m.group(1)}" if m else k] = v
    load_state_strict(model.net, feats, source=f"trunk weights for {model.net_name}")
    return model


def random_trunk_state(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-layout ``features`` state_dict of random Gaussian weights (:meth:`Trunk.reset_parameters`)."""
    trunk = Trunk(net)
    trunk.reset_parameters(torch.Generator().manual_seed(seed))
    return {k: v.clone() for k, v in trunk.state_dict().items()}


def build_lpips(
    net: str = "alex",
    *,
    trunk: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    lin: str | os.PathLike | Mapping[str, torch.Tensor] | None = "official",
    version: str = "0.1",
    seed: int = 0,
    input_range: tuple[float, float] = (0.0, 1.0),
    device: str | torch.device | None = None,
) -> LPIPS:
    """Build an LPIPS model in eval mode; never downloads.

    Args:
        trunk: a torchvision ``state_dict`` path/dict, ``"random"`` (seeded Gaussian init), or None to
            use torchvision's cached ImageNet file under ``torch.hub.get_dir()`` if one is there.
        lin: ``"official"`` (shipped weights), a path/dict, or None for the cosine baseline (w = 1).
    """
    model = lpips_model(net=net, version=version, linear=lin is not None, input_range=input_range)
    if isinstance(trunk, str) and trunk == "random":
        trunk = random_trunk_state(net, seed)
    elif trunk is None:
        trunk = _cached_torchvision_file(net)
    load_trunk_weights(model, trunk)
    if lin is not None:
        load_linear_weights(model, lin)
    model.requires_grad_(False)
    return model.to(device or "cpu").eval()


def _cached_torchvision_file(net: str) -> Path:
    spec = _check_net(net)
    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    hits = sorted(ckpt.glob(f"{spec.factory}-*.pth")) if ckpt.is_dir() else []
    if not hits:
        raise FileNotFoundError(
            f"trunk weights for {net}: none given and no torchvision {spec.factory}-*.pth under {ckpt}; "
            "pass trunk=<torchvision state_dict path> (nothing is downloaded) or trunk='random'"
        )
    return hits[-1]


# ----------------------------------------------------------------------------------------------- functional


@functools.lru_cache(maxsize=8)
def _cached_model(net: str, version: str, linear: bool, trunk: str, device: str) -> LPIPS:
    return build_lpips(net, trunk=trunk, lin="official" if linear else None, version=version, device=device)


def lpips(
    x0: torch.Tensor,
    x1: torch.Tensor,
    net: str = "alex",
    *,
    trunk: str | os.PathLike | None = None,
    version: str = "0.1",
    linear: bool = True,
    spatial: bool = False,
) -> torch.Tensor:
    """Functional LPIPS: ``x0, x1 (B, 3, H, W)`` RGB in [0, 1] (or uint8) -> ``(B,)`` or ``(B, 1, H, W)``.

    The model (official ``w``; trunk from ``trunk`` as in :func:`build_lpips`) is built once per
    (net, version, linear, trunk, device) and cached; it runs on ``x0``'s device without gradients.
    """
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0: expected a torch.Tensor, got {type(x0).__name__}")
    key = str(trunk) if trunk is not None else None
    model = _cached_model(net, version, linear, key, str(x0.device))
    with torch.no_grad():
        return model(x0, x1, spatial=spatial)


def pairwise_distances(model: nn.Module, x0: torch.Tensor, x1: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """``model(x0[i:j], x1[i:j])`` over batches without gradients; ``(N,)`` float on the CPU."""
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(x0), batch_size):
            out.append(model(x0[i : i + batch_size].to(device), x1[i : i + batch_size].to(device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


# ----------------------------------------------------------------------------------------------- trained 2AFC model

RANK_EPS = 0.1  # ratio guard of G's input, released code


class RankNet(nn.Module):
    """``G``: distances ``d0, d1 (B,)`` -> probability ``(B,)`` that p1 is judged closer to the reference.

    Released code: 1x1 convs 5 -> 32 -> 32 -> 1 with LeakyReLU(0.2) and a sigmoid over
    ``[d0, d1, d0 - d1, d0 / (d1 + eps), d1 / (d0 + eps)]``.
    """

    def __init__(self, chn_mid: int = 32, negative_slope: float = 0.2, eps: float = RANK_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.model = nn.Sequential(
            nn.Conv2d(5, chn_mid, 1), nn.LeakyReLU(negative_slope),
            nn.Conv2d(chn_mid, chn_mid, 1), nn.LeakyReLU(negative_slope),
            nn.Conv2d(chn_mid, 1, 1), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, d0: torch.Tensor, d1: torch.Tensor) -> torch.Tensor:
        d0, d1 = d0.view(-1, 1, 1, 1), d1.view(-1, 1, 1, 1)
        x = torch.cat((d0, d1, d0 - d1, d0 / (d1 + self.eps), d1 / (d0 + self.eps)), dim=1)
        return self.model(x).flatten()


class LPIPS2AFC(nn.Module):
    """LPIPS + G. ``forward(ref, p0, p1) -> (d0, d1, h_hat)``, all ``(B,)``; images ``(B, 3, H, W)`` in [0, 1]."""

    def __init__(self, net: str = "alex", version: str = "0.1", dropout: float = 0.5) -> None:
        super().__init__()
        self.lpips = LPIPS(net, version=version, linear=True, dropout=dropout)
        self.rank = RankNet()

    def forward(self, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor):
        n = ref.shape[0]
        feats = self.lpips.embed(torch.cat([ref, p0, p1]))  # one trunk pass over the triplet: (3B, ...)
        fr, f0, f1 = ([f[i * n : (i + 1) * n] for f in feats] for i in range(3))
        d0 = LPIPS.reduce(self.lpips.compare(fr, f0))
        d1 = LPIPS.reduce(self.lpips.compare(fr, f1))
        return d0, d1, self.rank(d0, d1)


# ----------------------------------------------------------------------------------------------- registered models


@register_model(name="lpips")
def lpips_model(
    net: str = "alex",
    version: str = "0.1",
    linear: bool = True,
    input_range: tuple[float, float] = (0.0, 1.0),
    dropout: float = 0.0,
) -> LPIPS:
    """The LPIPS distance (trunk and ``w`` initialised, not loaded: see :func:`build_lpips`)."""
    return LPIPS(net, version=version, linear=linear, input_range=tuple(input_range), dropout=dropout)


@register_model
def lpips_2afc(net: str = "alex", version: str = "0.1", dropout: float = 0.5) -> LPIPS2AFC:
    """LPIPS + ranking net ``G``, the model ``chromaflow train --task lpips`` trains and saves."""
    return LPIPS2AFC(net, version=version, dropout=dropout)


def lpips_distance(model: nn.Module) -> LPIPS:
    """The LPIPS distance of a registered LPIPS model: an ``lpips`` model itself, or an ``lpips_2afc`` model's
    LPIPS part with dropout off and ``w`` projected onto ``w >= 0`` (the training's last projection; in place)."""
    model = unwrap(model)
    if isinstance(model, LPIPS2AFC):
        lp = model.lpips
        lp.dropout = 0.0
        lp.clamp_weights()
        return lp
    if isinstance(model, LPIPS):
        return model
    raise TypeError(f"lpips_distance: expected an lpips or lpips_2afc model, got {type(model).__name__}")


def load_distance(path: str | os.PathLike, device: str | torch.device = "cpu") -> LPIPS:
    """The LPIPS distance of an ``lpips`` or ``lpips_2afc`` weights file (``load_weights``: strict), frozen, eval."""
    model = lpips_distance(load_weights(path, device=device))
    model.requires_grad_(False)
    return model.eval()


EXAMPLE_SIZE = 64  # side of the pyfunc input example: above every backbone's minimum (alex: 31)
SIGNATURE = (("uint8", (-1, 2, -1, -1, 3)), ("float32", (-1,)))  # image pairs -> distances


def predict(model: nn.Module, items: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Ragged batch of image pairs ``(2, 3, H, W)`` (uint8 or float in [0, 1]) -> one 0-d float32 distance each.

    ``model`` is an ``lpips`` or ``lpips_2afc`` model (:func:`lpips_distance`); pairs of one size share a pass.
    """
    dist = lpips_distance(model)
    device = next(dist.parameters()).device
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(items):
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[:2]) != (2, 3):
            raise ValueError(
                f"lpips predict: item {i}: expected an image pair (2, 3, H, W), got {getattr(x, 'shape', x)}"
            )
        groups.setdefault(tuple(x.shape), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(items)
    with torch.no_grad():
        for idx in groups.values():
            pairs = torch.stack([items[i] for i in idx]).to(device)  # (n, 2, 3, H, W)
            d = dist(pairs[:, 0], pairs[:, 1]).float().cpu()
            for j, i in enumerate(idx):
                out[i] = d[j]
    return out  # type: ignore[return-value]


def example() -> np.ndarray:
    """A uint8 ``(1, 2, S, S, 3)`` pair (S = :data:`EXAMPLE_SIZE`): a ramp and its mirror image."""
    ramp = np.linspace(0, 255, EXAMPLE_SIZE, dtype=np.uint8)
    x0 = np.broadcast_to(ramp[None, :, None], (EXAMPLE_SIZE, EXAMPLE_SIZE, 3))
    return np.ascontiguousarray(np.stack([x0, x0[:, ::-1]])[None])


def _to_output(distance: torch.Tensor) -> np.float32:
    return np.float32(distance)


DESCRIPTION = ModelDescription(
    kind="lpips", predict=predict, to_output=_to_output, example=example, signature=SIGNATURE, handler="lpips"
)
register_description("lpips", DESCRIPTION)
register_description("lpips_2afc", DESCRIPTION)
