"""BicycleGAN (thesis ch. 4): a U-Net generator G(A, z), a latent encoder E(B) -> (mu, logvar), and
two-scale PatchGAN discriminators, one per training path (``encoded``: B -> z -> B^, ``random``: z -> B^).

Images are in [-1, 1] (G ends in tanh). ``w = round(64 * width)``; ``n = num_downs``; stride ``2**n``::

    net  layers (conv 4x4 s2 p1 unless noted)                                      norm      nonlinearity
    G    down: in(+z) -> w -> 2w -> 4w -> 8w -> ... 8w (n convs; z concatenated   instance  LeakyReLU 0.2
         at the input (add_to_input) or at the input of every down conv (add_to_all))       (before each but the 1st)
         up: mirrored ConvTranspose 4x4 s2, skip concat, dropout 0.5 in the     instance  ReLU; tanh out
         n-5 innermost 8w->8w up blocks (but the innermost one)
    E    resnet: conv s2 -> w, then e_depth-1 residual blocks (each /2, channels  instance  LeakyReLU 0.2
         w*min(k+1, 4)); cnn: e_depth convs s2 (channels w*min(2**k, 4));
         then global average pooling (any size; the original AvgPool2d(8) took 256 px only) -> fc mu, fc logvar
    D    per scale: conv s2 -> d, d_layers-1 convs s2 (x2, max 8d), conv 4x4 s1,  instance  LeakyReLU 0.2
         conv 4x4 s1 -> 1 (a PatchGAN: 70x70 receptive field at d_layers=3);
         scale 2 sees the input average-pooled 3x3 s2 with d/2 channels

The original trains 256 px with ``num_downs=8`` (``unet_256``); 64 px fits ``num_downs=6``.

    >>> import torch
    >>> from chromaflow.models import create_model
    >>> net = create_model("bicyclegan", num_downs=6, width=0.125, input_nc=1).eval()
    >>> net(torch.zeros(2, 1, 64, 64), torch.zeros(2, 8)).shape
    torch.Size([2, 3, 64, 64])
    >>> [m.shape for m in net.discriminators["random"](torch.zeros(2, 3, 64, 64))]
    [torch.Size([2, 1, 6, 6]), torch.Size([2, 1, 2, 2])]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from chromaflow.models.registry import register_description, register_model
from chromaflow.models.translation import translation_description

Z_DIMS = (2, 8, 256)  # the |z| study of the thesis (Fig. 4.7); any positive size is accepted
NZ = 8  # |z| of every experiment in the thesis
WHERE_ADD = ("input", "all")  # add_to_input / add_to_all (Fig. 4.3)
ENCODERS = ("resnet", "cnn")  # E_ResNet / E_CNN (Table 4.1)
PATHS = ("encoded", "random")  # cVAE path (B -> z -> B^) and cLR path (z -> B^ -> z^), each with its own D
BASE_WIDTH = 64  # ngf = nef = ndf of the original at width 1
MIN_DOWNS = 5  # the U-Net's fixed outer blocks: w, 2w, 4w, 8w and the innermost 8w
LEAK = 0.2
DROPOUT = 0.5
INIT_GAIN = 0.02  # xavier-normal gain of the original code (init_type xavier, init_gain 0.02)
E_MAX_MULT = 4  # encoder channels stop growing at 4w
D_MAX_MULT = 8  # discriminator channels stop growing at 8d


def _norm(c: int) -> nn.Module:
    return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)


def _check_image(who: str, x: torch.Tensor, channels: int, stride: int) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who}: expected images of shape (B, {channels}, H, W), got {shape}")
    h, w = x.shape[-2:]
    if h % stride or w % stride:
        raise ValueError(f"{who}: input size {h}x{w} is not divisible by the stride {stride}")


def _z_map(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``z (B, Z)`` replicated over the spatial size of ``like (B, C, h, w)`` -> ``(B, Z, h, w)``."""
    return z[:, :, None, None].expand(-1, -1, *like.shape[-2:]).to(like.dtype)


class _UNetLevel(nn.Module):
    """One U-Net level: ``down`` (to ``inner`` channels, /2), the inner levels, ``up`` (to ``outer``, x2)."""

    def __init__(self, c_in: int, outer: int, inner: int, nz: int, sub: _UNetLevel | None, *, outermost: bool,
                 dropout: bool) -> None:  # fmt: skip
        super().__init__()
        self.nz, self.outermost, self.sub = nz, outermost, sub
        down: list[nn.Module] = [] if outermost else [nn.LeakyReLU(LEAK)]
        down.append(nn.Conv2d(c_in + nz, inner, 4, stride=2, padding=1))
        if sub is not None and not outermost:
            down.append(_norm(inner))
        up: list[nn.Module] = [nn.ReLU(), nn.ConvTranspose2d(inner if sub is None else 2 * inner, outer, 4, 2, 1)]
        up += [nn.Tanh()] if outermost else [_norm(outer)]
        if dropout:
            up.append(nn.Dropout(DROPOUT))
        self.down, self.up = nn.Sequential(*down), nn.Sequential(*up)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        h = self.down(torch.cat([x, _z_map(z, x)], 1) if self.nz else x)
        if self.sub is not None:
            h = self.sub(h, z)
        h = self.up(h)
        return h if self.outermost else torch.cat([h, x], 1)


class UNetGenerator(nn.Module):
    """G(A, z): ``a (B, input_nc, H, W)`` in [-1, 1], ``z (B, nz)`` -> ``(B, output_nc, H, W)`` in [-1, 1].

    H and W must be multiples of :attr:`stride` ``= 2**num_downs``. ``where_add``: ``"input"`` concatenates the
    replicated z to A only; ``"all"`` to the input of every down-sampling conv.
    """

    def __init__(self, input_nc: int, output_nc: int, nz: int, num_downs: int, width: int, where_add: str,
                 dropout: bool) -> None:  # fmt: skip
        super().__init__()
        w, self.nz, self.input_nc, self.where_add = width, nz, input_nc, where_add
        self.stride = 2**num_downs
        every = nz if where_add == "all" else 0
        level = _UNetLevel(8 * w, 8 * w, 8 * w, every, None, outermost=False, dropout=False)
        for _ in range(num_downs - MIN_DOWNS):
            level = _UNetLevel(8 * w, 8 * w, 8 * w, every, level, outermost=False, dropout=dropout)
        for outer, inner in ((4, 8), (2, 4), (1, 2)):
            level = _UNetLevel(outer * w, outer * w, inner * w, every, level, outermost=False, dropout=False)
        self.net = _UNetLevel(input_nc, output_nc, w, nz, level, outermost=True, dropout=False)

    def forward(self, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        _check_image("bicyclegan generator", a, self.input_nc, self.stride)
        if z is None or z.shape != (a.shape[0], self.nz):
            got = None if z is None else tuple(z.shape)
            raise ValueError(f"bicyclegan generator: z must have shape ({a.shape[0]}, {self.nz}), got {got}")
        return self.net(a, z)


class _ResBlock(nn.Module):
    """Pre-activation residual block that halves the resolution (BasicBlock of the original E_ResNet)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _norm(c_in), nn.LeakyReLU(LEAK), nn.Conv2d(c_in, c_in, 3, padding=1),
            _norm(c_in), nn.LeakyReLU(LEAK), nn.Conv2d(c_in, c_out, 3, padding=1), nn.AvgPool2d(2),
        )  # fmt: skip
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class LatentEncoder(nn.Module):
    """E(B): ``b (B, C, H, W)`` in [-1, 1] -> ``(mu, logvar)``, each ``(B, nz)``; any H, W multiple of
    :attr:`stride` ``= 2**depth`` (global average pooling, not the original's fixed 256 px AvgPool2d(8))."""

    def __init__(self, kind: str, channels: int, nz: int, width: int, depth: int) -> None:
        super().__init__()
        self.kind, self.channels, self.stride = kind, channels, 2**depth
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, stride=2, padding=1)]
        c = width
        for k in range(1, depth):
            if kind == "resnet":
                c_next = width * min(E_MAX_MULT, k + 1)
                layers.append(_ResBlock(c, c_next))
            else:
                c_next = width * min(E_MAX_MULT, 2**k)
                layers += [nn.LeakyReLU(LEAK), nn.Conv2d(c, c_next, 4, stride=2, padding=1), _norm(c_next)]
            c = c_next
        layers += [nn.LeakyReLU(LEAK), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.conv = nn.Sequential(*layers)
        self.fc_mu, self.fc_logvar = nn.Linear(c, nz), nn.Linear(c, nz)

    def forward(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_image(f"bicyclegan encoder ({self.kind})", b, self.channels, self.stride)
        h = self.conv(b)
        return self.fc_mu(h), self.fc_logvar(h)


class PatchDiscriminator(nn.Module):
    """Multi-scale PatchGAN: ``x (B, C, H, W)`` in [-1, 1] -> one score map ``(B, 1, h_s, w_s)`` per scale
    (raw scores, for the least-squares loss); scale ``s`` sees the input average-pooled ``s`` times."""

    def __init__(self, channels: int, width: int, n_layers: int, n_scales: int) -> None:
        super().__init__()
        self.channels, self.n_layers = channels, n_layers
        self.scales = nn.ModuleList(
            self._patch(channels, max(1, round(width / 2**s)), n_layers) for s in range(n_scales)
        )
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.min_size = self._min_size(n_scales)

    @staticmethod
    def _patch(c_in: int, d: int, n_layers: int) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(c_in, d, 4, stride=2, padding=1), nn.LeakyReLU(LEAK)]
        c = d
        for k in range(1, n_layers + 1):
            c_next = d * min(2**k, D_MAX_MULT)
            stride = 2 if k < n_layers else 1
            layers += [nn.Conv2d(c, c_next, 4, stride=stride, padding=1), _norm(c_next), nn.LeakyReLU(LEAK)]
            c = c_next
        layers.append(nn.Conv2d(c, 1, 4, stride=1, padding=1))
        return nn.Sequential(*layers)

    def _min_size(self, n_scales: int) -> int:
        """Smallest side for which every scale's last normalized map has more than one pixel per side."""

        def ok(s: int) -> bool:
            for k in range(n_scales):
                t = s
                for _ in range(self.n_layers):
                    t //= 2
                if t - 1 < 2:
                    return False
                if k < n_scales - 1:
                    s = (s + 1) // 2
            return True

        return next(s for s in range(1, 1 << 16) if ok(s))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_image("bicyclegan discriminator", x, self.channels, 1)
        if min(x.shape[-2:]) < self.min_size:
            h, w = x.shape[-2:]
            raise ValueError(
                f"bicyclegan discriminator: input size {h}x{w} is below its minimum side {self.min_size}"
                f" ({len(self.scales)} scales of {self.n_layers} layers)"
            )
        out = []
        for k, net in enumerate(self.scales):
            out.append(net(x))
            if k < len(self.scales) - 1:
                x = self.pool(x)
        return out


def init_weights(module: nn.Module, gain: float = INIT_GAIN) -> None:
    """Xavier-normal conv / linear weights with ``gain`` and zero biases, as the original initializes."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class BicycleGAN(nn.Module):
    """G, E and one discriminator per training path; ``forward(a, z)`` is G (inference).

    ``encoder`` is None when no variant path needs it (pix2pix+noise); ``discriminators`` holds a
    :class:`PatchDiscriminator` for each name in ``paths`` (a subset of :data:`PATHS`).
    """

    def __init__(self, *, nz: int, where_add: str, encoder: str | None, num_downs: int, width: float, input_nc: int,
                 output_nc: int, paths: Sequence[str], d_layers: int, d_scales: int, e_depth: int,
                 dropout: bool) -> None:  # fmt: skip
        super().__init__()
        checks = [
            (isinstance(nz, int) and nz >= 1, f"nz must be a positive int (the thesis studies {Z_DIMS}), got {nz!r}"),
            (where_add in WHERE_ADD, f"where_add must be one of {WHERE_ADD}, got {where_add!r}"),
            (encoder is None or encoder in ENCODERS, f"encoder must be one of {ENCODERS} or None, got {encoder!r}"),
            (isinstance(num_downs, int) and num_downs >= MIN_DOWNS, f"num_downs must be an int >= {MIN_DOWNS}, got {num_downs!r}"),
            (width > 0, f"width must be > 0, got {width!r}"),
            (set(paths) <= set(PATHS), f"paths must be a subset of {PATHS}, got {list(paths)}"),
            (d_layers >= 1 and d_scales >= 1 and e_depth >= 1, "d_layers, d_scales and e_depth must be >= 1"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"bicyclegan: {msg}")
        w = max(1, round(BASE_WIDTH * width))
        self.nz = nz
        self.generator = UNetGenerator(input_nc, output_nc, nz, num_downs, w, where_add, dropout)
        self.encoder = LatentEncoder(encoder, output_nc, nz, w, e_depth) if encoder else None
        self.discriminators = nn.ModuleDict(
            {p: PatchDiscriminator(output_nc, w, d_layers, d_scales) for p in PATHS if p in paths}
        )
        init_weights(self)

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this (the U-Net's and the encoder's)."""
        return max(self.generator.stride, self.encoder.stride if self.encoder is not None else 1)

    def forward(self, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``a (B, input_nc, H, W)``, ``z (B, nz)`` -> ``B^ (B, output_nc, H, W)``, all in [-1, 1]."""
        _check_image("bicyclegan", a, self.generator.input_nc, self.stride)
        return self.generator(a, z)

    def encode(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``b (B, output_nc, H, W)`` -> ``(mu, logvar)`` of q(z | B), each ``(B, nz)``."""
        if self.encoder is None:
            raise ValueError("bicyclegan: this model has no encoder (built with encoder=None)")
        return self.encoder(b)

    def sample_z(
        self, n: int, *, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """``n`` latent codes from the prior N(0, I): ``(n, nz)``."""
        return torch.randn(n, self.nz, generator=generator, device=device)


@register_model
def bicyclegan(
    nz: int = NZ,
    where_add: str = "all",
    encoder: str | None = "resnet",
    num_downs: int = 8,
    width: float = 1.0,
    input_nc: int = 3,
    output_nc: int = 3,
    paths: Sequence[str] = PATHS,
    d_layers: int = 3,
    d_scales: int = 2,
    e_depth: int = 5,
    dropout: bool = True,
) -> BicycleGAN:
    """BicycleGAN networks (thesis ch. 4); defaults are the thesis's final model at 256 px (see the module)."""
    return BicycleGAN(
        nz=nz, where_add=where_add, encoder=encoder, num_downs=num_downs, width=width, input_nc=input_nc,
        output_nc=output_nc, paths=tuple(paths), d_layers=d_layers, d_scales=d_scales, e_depth=e_depth,
        dropout=dropout,
    )  # fmt: skip


register_description("bicyclegan", translation_description())
