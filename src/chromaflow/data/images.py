"""Decode one untrusted image file into a clean 8-bit image of bounded size, or a reason to reject it.

Runs in prepare's worker processes, so it imports only PIL and numpy. Policy for awkward inputs
(each one noted in the manifest):

- corrupt, truncated, zero-byte, non-image, unreadable: rejected with the reason;
- decompression bombs (more than ``max_pixels`` pixels): rejected (PIL's warning is an error here);
- EXIF orientation: applied;
- CMYK / YCbCr / other colour modes: converted to RGB with PIL (no ICC colour management);
- 16-bit and 32-bit integer grayscale (``I;16``, ``I``): scaled to 8 bit (``v / 257``); float (``F``) clipped;
- palette: expanded; alpha (``RGBA``, ``LA``, ``PA``, palette transparency): composited on white;
- animated / multi-frame files: frame 0 is kept and the frame count noted;
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


def _to_8bit(img: Image.Image, notes: list[str]) -> Image.Image:
    """Any PIL mode -> ``L`` or ``RGB`` (8 bit), noting what was done."""
    mode = img.mode
    if mode in ("RGB", "L"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        notes.append(f"{mode} scaled to 8 bit")
        return Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
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
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba).convert("L" if gray else "RGB")
        notes.append("alpha composited on white")
        return out
    notes.append(f"{mode} converted to RGB")
    return img.convert("RGB")


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
    notes: list[str] = []
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            n_frames = getattr(img, "n_frames", 1)
            if n_frames > 1:
                img.seek(0)
                notes.append(f"frame 0 of {n_frames} kept")
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
        orientation = img.getexif().get(0x0112, 1)
        if orientation not in (None, 1):
            img = ImageOps.exif_transpose(img)
            notes.append(f"EXIF orientation {orientation} applied")
            size = size if orientation in (1, 2, 3, 4) else (size[1], size[0])
        src_mode = img.mode
        img = _to_8bit(img, notes)
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
