"""The ``translate`` step: N samples of a multimodal translator for one input file, with the endpoint's service,
no server.

    chromaflow translate --input sketch.png --samples 6 --seed 7 --out runs/variations          # shipped model
    chromaflow translate --model runs/bg/bicyclegan --input edges.png --style photo.jpg --samples 3 --out runs/s
    chromaflow translate --model model.safetensors --input edges.png --z codes.json --samples 2 --out runs/z

``--model``: a shipped model's name (``weights/<name>``, hash-checked against its card; default
:data:`SHIPPED`), a training run folder (its ``model.safetensors``) or a weights file. The input goes through
:class:`~chromaflow.serving.translate.TranslateService` as a JSON request would (same decoding, limits, options,
the archive's served settings from ``serving/translate-model-config.yaml``); a refusal is the endpoint's 4xx,
raised as a ``ValueError`` with its reason. Written atomically in ``--out``: ``<stem>_<k>.png`` for k = 0..N-1 and
``translate.json`` (the seed and codes z that reproduce them, the source of the codes, the files).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chromaflow.export.mar import served_settings
from chromaflow.io import read_json, write_bytes, write_json
from chromaflow.models import load_weights
from chromaflow.models.inference import pick_device
from chromaflow.models.shipped import WEIGHTS_FILE, shipped_weights
from chromaflow.serving.request import Request
from chromaflow.serving.translate import TranslateService

log = logging.getLogger(__name__)

MANIFEST = "translate.json"
SHIPPED = "bicyclegan"  # the shipped translator (weights/bicyclegan)


def load_translator(
    model: str | os.PathLike = SHIPPED, *, size: int | None = None, device: str = "auto"
) -> TranslateService:
    """The :class:`TranslateService` of ``model`` (a shipped name, a run folder or a weights file) with its
    archive's served settings (``size`` overrides the network's short side)."""
    path = Path(model)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if path.is_file():
        sha, meta = None, {"name": path.parent.name if path.name == WEIGHTS_FILE else path.name}
    elif os.sep in str(model) or str(model).endswith(".safetensors"):
        raise FileNotFoundError(f"translate: --model {model}: no such weights file or run folder")
    else:
        path, card = shipped_weights(str(model))
        sha, meta = card["sha256"], {"name": str(model), "sha256": card["sha256"]}
    net = load_weights(path, sha, device=pick_device(device))
    if net.config["name"] != TranslateService.architecture:
        raise ValueError(f"translate: {path} holds a {net.config['name']!r} model, not a bicyclegan translator")
    config = asdict(served_settings(net.config["name"])) | ({"size": size} if size is not None else {})
    return TranslateService(net, config, meta)


def translate_file(
    service: TranslateService,
    image: str | os.PathLike,
    out: str | os.PathLike,
    *,
    samples: int = 1,
    seed: int | None = None,
    z: list[list[float]] | None = None,
    style: str | os.PathLike | None = None,
    input_kind: str = "edges",
) -> dict[str, Any]:
    """Translate ``image`` into ``samples`` PNGs under ``out``; return (and write) the ``translate.json`` record."""
    image, out = Path(image), Path(out)

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode("ascii")

    body: dict[str, Any] = {"image": b64(image), "n": samples, "input_kind": input_kind}
    body |= {k: v for k, v in (("seed", seed), ("z", z)) if v is not None}
    if style is not None:
        body["style"] = b64(Path(style))
    resp = service.handle([Request(body=json.dumps(body).encode(), content_type="application/json")])[0]
    doc = resp.json()
    if resp.status != 200:
        raise ValueError(f"translate: {image}: {doc['error']}: {doc['message']}")
    files = []
    for k, data in enumerate(doc["images"]):
        name = f"{image.stem}_{k}.png"
        write_bytes(out / name, base64.b64decode(data))
        files.append(name)
    record = {
        "input": str(image),
        "style": None if style is None else str(style),
        "files": files,
        **{k: doc[k] for k in ("n", "seed", "source", "z", "inverted", "width", "height", "model")},
        "size": service.config.size,
    }
    write_json(out / MANIFEST, record)
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=SHIPPED, help=f"shipped name, run folder or weights file (default {SHIPPED})"
    )
    parser.add_argument("--input", type=Path, required=True, help="the input image: a boundary map or a gray photo")
    parser.add_argument("--samples", type=int, default=4, help="number of outputs N")
    codes = parser.add_mutually_exclusive_group()
    codes.add_argument("--seed", type=int, default=None, help="seed of the N codes drawn from N(0, I)")
    codes.add_argument("--z", default=None, help="the N codes: a JSON file or JSON text [[...nz numbers], ...]")
    codes.add_argument("--style", type=Path, default=None, help="a photo whose code (mu of E) gives sample 0")
    parser.add_argument("--input-kind", choices=("edges", "gray"), default="edges", help="what the input is")
    parser.add_argument("--size", type=int, default=None, help="network short side (default: the archive's)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--out", type=Path, required=True, help="output folder")


def main(args: argparse.Namespace) -> int:
    try:
        z = None
        if args.z is not None:
            z = read_json(args.z) if Path(args.z).is_file() else json.loads(args.z)
        service = load_translator(args.model, size=args.size, device=args.device)
        record = translate_file(
            service, args.input, args.out, samples=args.samples, seed=args.seed, z=z, style=args.style,
            input_kind=args.input_kind,
        )  # fmt: skip
    except (OSError, ValueError) as e:  # a refused input, an unreadable file, bad --z JSON: named, no traceback
        print(f"chromaflow translate: {e}", file=sys.stderr)
        return 2
    print(f"translate: {len(record['files'])} sample(s) of {args.input} in {args.out} (seed {record['seed']})")
    return 0
