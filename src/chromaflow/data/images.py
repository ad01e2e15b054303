"""Decode one untrusted image file into a clean 8-bit image of bounded size, or a reason to reject it.

Runs in prepare's worker processes, so it imports only PIL and numpy. The accept/convert policy for awkward
inputs is :func:`accept_image`, shared by ``prepare``, ``colorize`` and the endpoints (each conversion noted):

- formats: :data:`ACCEPTED_FORMATS` only (other PIL decoders are never tried on untrusted bytes);
- corrupt, truncated, zero-byte, non-image, unreadable: rejected with the reason;
- decompression bombs (more than ``max_pixels`` pixels): rejected (PIL's warning is an error here);
- EXIF orientation: applied;
- CMYK / YCbCr / other colour modes: converted to RGB with PIL (no ICC colour management);
- 16-bit and 32-bit integer grayscale (``I;16``, ``I``): scaled to 8 bit (``v / 257``);
- float (``F``, float TIFF): [0, 1] if its maximum is <= 1 (scaled by 255), else [0, 255]; clipped; NaN or
  infinite values: rejected (no honest 8-bit value for them);
- palette: expanded; alpha (``RGBA``, ``LA``, ``PA``, palette transparency): composited on white, or kept
  (``keep_alpha``, the endpoints re-attach it to a PNG answer);
- animated / multi-frame files: frame 0 is kept and the frame count noted (every viewer shows that frame as
  the still; a note, not a rejection, so no usable photo is lost);
- single-channel sources stay single-channel (gray, stored as ``L``).

Output: the image is resized (antialiased bicubic) so its longest side is <= ``max_side``. A JPEG source
that needs no change at all (no resize, no conversion, no rotation) keeps its original bytes; otherwise
JPEG sources are re-encoded as JPEG (quality 95, 4:4:4 chroma, no chroma subsampling so ab statistics
keep their detail) and all other sources as PNG (lossless).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default limit (about 9459 x 9459)
MAX_FILE_BYTES = 256 * 2**20  # larger files are rejected before reading them into memory
JPEG_QUALITY = 95
SAMPLE_SIDE = 32  # pixel sample prepare uses for the gray check (chroma is a global statistic)
# Decoders tried on untrusted bytes (PIL names; MPO: the JPEG of many phone cameras). PIL's other plugins
# (PSD, TGA, ICO, FITS, ...) are rarely photos and widen the attack surface for nothing.
ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "TIFF", "BMP")
Image.init()
_OPENERS = [f for f in ACCEPTED_FORMATS if f in Image.OPEN]  # MPO files are opened by the JPEG opener

ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncated files are errors, never half-grey images


def too_large(n_bytes: int | None) -> str | None:
    """Why a file of ``n_bytes`` is refused before it is read into memory (``None``: it is not; unknown size)."""
    if n_bytes is not None and n_bytes > MAX_FILE_BYTES:
        return f"file too large: {n_bytes} bytes > {MAX_FILE_BYTES}"
    return None


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (its default "linear" method) of a non-empty array, by one sort.

    Same value as numpy's; it skips numpy's generic machinery, which costs ~0.3 ms a call, more than
    the sort of the ~1,000-pixel samples prepare checks once per image.
    """
    s = np.sort(values, axis=None)
    pos = q / 100.0 * (s.size - 1)
    lo = int(pos)
    hi = min(lo + 1, s.size - 1)
    return float(s[lo]) + (pos - lo) * (float(s[hi]) - float(s[lo]))


class ImageRejected(ValueError):
    """An image the policy refuses: ``kind`` (``unsupported_format`` | ``unsupported_mode`` | ``bad_values``) and
    a ``reason`` a person can act on (also the exception message)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def accept_image(img: Image.Image, *, keep_alpha: bool = False) -> tuple[Image.Image, list[str]]:
    """The accept/convert policy (module docstring): an opened image -> ``(8-bit image, notes)``, or a rejection.

    ``img``: as :func:`open_image` returns it (loaded or not). Returns an image of mode ``L`` or ``RGB`` (``LA`` /
    ``RGBA`` too when ``keep_alpha``) with the EXIF orientation applied, and what was done to it (``[]``: the
    pixels are the file's own, ``img`` itself is returned). Raises :class:`ImageRejected` for a format outside
    :data:`ACCEPTED_FORMATS`, a mode PIL cannot convert, or float pixels that are NaN / infinite; ``OSError``
    (or ``SyntaxError`` / ``EOFError``) from decoding a truncated or corrupt file.
    """
    notes: list[str] = []
    if img.format is not None and img.format not in ACCEPTED_FORMATS:
        raise ImageRejected(
            "unsupported_format", f"image format {img.format} is not one of {', '.join(ACCEPTED_FORMATS)}"
        )
    n_frames = getattr(img, "n_frames", 1)
    if n_frames > 1:
        img.seek(0)
        notes.append(f"frame 0 of {n_frames} kept")
    img.load()  # a truncated or corrupt file raises its own OSError here, not a conversion error
    try:
        orientation = img.getexif().get(0x0112, 1)
        if orientation not in (None, 1):
            img = ImageOps.exif_transpose(img)
            notes.append(f"EXIF orientation {orientation} applied")
        return _to_8bit(img, notes, keep_alpha), notes
    except ImageRejected:
        raise
    except ValueError as exc:  # PIL has no conversion for the mode
        raise ImageRejected("unsupported_mode", f"image mode {img.mode} cannot be converted to RGB: {exc}") from None


def _to_8bit(img: Image.Image, notes: list[str], keep_alpha: bool = False) -> Image.Image:
    """Any PIL mode -> ``L`` or ``RGB`` (8 bit; ``LA`` / ``RGBA`` when ``keep_alpha``), noting what was done."""
    mode = img.mode
    if mode in ("RGB", "L") or (keep_alpha and mode in ("RGBA", "LA")):
        return img
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        notes.append(f"{mode} scaled to 8 bit")
        return Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ImageRejected("bad_values", "float image with NaN or infinite pixels: no 8-bit value for them")
        arr = arr * 255.0 if arr.size and arr.max() <= 1.0 else arr
        notes.append("float image clipped to 8 bit")
        return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if mode == "P" and not has_alpha:
        notes.append("palette expanded")
        return img.convert("RGB")
    if has_alpha:
        gray = mode in ("LA", "La")
        rgba = img.convert("RGBA")
        if keep_alpha:
            notes.append(f"{mode} converted to {'LA' if gray else 'RGBA'}")
            return rgba.convert("LA") if gray else rgba
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba).convert("L" if gray else "RGB")
        notes.append("alpha composited on white")
        return out
    notes.append(f"{mode} converted to RGB")
    return img.convert("RGB")


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """``Image.open`` of untrusted bytes, trying :data:`ACCEPTED_FORMATS` only (reads the header, no pixels).

    Raises ``UnidentifiedImageError`` (not an image in an accepted format), ``Image.DecompressionBombError``
    (more than ``max_pixels`` pixels; PIL's warning is an error here), ``OSError`` / ``SyntaxError`` (corrupt).
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=_OPENERS)
        except Image.DecompressionBombWarning as exc:
            raise Image.DecompressionBombError(str(exc)) from None


def process_image(data: bytes, max_side: int = 256, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """Decode, normalise and re-encode one image file.

    Returns ``{"ok": False, "reason": str}`` for a rejected file, else ``{"ok": True, "image": bytes,
    "format": "JPEG"|"PNG", "width", "height", "mode": "L"|"RGB",
    "sample": uint8 (h, w, 3) every k-th pixel with max(h, w) <= SAMPLE_SIDE (None for ``L``), "notes": [str]}``.
    ``spread_p99``: 99th percentile of ``max(R,G,B) - min(R,G,B)`` over the sample (0 for ``L``).
    The sample feeds prepare's gray check (a global chroma statistic, so a sparse sample suffices).
    """
    if not data:
        return {"ok": False, "reason": "empty file (0 bytes)"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = open_image(data, max_pixels)
            fmt = img.format
            w0, h0 = img.size
            scale = min(1.0, max_side / max(w0, h0))
            size = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
            if fmt == "JPEG" and scale < 1.0:
                img.draft(img.mode if img.mode in ("RGB", "L") else None, size)  # DCT-domain downscale
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return {"ok": False, "reason": f"decompression bomb: {exc}"}
    except UnidentifiedImageError:
        return {"ok": False, "reason": "not an image: PIL cannot identify the file format"}
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return {"ok": False, "reason": f"corrupt or truncated image: {type(exc).__name__}: {exc}"}
    except Exception as exc:  # noqa: BLE001 - a plugin bug on a hostile file must not crash the step
        return {"ok": False, "reason": f"cannot decode: {type(exc).__name__}: {exc}"}

    try:
        if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # accept_image turns it a quarter
            size = (size[1], size[0])
        src_mode = img.mode
        img, notes = accept_image(img)
        if img.size != size:
            img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
        keep = fmt == "JPEG" and src_mode == img.mode and (w0, h0) == size and not notes
        if keep:
            out, out_fmt = data, "JPEG"
        else:
            buf = io.BytesIO()
            if fmt == "JPEG":
                img.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=0)
                out_fmt = "JPEG"
            else:
                img.save(buf, "PNG", compress_level=1)
                out_fmt = "PNG"
            out = buf.getvalue()
        if img.mode == "RGB":
            step = -(-max(img.size) // SAMPLE_SIDE)  # ceil: a strided pixel sample, no resampling cost
            sample = np.ascontiguousarray(np.asarray(img)[::step, ::step])
            spread = percentile(sample.max(-1) - sample.min(-1), 99.0)
        else:
            sample, spread = None, 0.0
    except ImageRejected as exc:
        return {"ok": False, "reason": exc.reason}
    except Exception as exc:  # noqa: BLE001 - conversion failure of one file is a rejection
        return {"ok": False, "reason": f"cannot convert: {type(exc).__name__}: {exc}"}
    return {
        "ok": True,
        "image": out,
        "format": out_fmt,
        "width": img.size[0],
        "height": img.size[1],
        "mode": img.mode,
        "sample": sample,
        "spread_p99": spread,
        "notes": notes,
    }
