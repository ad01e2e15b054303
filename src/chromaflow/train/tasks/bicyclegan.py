"""BicycleGAN and the five other variants of thesis Fig. 4.6: ``--task bicyclegan --variant V``.

    chromaflow prepare-pairs --source ../shared/datasets/bsds500 --out runs/bsds/pairs --max-side 128
    chromaflow train --task bicyclegan --variant bicyclegan --data runs/bsds/pairs --out runs/bg/bicyclegan \\
        --size 64 --width 0.25 --batch-size 2 --steps 2000 --lr 2e-4 --beta1 0.5 --beta2 0.999 --weight-decay 0

(The original trains with Adam lr 2e-4, betas (0.5, 0.999), no weight decay, batch 2 split into one image
per path; the engine's flags default to ch. 2's Adam, so pass those.)

Variants (:data:`VARIANTS`): which terms of Eq. 4.9 are on. ``encoded`` path: z from E(B) (sampled with
the KL term: cVAE; its mean without: cAE), ``B^ = G(A, z)``, image L1 to B and D_encoded; ``random``
path: z ~ N(0, I), ``B^ = G(A, z)``, judged by D_random; pix2pix+noise adds the image L1 to B there,
cLR-GAN and BicycleGAN regress ``|z - mu(E(B^))|_1``. With both paths the batch is split as in the
original: the first half feeds both generators, the second half gives D_random its real images.

Step order (the original's ``optimize_parameters``): one forward of every path; then G and E together on
the sum of their terms with the discriminators frozen, where the latent term reaches G only ("E fixed",
thesis 4.3.5; E runs with detached weights for it) except in cLR-GAN, where E has no other signal;
then each discriminator on its path's real and (detached) fake images with the LSGAN loss.
Validation: ``val_recon_l1`` = mean ``|B - G(A, mu(E(B)))|`` on [-1, 1] images (Table 4.1) and
``val_latent_l1`` = mean ``|z - mu(E(G(A, z)))|`` for fixed random z (when the variant has an encoder).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, Dataset, Subset

from chromaflow.models import create_model
from chromaflow.models.bicyclegan import ENCODERS, MIN_DOWNS, NZ, WHERE_ADD
from chromaflow.train import losses_gan as L
from chromaflow.train.engine import Task, TrainConfig

log = logging.getLogger(__name__)

MAX_DOWNS = 8  # the original's deepest U-Net (unet_256)
VAL_SEED = 1234  # the fixed z of the validation latent-recovery check


@dataclasses.dataclass(frozen=True)
class Variant:
    """Which terms of Eq. 4.9 one Fig. 4.6 row trains with."""

    encoded: bool  # the B -> z -> B^ path (image L1 + D_encoded)
    kl: bool  # z sampled from E(B) with the KL term (cVAE) rather than z = mu (cAE)
    random_gan: bool  # the z -> B^ path judged by D_random
    random_l1: bool  # image L1 on the random path (pix2pix+noise)
    latent: bool  # latent regression |z - E(G(A, z))|
    latent_trains_encoder: bool  # the latent term also updates E (cLR-GAN alone: E has no other signal)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p for p, on in (("encoded", self.encoded), ("random", self.random_gan)) if on)

    @property
    def has_encoder(self) -> bool:
        return self.encoded or self.latent


VARIANTS: dict[str, Variant] = {
    "pix2pix_noise": Variant(False, False, True, True, False, False),
    "cae_gan": Variant(True, False, False, False, False, False),
    "cvae_gan": Variant(True, True, False, False, False, False),
    "cvae_gan_pp": Variant(True, True, True, False, False, False),
    "clr_gan": Variant(False, False, True, False, True, True),
    "bicyclegan": Variant(True, True, True, False, True, False),
}


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(B, C, H, W)`` in [0, 255] -> float in [-1, 1] (the networks' range)."""
    return x.float() / 127.5 - 1.0


def default_downs(size: int) -> int:
    """The deepest U-Net (<= :data:`MAX_DOWNS` levels) whose stride divides ``size``: 6 at 64 px, 8 at 256 px."""
    n = 0
    while n < MAX_DOWNS and size % 2 ** (n + 1) == 0:
        n += 1
    if n < MIN_DOWNS:
        raise ValueError(f"--size {size}: must be divisible by 2**{MIN_DOWNS} = {2**MIN_DOWNS} (the U-Net's stride)")
    return n


class BicycleGANTask(Task):
    """Train one :data:`VARIANTS` row on ``{"a", "b"}`` pairs (uint8 ``(1|3, S, S)`` input, ``(3, S, S)`` target).

    Args:
        train_set, val_set: pair datasets (``chromaflow.data.pair_dataset.PairDataset``).
        variant: a key of :data:`VARIANTS`; size: S; nz, where_add, encoder, width, num_downs: model knobs
        (``num_downs`` None: :func:`default_downs`); input_nc / output_nc: channels of A / B.
    """

    name = "bicyclegan"

    def __init__(
        self, train_set: Dataset, val_set: Dataset | None = None, *, variant: str = "bicyclegan", size: int = 64,
        nz: int = NZ, where_add: str = "all", encoder: str = "resnet", width: float = 1.0,
        num_downs: int | None = None, input_nc: int = 1, output_nc: int = 3, data: str | None = None,
    ) -> None:  # fmt: skip
        if variant not in VARIANTS:
            raise ValueError(f"--variant must be one of {list(VARIANTS)}, got {variant!r}")
        self.train_set, self.val_set, self.variant, self.v = train_set, val_set, variant, VARIANTS[variant]
        self.size, self.nz, self.where_add, self.encoder, self.width = size, nz, where_add, encoder, width
        self.num_downs = default_downs(size) if num_downs is None else num_downs
        self.input_nc, self.output_nc, self.data = input_nc, output_nc, data

    # ------------------------------------------------------------------------------------------ model
    def build_model(self) -> nn.Module:
        model = create_model(
            "bicyclegan", nz=self.nz, where_add=self.where_add, encoder=self.encoder if self.v.has_encoder else None,
            num_downs=self.num_downs, width=self.width, input_nc=self.input_nc, output_nc=self.output_nc,
            paths=self.v.paths,
        )  # fmt: skip
        for d in model.discriminators.values():
            if self.size < d.min_size:
                raise ValueError(f"--size {self.size}: below the discriminators' minimum side {d.min_size}")
        if self.size % model.stride:
            raise ValueError(f"--size {self.size}: not divisible by the networks' stride {model.stride}")
        return model

    def optimizers(self, model: nn.Module, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        """``ge`` (G and E), and one ``d_<path>`` per discriminator; Adam with the engine's settings."""

        def adam(params: Any) -> torch.optim.Optimizer:
            return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)

        ge = list(model.generator.parameters()) + (list(model.encoder.parameters()) if model.encoder else [])
        return {"ge": adam(ge), **{f"d_{p}": adam(d.parameters()) for p, d in model.discriminators.items()}}

    def collate(self, items: list[Any]) -> dict[str, Any]:
        from chromaflow.data.pair_dataset import collate

        return collate(items)

    # ------------------------------------------------------------------------------------------- step
    def _halves(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(A, B)`` feeding the generators and the real images of D_random (the other half with two paths)."""
        if not (self.v.encoded and self.v.random_gan):
            return a, b, b
        n = a.shape[0]
        if n % 2:
            raise ValueError(f"bicyclegan: variant {self.variant} splits each batch in two; batch size {n} is odd")
        return a[: n // 2], b[: n // 2], b[n // 2 :]

    def forward_paths(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Every tensor one step needs: fakes, codes, the encoder's outputs (by name)."""
        a, b = to_unit(batch["a"]), to_unit(batch["b"])
        a1, b1, real_random = self._halves(a, b)
        out: dict[str, torch.Tensor] = {"a": a1, "b": b1, "real_random": real_random}
        if self.v.encoded:
            mu, logvar = model.encode(b1)
            out |= {"mu": mu, "logvar": logvar}
            out["fake_encoded"] = model(a1, L.reparameterize(mu, logvar) if self.v.kl else mu)
        if self.v.random_gan:
            z = model.sample_z(a1.shape[0], device=a1.device)
            out |= {"z_random": z, "fake_random": model(a1, z)}
            if self.v.latent:
                params = dict(model.encoder.named_parameters())
                if not self.v.latent_trains_encoder:  # "E fixed": the term reaches G only
                    params = {k: p.detach() for k, p in params.items()}
                out["mu_random"] = functional_call(model.encoder, params, (out["fake_random"],))[0]
        return out

    def generator_loss(self, model: nn.Module, t: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The G/E objective (Eq. 4.9's terms of this variant) with the discriminators as they are."""
        terms: dict[str, torch.Tensor] = {}
        if self.v.encoded:
            terms["g_gan_encoded"] = L.LAMBDA_GAN * L.lsgan(model.discriminators["encoded"](t["fake_encoded"]), True)
            terms["l1_image"] = L.LAMBDA_IMG * L.image_l1(t["fake_encoded"], t["b"])
            if self.v.kl:
                terms["kl"] = L.LAMBDA_KL * L.kl_to_prior(t["mu"], t["logvar"])
        if self.v.random_gan:
            terms["g_gan_random"] = L.LAMBDA_GAN * L.lsgan(model.discriminators["random"](t["fake_random"]), True)
            if self.v.random_l1:
                terms["l1_image"] = L.LAMBDA_IMG * L.image_l1(t["fake_random"], t["b"])
            if self.v.latent:
                terms["l1_latent"] = L.LAMBDA_LATENT * L.latent_l1(t["mu_random"], t["z_random"])
        total = torch.stack(list(terms.values())).sum()
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def discriminator_loss(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """LSGAN loss of one discriminator: real -> 1, (detached) fake -> 0."""
        return L.lsgan(d(real), True) + L.lsgan(d(fake.detach()), False)

    def train_step(
        self, model: nn.Module, batch: Mapping[str, Any], optimizers: Mapping[str, torch.optim.Optimizer]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        t = self.forward_paths(model, batch)
        model.discriminators.requires_grad_(False)
        optimizers["ge"].zero_grad(set_to_none=True)
        loss, logs = self.generator_loss(model, t)
        loss.backward()
        optimizers["ge"].step()
        model.discriminators.requires_grad_(True)
        fakes = {"encoded": ("b", "fake_encoded"), "random": ("real_random", "fake_random")}
        for path, d in model.discriminators.items():
            opt = optimizers[f"d_{path}"]
            opt.zero_grad(set_to_none=True)
            real, fake = fakes[path]
            d_loss = self.discriminator_loss(d, t[real], t[fake])
            d_loss.backward()
            opt.step()
            logs[f"d_{path}"] = float(d_loss.detach())
        return loss, logs

    # ------------------------------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
        """``val_recon_l1`` (Table 4.1's ``|B - G(A, E(B))|_1``; z ~ N(0, I) without an encoder) and
        ``val_latent_l1`` (``|z - mu(E(G(A, z)))|_1``, fixed z), means over the val pairs."""
        gen = torch.Generator().manual_seed(VAL_SEED)
        recon, latent, n = 0.0, 0.0, 0
        for batch in loader:
            a, b = to_unit(batch["a"].to(device)), to_unit(batch["b"].to(device))
            z = model.sample_z(a.shape[0], generator=gen).to(device)
            code = model.encode(b)[0] if model.encoder is not None else z
            recon += float(L.image_l1(model(a, code), b)) * a.shape[0]
            if model.encoder is not None:
                latent += float(L.latent_l1(model.encode(model(a, z))[0], z)) * a.shape[0]
            n += a.shape[0]
        out = {"val_recon_l1": recon / max(n, 1)}
        if model.encoder is not None:
            out["val_latent_l1"] = latent / max(n, 1)
        return out

    def params(self) -> dict[str, Any]:
        return {
            "variant": self.variant, "size": self.size, "nz": self.nz, "where_add": self.where_add,
            "encoder": self.encoder, "width": self.width, "num_downs": self.num_downs, "input_nc": self.input_nc,
            "output_nc": self.output_nc, "lambda_img": L.LAMBDA_IMG, "lambda_latent": L.LAMBDA_LATENT,
            "lambda_kl": L.LAMBDA_KL, "n_train": len(self.train_set), "data": self.data,
        }  # fmt: skip

    def data_path(self) -> str | None:
        return self.data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The task's own flags (engine flags come from train/cli)."""
    parser.add_argument("--data", help="paired data folder (output of `chromaflow prepare-pairs`)")
    parser.add_argument("--variant", choices=list(VARIANTS), default="bicyclegan", help="Fig. 4.6 row to train")
    parser.add_argument("--size", type=int, default=64, help="image side in px (a multiple of 32)")
    parser.add_argument("--nz", type=int, default=NZ, help="|z| (the thesis studies 2, 8, 256)")
    parser.add_argument("--where-add", choices=WHERE_ADD, default="all", help="z at the input or every layer of G")
    parser.add_argument("--encoder", choices=ENCODERS, default="resnet", help="E_ResNet or E_CNN")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (1 = 64 base channels)")
    parser.add_argument("--num-downs", type=int, default=None, help="U-Net levels (default: deepest for --size)")
    parser.add_argument("--val-limit", type=int, default=200, help="validate on the first N val pairs (0: all)")


def build(args: argparse.Namespace) -> BicycleGANTask:
    """``BicycleGANTask`` over ``PairDataset(args.data)`` (train split; the first ``--val-limit`` val pairs)."""
    from chromaflow.data.pair_dataset import PairDataset

    if not args.data:
        raise ValueError("--data is required (a folder written by `chromaflow prepare-pairs`)")
    if not Path(args.data).is_dir():
        raise FileNotFoundError(f"--data: {args.data} is not a folder")
    train = PairDataset(args.data, split="train", size=args.size, train=True)
    val: Dataset | None = None
    try:
        val = PairDataset(args.data, split="val", size=args.size, train=False)
        val = Subset(val, range(min(args.val_limit, len(val)))) if args.val_limit else val
    except ValueError as e:
        log.info("no validation pairs in %s (%s): validation skipped", args.data, e)
    return BicycleGANTask(
        train, val, variant=args.variant, size=args.size, nz=args.nz, where_add=args.where_add,
        encoder=args.encoder, width=args.width, num_downs=args.num_downs, data=str(args.data),
    )  # fmt: skip
