"""Markdown and HTML reports of the colorization evaluation (tables shaped like Table 2.1, the T sweep of Fig. 2.4)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from chromaflow.evaluate import report as R

THESIS_TABLE = {
    "Ground truth": (100.0, 100.0, 68.3),
    "Gray": (89.1, 58.0, 52.7),
    "Random": (84.2, 57.3, 41.0),
    "Ours (L2)": (91.2, 64.4, 54.9),
    "Ours (class)": (91.6, 65.1, 56.6),
    "Ours (full)": (89.5, 67.3, 56.0),
}


_COLUMNS = [
    "Method",
    "AuC non-rebal (%)",
    "AuC rebal (%)",
    "Class top-1 (%)",
    "PSNR (dB)",
    "Colourfulness M3",
    "Chroma",
]


def _table_rows(result: dict, rows_order: Sequence[str]) -> list[list]:
    out = []
    for name in rows_order:
        r = result["rows"][name]
        psnr = r["psnr"] if r["psnr"] is not None else (math.inf if name == "Ground truth" else None)
        out.append([name, r["auc_raw"], r["auc_rebal"], r["class_top1"], psnr, r["colorfulness"], r["chroma"]])
    return out


def _sweep_rows(result: dict) -> list[list]:
    return [
        [f"{r['T']:g}" + (" (mode)" if r["decode"] == "mode" else ""), r["auc_raw"], r["auc_rebal"], r["psnr"],
         r["colorfulness"], r["chroma"]]
        for r in result["t_sweep"]
    ]  # fmt: skip


_SWEEP_COLUMNS = ["T", "AuC non-rebal (%)", "AuC rebal (%)", "PSNR (dB)", "Colourfulness M3", "Chroma"]


def _thesis_rows() -> list[list]:
    return [[k, *v] for k, v in THESIS_TABLE.items()]


_CI_KEYS = (("auc_raw", "AuC non-rebal"), ("auc_rebal", "AuC rebal"), ("class_top1", "Class top-1"), ("psnr", "PSNR"))


def _ci_lines(result: dict, rows_order: Sequence[str]) -> list[str]:
    """Markdown: 95% bootstrap intervals per row, and each row minus Gray (paired; significant if 0 is outside)."""
    b = result.get("bootstrap")
    if not b:
        return []

    def cell(v):
        return "-" if v is None else "[" + ", ".join(f"{x:.2f}" for x in v) + "]"

    def diff(v):
        if v is None:
            return "-"
        star = " *" if v[1] > 0 or v[2] < 0 else ""
        return f"{v[0]:+.2f} [{v[1]:+.2f}, {v[2]:+.2f}]{star}"

    keys = [(k, h) for k, h in _CI_KEYS if any(k in b["rows"].get(n, {}) for n in rows_order)]
    head = ["Method", *[h for _, h in keys]]
    lines = [
        f"{round(100 * b['level'])}% bootstrap intervals ({b['reps']} resamples of the images):",
        "",
        R.markdown_table([[n, *[cell(b["rows"][n].get(k)) for k, _ in keys]] for n in rows_order if n in b["rows"]],
                         head),
    ]  # fmt: skip
    if b["minus_gray"]:
        lines += [
            "",
            "Row minus Gray on the same resamples (paired); * = the interval excludes 0:",
            "",
            R.markdown_table([[n, *[diff(d.get(k)) for k, _ in keys]] for n, d in b["minus_gray"].items()], head),
        ]
    return lines + [""]


def markdown_report(result: dict, rows_order: Sequence[str]) -> str:
    s = result["settings"]
    lines = [
        "# Colorization results (thesis Table 2.1 protocol)",
        "",
        f"- images: {result['n_images']} from `{s['data']}` (split `{s['split']}`), eval set `{result['eval_set'][:16]}`",
        f"- protocol: {s['protocol']}; decoding {s['decode']} at T={s['T']}",
        f"- rebalanced AuC: Eq. 2.4 with lambda=0 from {s['prior']}; AuC thresholds 0..150 (step 1)",
        f"- classifier: {s['classifier']} (the thesis used VGG-16)",
        f"- excluded: {len(result['excluded'])} images (listed in metrics.json)",
        "",
        R.markdown_table(_table_rows(result, rows_order), _COLUMNS),
        "",
        *_ci_lines(result, rows_order),
    ]
    if result["t_sweep"]:
        lines += [
            f"## Temperature sweep ({result.get('primary')})",
            "",
            R.markdown_table(_sweep_rows(result), _SWEEP_COLUMNS),
        ]
    lines += [
        "## Thesis Table 2.1 for reference (ImageNet val 10k, VGG-16)",
        "",
        R.markdown_table(_thesis_rows(), ["Method", "AuC non-rebal (%)", "AuC rebal (%)", "VGG top-1 (%)"], digits=1),
    ]
    return "\n".join(lines)


def _sweep_plot(result: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["t_sweep"]
    ts = [r["T"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(ts, [r["colorfulness"] for r in rows], "o-", label="ours (M3)")
    gt = result["rows"].get("Ground truth")
    if gt:
        ax[0].axhline(gt["colorfulness"], color="k", ls="--", label="ground truth")
    ax[0].set(xlabel="T (0 = mode)", ylabel="colourfulness M3")
    ax[0].legend()
    ax[1].plot(ts, [r["auc_raw"] for r in rows], "o-", label="AuC non-rebal")
    ax[1].plot(ts, [r["auc_rebal"] for r in rows], "s-", label="AuC rebal")
    ax[1].set(xlabel="T (0 = mode)", ylabel="%")
    ax[1].legend()
    return f"<img src='{R.png_data_uri(R.figure_png(fig))}' alt='T sweep'>"


def html_report(result: dict, rows_order: Sequence[str], shown: dict, sweep_shown: list) -> str:
    s = result["settings"]
    intro = (
        f"<p>{result['n_images']} images from <code>{html.escape(s['data'])}</code>; "
        f"{html.escape(s['protocol'])}; decoding {html.escape(s['decode'])} at T={s['T']}; "
        f"classifier: {html.escape(s['classifier'])}; eval set <code>{result['eval_set'][:16]}</code>.</p>"
    )
    sections = [("Table 2.1 protocol", intro + R.html_table(_table_rows(result, rows_order), _COLUMNS))]
    ours = [n for n in rows_order if n.startswith("Ours")]
    if len(ours) > 1:
        cmp_rows = [[n, result["rows"][n]["auc_raw"], result["rows"][n]["auc_rebal"], result["rows"][n]["colorfulness"]]
                    for n in ours]  # fmt: skip
        sections.append((
            "Class rebalancing: models compared",
            "<p>Rebalancing trades raw AuC (dominated by desaturated pixels) for rebalanced AuC and colour.</p>"
            + R.html_table(cmp_rows, ["Model", "AuC non-rebal (%)", "AuC rebal (%)", "Colourfulness M3"]),
        ))  # fmt: skip
    cols = list(shown)
    n = len(shown["Input (L)"])
    if n:
        grid = [[shown[c][i] for c in cols] for i in range(n)]
        sections.append(("Gallery", R.image_grid(grid, cols, row_labels=result["ids"][:n])))
    if result["t_sweep"]:
        body = R.html_table(_sweep_rows(result), _SWEEP_COLUMNS) + _sweep_plot(result)
        if sweep_shown:
            heads = [f"T={r['T']:g}" if r["decode"] != "mode" else "mode" for r in result["t_sweep"]] + ["Ground truth"]
            body += R.image_grid(sweep_shown, heads)
        sections.append((f"Temperature sweep ({result.get('primary')})", body))
    sections.append((
        "Thesis Table 2.1 (ImageNet val 10k, VGG-16)",
        R.html_table(_thesis_rows(), ["Method", "AuC non-rebal (%)", "AuC rebal (%)", "VGG top-1 (%)"], digits=1),
    ))  # fmt: skip
    if result["excluded"]:
        ex = [[e["id"], e["reason"]] for e in result["excluded"]]
        sections.append((f"Excluded images ({len(ex)})", R.html_table(ex, ["id", "reason"])))
    return R.html_page("Colorization evaluation", sections)
