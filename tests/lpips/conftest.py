"""Fixtures of the LPIPS tests: reference patches, Kodak crops, the official package built without downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

SQUEEZE = "squeezenet1_1/squeezenet1_1_caffe_folded_torchvision_norm_tvkeys.pth"


def load_rgb(path: Path) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="session")
def ref_pairs(shared_datasets) -> tuple[torch.Tensor, torch.Tensor]:
    """x0, x1 (6, 3, 64, 64): the LPIPS example patches (ref vs p0/p1) and 4 Kodak crops vs shifted crops."""
    d = shared_datasets / "lpips_reference_imgs"
    ref, p0, p1 = (load_rgb(d / f"ex_{n}.png") for n in ("ref", "p0", "p1"))
    x0, x1 = [ref, ref], [p0, p1]
    for k, (y, x) in zip((1, 5, 13, 23), ((100, 200), (300, 50), (40, 600), (250, 400)), strict=True):
        im = load_rgb(shared_datasets / "kodak24" / f"kodim{k:02d}.png")
        x0.append(im[:, y : y + 64, x : x + 64])
        x1.append(im[:, y + 3 : y + 67, x + 2 : x + 66])
    return torch.stack(x0), torch.stack(x1)


@pytest.fixture(scope="session")
def squeeze_state(shared_datasets) -> dict[str, torch.Tensor]:
    return torch.load(shared_datasets / SQUEEZE, map_location="cpu", weights_only=True)


def official_model(net: str, version: str, trunk: dict[str, torch.Tensor], lin_dir: Path, spatial: bool = False):
    """The official ``lpips.LPIPS`` (its own forward code) holding ``trunk`` and the official ``w`` from ``lin_dir``.

    Built on the meta device (no download, and torchvision's big classifier heads are never initialised),
    then every tensor is loaded strictly.
    """
    import warnings

    import lpips

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        m = lpips.LPIPS(net=net, version=version, pretrained=False, pnet_rand=True, spatial=spatial, verbose=False)
    m = m.to_empty(device="cpu")
    m.scaling_layer = lpips.lpips.ScalingLayer()
    lin = torch.load(lin_dir / f"v{version}" / f"{net}.pth", map_location="cpu", weights_only=True)
    lin.update({f"lins.{k[3:]}": v for k, v in list(lin.items())})  # the same tensors under the ModuleList alias
    state = {k: trunk["features." + k.split(".", 2)[2]] for k in m.state_dict() if k.startswith("net.")}
    m.load_state_dict({**state, **lin, **{f"scaling_layer.{k}": v for k, v in m.scaling_layer.state_dict().items()}})
    return m.eval()
