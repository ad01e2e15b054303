"""Rebuild ``docs/quality.png``: gray input | the shipped colorization model | the original, for held-out photos.

    .venv/bin/python docs/quality_figure.py            # from the repository root; ~10 s of CPU

The photos come from ``data/sample`` (Kodak and scikit-image test photos). The shipped model never saw them:
it was trained on Tiny-ImageNet, the BSDS500 train split and the imagenet-sample-1000 train half (its
``weights/colorization/MODEL_CARD.md``). Each photo goes through ``chromaflow colorize`` (the endpoint's
service and served settings), so the figure shows what a user gets (the sheet is stored with 256 colours).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from chromaflow.serving.files import colorize_files

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("kodim02.jpg", "kodim09.jpg", "kodim22.jpg", "kodim23.jpg", "skimage_coffee.jpg")  # held out
TILE = 200  # px, long side of each tile
HEADER = 22  # px, the column titles


def build(out: Path) -> Path:
    """Colorize :data:`PHOTOS` with the shipped model and write the side-by-side PNG to ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [ROOT / "data" / "sample" / p for p in PHOTOS]
        manifest = colorize_files(inputs, tmp)
        if manifest["rejected"]:
            raise RuntimeError(f"quality_figure: rejected {manifest['rejected']}")
        rows = []
        for p in inputs:
            original = Image.open(p).convert("RGB")
            original.thumbnail((TILE, TILE))
            ours = Image.open(Path(tmp) / f"{p.stem}.png").convert("RGB").resize(original.size, Image.LANCZOS)
            rows.append([original.convert("L").convert("RGB"), ours, original])
    height = HEADER + sum(r[0].height for r in rows) + 2 * len(rows)
    sheet = Image.new("RGB", (3 * TILE + 4, height), "white")
    draw = ImageDraw.Draw(sheet)
    for c, title in enumerate(("input (gray)", "shipped model", "original")):
        draw.text((c * (TILE + 2) + 4, 5), title, fill="black")
    y = HEADER
    for row in rows:
        for c, im in enumerate(row):
            sheet.paste(im, (c * (TILE + 2), y))
        y += row[0].height + 2
    out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours (median cut, Floyd-Steinberg dithering) keep the PNG under 300 KB for the repository;
    # the washes and wrong object colours the figure is about survive it
    palette = sheet.quantize(256, method=Image.Quantize.MEDIANCUT)
    sheet.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(out, format="PNG", optimize=True)
    return out


if __name__ == "__main__":
    path = build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "quality.png")
    print(f"{path}: {path.stat().st_size // 1024} KiB")
