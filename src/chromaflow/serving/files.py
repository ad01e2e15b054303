"""The ``colorize`` step: colorize image files on disk with the service the endpoint runs, no server.

    chromaflow colorize photos/ old.jpg --out runs/colorized                  # the shipped automatic model
    chromaflow colorize photos/ --out runs/guided --model guided              # the shipped guided model, no hints
    chromaflow colorize photos/ --out runs/edit --model guided --hints clicks.json # ... with user points
    chromaflow colorize scan.png --out runs/c --weights runs/train/model.safetensors --output jpeg --T 0.5

Every file goes through the same :class:`~chromaflow.serving.service.ColorizeService` (or, for a ``siggraph17``
model, :class:`~chromaflow.serving.guided.GuidedService`) as an HTTP request would: the same
decoding and limits, the archive's served settings (``serving/*model-config.yaml``: network input size, decoding
method), the same output encoding (PNG keeps alpha). A file the endpoint would refuse is listed with the
endpoint's reason and the others go on; every output is written atomically; ``colorize.json`` in ``--out`` lists
what was written and what was rejected.

Inputs: files, and folders (every non-hidden file below them, recursively, in sorted order; non-images are
listed as rejected, never skipped silently). Nothing outside the inputs is read: symbolic links, fifos, sockets
and devices found in a folder are listed as rejected (``--follow-symlinks`` follows the links that stay inside
that folder); a file named on the command line is read even if it is a link (it is what was asked for), but only
if it is a regular file. Output names: ``<stem>.<png|jpeg>`` for a file, the path relative to the folder for a
folder's files (the output folder itself is never read); a second input with the same output name is rejected.
Odd modes and formats (CMYK, 16-bit, float, animated, TIFF, BMP) follow the ingest policy,
:func:`chromaflow.data.images.accept_image` (what was done is noted in ``written``).

``colorize.json`` is written atomically once the batch has started: when it ends, and also when it is interrupted
(Ctrl-C) or crashes, with the files not reached in ``not_processed``. A file that cannot be written (its output
folder cannot be created) is that file's rejection (``write_failed``); the batch goes on. Names are recorded as
text (bytes that are not UTF-8 as ``\\xNN``) and escaped in log lines.

Hints (guided model only): ``--hints`` is a JSON object from an input's name (its path relative to the folder
given, or the file name of a file given, e.g. ``"trip/b.png"``) to the ``hints`` list of the guided endpoint
(``[{"x": 10, "y": 20, "r": 200, "g": 30, "b": 30}, ...]`` or ``a``/``b`` instead of ``r``/``g``/``b``; pixels
of the original image). Files without an entry get no hints; a name that matches no input is an error.
"""

from __future__ import annotations

import argparse
import base64
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

from PIL import UnidentifiedImageError

from chromaflow.color import UPSAMPLE_METHODS
from chromaflow.data.images import ACCEPTED_FORMATS, ImageRejected, accept_image, open_image
from chromaflow.data.sources import display_name, read_regular, walk_folder
from chromaflow.export.mar import served_settings
from chromaflow.io import read_json, write_bytes, write_json
from chromaflow.logs import printable, progress
from chromaflow.models import described_models, load_weights
from chromaflow.models.inference import pick_device
from chromaflow.models.shipped import shipped_weights
from chromaflow.serving.guided import GuidedService
from chromaflow.serving.request import IMAGE_FORMATS, OUTPUT_FORMATS, T_RANGE, Request
from chromaflow.serving.service import ColorizeService

log = logging.getLogger(__name__)

MANIFEST = "colorize.json"
SUFFIX = {"png": ".png", "jpeg": ".jpg"}


class InputFile(NamedTuple):
    """One input: ``path`` as the user sees it (the folder given / its relative path, or the file named), ``name``
    (the path relative to the folder given, or the file name: the output's name), ``source`` (what to open: a
    regular file's own path, a followed link's target) and ``follow`` (the file was named itself: a link is
    followed, as ``cat`` would; a folder's files are opened with ``O_NOFOLLOW``)."""

    path: Path
    name: Path
    source: Path
    follow: bool


def list_inputs(
    inputs: Sequence[str | os.PathLike],
    skip: str | os.PathLike | None = None,
    *,
    follow_symlinks: bool = False,
) -> tuple[list[InputFile], list[tuple[Path, str]]]:
    """``([InputFile], [(path, reason)])``: every input file in order, and what was found but not taken.
    Folders are walked recursively without
       leaving them (:func:`chromaflow.data.sources.walk_folder`: links, fifos and devices are the second list;
       hidden files and folders, and ``skip``, the output folder, are left out).
       Raises ``FileNotFoundError`` naming an input that does not exist.
    """
    out: list[InputFile] = []
    refused: list[tuple[Path, str]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files, rejected = walk_folder(path, follow_symlinks=follow_symlinks, skip_hidden=True, exclude=skip)
            out += [InputFile(path / rel, Path(rel), Path(f), False) for rel, f in files]
            refused += [(path / r["path"], r["reason"]) for r in rejected]
        elif path.exists() or path.is_symlink():  # a file, or a fifo/device/broken link: read_regular says which
            out.append(InputFile(path, Path(path.name), path, True))
        else:
            raise FileNotFoundError(f"colorize: input {path} does not exist")
    return out, refused


def load_service(
    model: str = "colorization",
    weights: str | os.PathLike | None = None,
    *,
    size: int | None = None,
    method: str | None = None,
    upsample: str | None = None,
    device: str | None = None,
) -> ColorizeService | GuidedService:
    """The service of the shipped model ``model`` (hash-checked against its card), or of the ``weights`` file.

    Its settings are those its archive is served with (:func:`chromaflow.export.mar.served_settings`), with
    ``size`` (network input side), ``method`` (``eccv16`` decoding) and ``upsample`` (``eccv16``: ``bilinear`` |
    ``guided`` chroma upsampling) overriding them when given.
    """
    try:
        dev = pick_device(device or "auto")
    except (RuntimeError, ValueError) as exc:  # torch.device("bogus") is a RuntimeError
        raise ValueError(f"colorize: device {device!r}: {exc}") from None
    if weights is None:
        weights, card = shipped_weights(model)
        sha, meta = card["sha256"], {"name": model, "sha256": card["sha256"]}
    else:
        sha, meta = None, {"name": Path(weights).name}
    net = load_weights(weights, sha, device=dev)
    arch = net.config["name"]
    description = described_models().get(arch)
    if description is None or description.handler not in ("colorize", "guided"):
        raise ValueError(f"colorize: {weights} holds a {arch!r} model, not a colorization model")
    guided = description.handler == "guided"  # the handler export packs it with
    if guided and method is not None:
        raise ValueError("colorize: --method applies to the automatic (eccv16) model only")
    if guided and upsample is not None:
        raise ValueError("colorize: --upsample applies to the automatic (eccv16) model only")
    overrides = {k: v for k, v in (("size", size), ("method", method), ("upsample", upsample)) if v is not None}
    config = {**asdict(served_settings(arch)), **overrides}
    if guided:
        return GuidedService(net, config, meta, "colorize_guided")
    return ColorizeService(net, config, meta)


def _policy(data: bytes, max_pixels: int) -> tuple[bytes, list[str]]:
    """The file's bytes as the endpoint should get them, and the notes of :func:`accept_image`.

    Files the endpoint decodes as they are (PNG / JPEG / WebP needing no conversion) keep their bytes, so the
    endpoint's own decoding and limits apply; odd modes and formats are converted by the shared policy and sent
    as a lossless PNG (alpha kept). A file in no accepted format is refused here (no other decoder is tried); one
    that opens but fails later (a bomb, a corrupt header) is sent as it is: the endpoint names its fault.
    Raises ``ImageRejected`` (policy refusal) and ``OSError`` (pixels truncated or corrupt).
    """
    try:
        img = open_image(data, max_pixels)
    except UnidentifiedImageError:
        raise ImageRejected(
            "not_an_image", f"not an image in an accepted format ({', '.join(ACCEPTED_FORMATS)})"
        ) from None
    except Exception:  # noqa: BLE001 - a bomb, a corrupt header: the endpoint's decoder says which
        return data, []
    with img:
        converted, notes = accept_image(img, keep_alpha=True)
        if not notes and img.format in IMAGE_FORMATS:
            return data, []
        buf = io.BytesIO()
        converted.save(buf, "PNG", compress_level=1)
        return buf.getvalue(), notes or [f"{img.format} sent as PNG"]


def _request(
    service: ColorizeService | GuidedService, data: bytes, output: str, T: float | None, hints: list | None
) -> Request:
    if isinstance(service, GuidedService):  # its endpoint takes JSON: the image and the hints
        return Request(body={"image": base64.b64encode(data).decode("ascii"), "output": output, "hints": hints})
    params = {"output": output} | ({} if T is None else {"T": repr(T)})
    return Request(body=data, content_type="application/octet-stream", params=params)


def colorize_files(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    model: str = "colorization",
    weights: str | os.PathLike | None = None,
    output: str = "png",
    T: float | None = None,
    size: int | None = None,
    method: str | None = None,
    upsample: str | None = None,
    device: str | None = None,
    hints: str | os.PathLike | dict[str, list] | None = None,
    follow_symlinks: bool = False,
) -> dict[str, Any]:
    """Colorize every input file into ``out``; return the manifest (also written to ``out/colorize.json``).

    Args:
        inputs: files and folders (see the module docstring for how they are listed and named).
        model, weights: a shipped model's name, or a ``save_weights`` file (``eccv16`` or ``siggraph17``).
        output: ``png`` (alpha kept) or ``jpeg``.
        T: annealed-mean temperature (``eccv16`` only; default the model's contract T).
        size, method, upsample: override the served network input size / decoding method / chroma upsampling.
        hints: guided model only: ``{input name: hints list}`` or a JSON file holding it (module docstring).
        follow_symlinks: follow symbolic links found in an input folder whose target stays inside it.
    Returns ``{"model", "settings", "output", "T" (the temperature used; ``None`` where none applies), "written":
    [{"input", "output", "notes"?}], "rejected": [{"input", "status", "error", "message"}], "not_processed":
    [input]}``. Raises ``ValueError`` / ``FileNotFoundError`` for a bad model, option or input path (before any
    work); re-raises ``KeyboardInterrupt`` after writing ``colorize.json``.
    """
    if output not in OUTPUT_FORMATS:
        raise ValueError(f"colorize: output must be one of {OUTPUT_FORMATS}, got {output!r}")
    if T is not None and not T_RANGE[0] <= T <= T_RANGE[1]:
        raise ValueError(f"colorize: T must be in [{T_RANGE[0]}, {T_RANGE[1]}], got {T}")
    files, refused = list_inputs(inputs, skip=out, follow_symlinks=follow_symlinks)
    if not files and not refused:
        raise ValueError(f"colorize: no files in {[str(p) for p in inputs]}")
    by_name = _read_hints(hints, [display_name(f.name.as_posix()) for f in files])
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"colorize: --out {out} is not a folder")
    service = load_service(model, weights, size=size, method=method, upsample=upsample, device=device)
    if T is not None and not isinstance(service, ColorizeService):
        raise ValueError("colorize: --T applies to the automatic (eccv16) model only")
    if by_name and isinstance(service, ColorizeService):
        raise ValueError("colorize: --hints needs the guided model (--model guided or siggraph17 weights)")
    annealed = isinstance(service, ColorizeService) and service.config.method == "annealed_mean"
    written: list[dict[str, Any]] = []
    rejected = [_rejection(path, 400, "not_a_file", reason) for path, reason in refused]
    taken: dict[Path, Path] = {}
    manifest = {
        "model": service.model_info,
        "hints": {k: len(v) if isinstance(v, list) else None for k, v in by_name.items()},  # counts
        "settings": asdict(service.config),
        "output": output,
        "T": (service.model.config["contract"]["T"] if T is None else T) if annealed else None,  # the T used
        "written": written,
        "rejected": rejected,
        "not_processed": [],
    }
    try:
        for path, name, source, follow in progress(files, total=len(files), desc="colorize"):
            target = out / name.parent / f"{Path(name.name).stem}{SUFFIX[output]}"
            if target in taken:
                msg = f"output {display_name(str(target))} is already {display_name(str(taken[target]))}'s"
                rejected.append(_rejection(path, 409, "name_collision", msg))
                continue
            taken[target] = path
            hint = by_name.get(display_name(name.as_posix()))
            done = _colorize_one(service, path, source, follow, target, output, T, hint)
            (written if "output" in done else rejected).append(done)
    except BaseException:  # Ctrl-C or a crash: what is done is kept and listed, the rest is listed as not reached
        n_done = len(written) + len(rejected) - len(refused)
        manifest["not_processed"] = [display_name(str(f.path)) for f in files[n_done:]]
        raise
    finally:
        write_json(out / MANIFEST, manifest)
        for r in rejected:
            log.warning("colorize: rejected %s: %s (%s)", printable(r["input"]), printable(r["message"]), r["error"])
    return manifest


def _colorize_one(
    service: ColorizeService | GuidedService,
    path: Path,
    source: Path,
    follow: bool,
    target: Path,
    output: str,
    T: float | None,
    hints: list | None,
) -> dict[str, Any]:
    """Colorize ``source`` into ``target``: its ``written`` record (``{input: path, output[, notes]}``) or its
    rejection (:class:`InputFile` says what ``path``, ``source`` and ``follow`` are)."""
    try:
        data = read_regular(source, follow_symlinks=follow)
    except (OSError, ValueError) as exc:
        return _rejection(path, 400, "unreadable", str(exc))
    try:
        data, notes = _policy(data, service.config.max_pixels)
    except ImageRejected as exc:
        return _rejection(path, 400 if exc.kind == "not_an_image" else 415, exc.kind, exc.reason)
    except (OSError, SyntaxError, EOFError) as exc:
        return _rejection(path, 400, "truncated_image", f"the image is truncated or corrupt ({exc})")
    except Exception as exc:  # noqa: BLE001 - a decoder bug on one hostile file must not stop the batch
        return _rejection(path, 500, "internal_error", f"{type(exc).__name__}: {exc}")
    try:
        resp = service.handle([_request(service, data, output, T, hints)])[0]
    except Exception as exc:  # noqa: BLE001 - a decoder bug on one hostile file must not stop the batch
        return _rejection(path, 500, "internal_error", f"{type(exc).__name__}: {exc}")
    if resp.status != 200:
        err = resp.json()
        return _rejection(path, resp.status, err.get("error", ""), err.get("message", ""))
    try:
        write_bytes(target, resp.body)
    except OSError as exc:  # e.g. its output subfolder is a file, or the disk is full
        return _rejection(path, 500, "write_failed", f"cannot write {display_name(str(target))}: {exc.strerror or exc}")
    done = {"input": display_name(str(path)), "output": display_name(str(target))}
    return done | ({"notes": notes} if notes else {})


def _read_hints(hints: str | os.PathLike | dict[str, list] | None, names: list[str]) -> dict[str, list]:
    """``{input name: hints list}`` from a mapping or a JSON file; ``ValueError`` naming a bad file or an unknown
    name (a typo must not leave a photo without its clicks). The hints themselves are checked by the endpoint."""
    if hints is None:
        return {}
    if not isinstance(hints, dict):
        try:
            hints = read_json(hints)
        except (OSError, ValueError) as exc:
            raise ValueError(f"colorize: hints file {hints}: {exc}") from None
    if not isinstance(hints, dict):
        raise ValueError(f"colorize: hints must be a JSON object {{input name: [hints]}}, got {type(hints).__name__}")
    unknown = sorted(set(hints) - set(names))
    if unknown:
        raise ValueError(f"colorize: hints for {unknown}, which match no input (inputs: {names[:10]})")
    return dict(hints)


def _rejection(path: Path, status: int, error: str, message: str) -> dict[str, Any]:
    return {"input": display_name(str(path)), "status": status, "error": error, "message": message}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (walked recursively)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (images + colorize.json)")
    parser.add_argument(
        "--model",
        default="colorization",
        help="shipped model in weights/: colorization | guided (default: %(default)s)",
    )
    parser.add_argument("--weights", default=None, help="a save_weights file instead of a shipped model")
    parser.add_argument(
        "--output", default="png", choices=OUTPUT_FORMATS, help="output image format (default: %(default)s)"
    )
    parser.add_argument(
        "--T",
        type=float,
        default=None,
        help="annealed-mean temperature of the automatic model (default: the model's contract T, 0.38)",
    )
    parser.add_argument("--size", type=int, default=None, help="network input side (default: the served one)")
    parser.add_argument("--method", default=None, help="annealed_mean | mean | mode (default: the served one)")
    parser.add_argument(
        "--upsample",
        default=None,
        choices=UPSAMPLE_METHODS,
        help="chroma upsampling of the automatic model: bilinear (thesis) | guided by full-res L (default: served)",
    )
    parser.add_argument("--device", default=None, help="cpu | cuda | mps (default: the best available)")
    parser.add_argument("--hints", default=None, help="guided model: JSON {input name: [{x, y, r, g, b}, ...]}")
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="follow symbolic links inside an input folder (default: list them as rejected)",
    )


def main(args: argparse.Namespace) -> int:
    """0: every input colorized; 1: some rejected (listed in colorize.json and the log); 2: nothing could start
    (bad option, model or input path); 130: interrupted (Ctrl-C; colorize.json lists what was done)."""
    try:
        manifest = colorize_files(
            args.inputs,
            args.out,
            model=args.model,
            weights=args.weights,
            output=args.output,
            T=args.T,
            size=args.size,
            method=args.method,
            upsample=args.upsample,
            device=args.device,
            hints=args.hints,
            follow_symlinks=args.follow_symlinks,
        )
    except KeyboardInterrupt:
        log.error("colorize interrupted: %s lists what was done and what was not", printable(Path(args.out) / MANIFEST))
        return 130
    except (ValueError, OSError) as exc:
        log.error("colorize failed: %s", printable(exc))
        return 2
    n_ok, n_bad = len(manifest["written"]), len(manifest["rejected"])
    print(f"{n_ok} colorized, {n_bad} rejected -> {printable(args.out)} ({MANIFEST} lists both)")
    return 1 if n_bad else 0
