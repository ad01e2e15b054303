"""Small report helpers shared by every evaluation: Markdown tables and self-contained HTML pages.

HTML pages embed their images as base64 PNG data URIs, so one file can be opened anywhere, logged to
MLflow, or emitted as a Kubeflow HTML artifact.

    >>> markdown_table([{"method": "Gray", "auc": 89.1}], ["method", "auc"])
    '| method | auc |\\n|---|---|\\n| Gray | 89.10 |\\n'
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def _to_uint8_hwc(img: Any) -> np.ndarray:
    """PIL image, numpy ``(H, W)``/``(H, W, 3|4)`` or torch ``(3|1, H, W)``; uint8 or float in [0, 1]."""
    if hasattr(img, "save") and hasattr(img, "mode"):  # PIL.Image
        return np.asarray(img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB"))
    if hasattr(img, "detach"):  # torch tensor, channels first
        t = img.detach().cpu()
        if t.ndim == 3:
            t = t.permute(1, 2, 0)
        img = t.numpy()
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"image: expected (H, W), (H, W, 3|4) or (3, H, W), got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"image: expected uint8 or float in [0, 1], got {a.dtype}")
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return a


def png_bytes(img: Any) -> bytes:
    """Encode an image (see :func:`png_data_uri`) as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_to_uint8_hwc(img)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_data_uri(img: Any) -> str:
    """``data:image/png;base64,...`` of a PIL image, numpy array (HW / HWC, uint8 or float [0, 1]) or
    torch tensor (CHW), or of raw PNG bytes (e.g. a saved matplotlib figure)."""
    data = img if isinstance(img, bytes | bytearray) else png_bytes(img)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def format_value(v: Any, digits: int = 2) -> str:
    """Cell text: floats with ``digits`` decimals, ``inf``/``-`` for infinite / missing (None or NaN)."""
    if v is None:
        return "-"
    if isinstance(v, float | np.floating):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}f}"
    return str(v)


def _cells(row: Mapping[str, Any] | Sequence[Any], columns: Sequence[str]) -> list[Any]:
    if isinstance(row, Mapping):
        return [row.get(c) for c in columns]
    if len(row) != len(columns):
        raise ValueError(f"row has {len(row)} cells but there are {len(columns)} columns")
    return list(row)


def markdown_table(rows: Iterable[Mapping[str, Any] | Sequence[Any]], columns: Sequence[str], digits: int = 2) -> str:
    """A GitHub Markdown table; ``rows`` are dicts (keyed by column) or sequences in column order."""
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(esc(format_value(v, digits)) for v in _cells(row, columns)) + " |")
    return "\n".join(lines) + "\n"


def html_table(rows: Iterable[Mapping[str, Any] | Sequence[Any]], columns: Sequence[str], digits: int = 2) -> str:
    """The same table as HTML (text escaped)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_value(v, digits))}</td>" for v in _cells(r, columns)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image_grid(rows: Sequence[Sequence[Any]], columns: Sequence[str], row_labels: Sequence[str] | None = None) -> str:
    """An HTML table of embedded images: ``rows[i][j]`` is an image (see :func:`png_data_uri`) or None."""
    head = ("<th></th>" if row_labels else "") + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    out = [f"<table class='grid'><thead><tr>{head}</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cells = [f"<th>{html.escape(str(row_labels[i]))}</th>"] if row_labels else []
        for img in row:
            cells.append("<td></td>" if img is None else f"<td><img src='{png_data_uri(img)}' alt=''></td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
table.grid td{padding:2px}table.grid img{width:160px;height:auto;display:block}
pre{background:#f6f6f6;padding:1em;overflow-x:auto}
"""


def html_page(title: str, sections: Iterable[tuple[str, str]]) -> str:
    """A complete self-contained HTML page. ``sections``: ``(heading, html_body)`` pairs; bodies are raw HTML
    (escape text yourself, e.g. with :func:`html.escape`); images should be data URIs."""
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, body in sections:
        parts.append(f"<section><h2>{html.escape(heading)}</h2>{body}</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
