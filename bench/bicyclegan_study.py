"""The BicycleGAN study of thesis ch. 4 (Fig. 4.6, Table 4.1, the |z| study) on BSDS500 edges -> photos.

    PYTHONPATH=src .venv/bin/python bench/bicyclegan_study.py all --steps 2000  # prepare, train, evaluate, report
    PYTHONPATH=src .venv/bin/python bench/bicyclegan_study.py report            # tables + plot from finished runs

Phases (each skips what is already done, so an interrupted study resumes): ``train`` runs one CLI training
per :data:`RUNS` entry, sequentially and niced (one at a time: the machine has 2 shared cores); ``evaluate``
runs ``chromaflow evaluate-translation`` on each finished run; ``report`` prints the Markdown tables of
``docs/bicyclegan.md`` and writes the Fig. 4.6-style scatter. Outputs go to ``--root`` (default runs/bg/study).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SOURCE = "../shared/datasets/bsds500"
PAIRS = "runs/bsds/pairs"
MAX_SIDE = 128
SIZE, WIDTH, BATCH = 64, 0.25, 2
ADAM = ["--lr", "2e-4", "--beta1", "0.5", "--beta2", "0.999", "--weight-decay", "0"]

# name -> task flags. The six Fig. 4.6 rows first (the default model: E_ResNet, add_to_all, |z| = 8), then
# the Table 4.1 cells that the BicycleGAN row does not already cover, then the |z| study's other lengths.
FIG46 = {
    "pix2pix_noise": ["--variant", "pix2pix_noise"],
    "cae_gan": ["--variant", "cae_gan"],
    "cvae_gan": ["--variant", "cvae_gan"],
    "cvae_gan_pp": ["--variant", "cvae_gan_pp"],
    "clr_gan": ["--variant", "clr_gan"],
    "bicyclegan": ["--variant", "bicyclegan"],
}
TABLE41 = {  # (encoder, where_add) -> run; resnet/all is the BicycleGAN row itself
    ("resnet", "all"): "bicyclegan",
    ("resnet", "input"): "enc_resnet_input",
    ("cnn", "all"): "enc_cnn_all",
    ("cnn", "input"): "enc_cnn_input",
}
NZ_STUDY = {2: "nz2", 8: "bicyclegan", 256: "nz256"}
RUNS = {
    **FIG46,
    "enc_resnet_input": ["--variant", "bicyclegan", "--encoder", "resnet", "--where-add", "input"],
    "enc_cnn_all": ["--variant", "bicyclegan", "--encoder", "cnn", "--where-add", "all"],
    "enc_cnn_input": ["--variant", "bicyclegan", "--encoder", "cnn", "--where-add", "input"],
    "nz2": ["--variant", "bicyclegan", "--nz", "2"],
    "nz256": ["--variant", "bicyclegan", "--nz", "256"],
}


def chromaflow(*args: str) -> None:
    """Run one ``chromaflow`` CLI command (niced) in this interpreter's environment; raise if it fails."""
    cmd = ["nice", sys.executable, "-m", "chromaflow.cli", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=os.environ.copy())


def train(args: argparse.Namespace) -> None:
    chromaflow("prepare-pairs", "--source", args.source, "--out", args.pairs, "--max-side", str(MAX_SIDE))
    for name in args.only or RUNS:
        out = Path(args.root) / name
        if (out / "metrics.json").is_file():
            continue
        chromaflow(
            "train", "--task", "bicyclegan", *RUNS[name], "--data", args.pairs, "--out", str(out),
            "--size", str(SIZE), "--width", str(WIDTH), "--batch-size", str(BATCH), "--steps", str(args.steps),
            *ADAM, "--seed", str(args.seed), "--val-every", "0", "--val-limit", "50", "--log-every", "100",
        )  # fmt: skip


def evaluate(args: argparse.Namespace) -> None:
    for name in args.only or RUNS:
        run, out = Path(args.root) / name, Path(args.root) / name / eval_name(args.samples, args.seed)
        if not (run / "metrics.json").is_file() or (out / "metrics.json").is_file():
            continue
        chromaflow(
            "evaluate-translation", "--model", str(run), "--data", args.pairs, "--out", str(out),
            "--classifier-dir", args.classifier_dir, "--inputs", str(args.inputs), "--samples", str(args.samples),
            "--seed", str(args.seed), "--size", str(SIZE), "--split", "test",
        )  # fmt: skip


# Thesis Fig. 4.6 (Google maps -> satellites, 256 px; AMT fooling rate %, LPIPS-alex diversity)
THESIS_FIG46 = {
    "pix2pix_noise": ("pix2pix+noise", "27.93 ± 2.40", ".013"),
    "cae_gan": ("cAE-GAN", "13.64 ± 1.80", ".204"),
    "cvae_gan": ("cVAE-GAN", "24.93 ± 2.27", ".096"),
    "cvae_gan_pp": ("cVAE-GAN++", "29.19 ± 2.43", ".098"),
    "clr_gan": ("cLR-GAN", "29.23 ± 2.48", ".090*"),
    "bicyclegan": ("BicycleGAN", "34.33 ± 2.69", ".110"),
}
THESIS_REAL = ("Random real images", "50.0", ".262 (text: .265)")
THESIS_TABLE41 = {  # |B - G(A, E(B))|_1, mean ± std, per (encoder, where_add)
    "label→photo (thesis)": ("0.292 ± 0.058", "0.292 ± 0.054", "0.326 ± 0.066", "0.339 ± 0.069"),
    "map→satellite (thesis)": ("0.268 ± 0.070", "0.266 ± 0.068", "0.287 ± 0.067", "0.272 ± 0.069"),
}


def eval_name(samples: int, seed: int) -> str:
    """The evaluation folder inside a run: ``eval_s<samples>``, ``_seed<seed>`` added for seeds other than 0."""
    return f"eval_s{samples}" + (f"_seed{seed}" if seed else "")


def _load(root: Path, name: str, samples: int, seed: int) -> dict | None:
    f = root / name / eval_name(samples, seed) / "metrics.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _ci(m: dict | None, key: str, digits: int = 3) -> str:
    if m is None:
        return "not run"
    if m.get(key) is None:
        return "n/a"
    lo, hi = m[f"{key}_ci95"]
    return f"{m[key]:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def report(args: argparse.Namespace) -> str:
    """The Markdown tables of docs/bicyclegan.md and the Fig. 4.6-style scatter (``--plot``)."""
    root = Path(args.root)
    ms = {name: _load(root, name, args.samples, args.seed) for name in RUNS}
    lines = ["### Fig. 4.6: realism vs diversity (six variants)", ""]
    lines += [
        "| method | thesis AMT fooling [%] | thesis LPIPS | our diversity LPIPS [95% CI] | our Fréchet (proxy) "
        "| our real-vs-fake acc. (proxy) [95% CI] | recon L1 | latent L1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    real = next((m for m in ms.values() if m), None)
    lines.append(
        f"| {THESIS_REAL[0]} | {THESIS_REAL[1]} | {THESIS_REAL[2]} | {_ci(real, 'real_pairs_lpips')} | 0 (by definition) | 0.5 (by definition) | | |"
    )
    for name, (label, amt, lp) in THESIS_FIG46.items():
        m = ms[name]
        fd = "not run" if m is None else f"{m['frechet_squeezenet']:.1f}"
        lines.append(
            f"| {label} | {amt} | {lp} | {_ci(m, 'diversity_lpips')} | {fd} | {_ci(m, 'real_fake_accuracy')} "
            f"| {_ci(m, 'recon_l1')} | {_ci(m, 'latent_l1')} |"
        )
    lines += ["", "### Table 4.1: reconstruction |B - G(A, E(B))|_1 (mean ± std over inputs)", ""]
    cells = list(TABLE41)
    lines.append("| | " + " | ".join(f"E_{e} {w}" for e, w in cells) + " |")
    lines.append("|---" * (len(cells) + 1) + "|")
    for row, vals in THESIS_TABLE41.items():
        lines.append(f"| {row} | " + " | ".join(vals) + " |")
    ours = []
    for cell in cells:
        m = ms[TABLE41[cell]]
        ours.append("not run" if m is None else f"{m['recon_l1']:.3f} ± {m['recon_l1_std']:.3f}")
    lines.append("| edges→photo, BSDS500 64 px (ours) | " + " | ".join(ours) + " |")
    lines.append("| (ours, 95% CI of the mean) | " + " | ".join(_ci(ms[TABLE41[c]], "recon_l1") for c in cells) + " |")
    lines += ["", "### The \\|z\\| study (BicycleGAN; the thesis shows it qualitatively, Fig. 4.7)", ""]
    lines += ["| \\|z\\| | diversity LPIPS | Fréchet (proxy) | real-vs-fake acc. (proxy) | recon L1 | latent L1 |"]
    lines += ["|---|---|---|---|---|---|"]
    for nz, name in NZ_STUDY.items():
        m = ms[name]
        fd = "not run" if m is None else f"{m['frechet_squeezenet']:.1f}"
        lines.append(f"| {nz} | {_ci(m, 'diversity_lpips')} | {fd} | {_ci(m, 'real_fake_accuracy')} "
                     f"| {_ci(m, 'recon_l1')} | {_ci(m, 'latent_l1')} |")  # fmt: skip
    lines += ["", "### Robustness of the Fig. 4.6 numbers to the evaluation's own sampling", ""]
    checks = {"seed 0 (tables)": (20, 0), "seed 1 (other 100 inputs, other z)": (20, 1)}
    lines.append("| method | " + " | ".join(f"diversity, {c} | Fréchet, {c}" for c in checks) + " |")
    lines.append("|---" * (1 + 2 * len(checks)) + "|")
    for name, (label, _, _) in THESIS_FIG46.items():
        cells = []
        for samples, seed in checks.values():
            m = _load(root, name, samples, seed)
            cells += ["not run"] * 2 if m is None else [f"{m['diversity_lpips']:.3f}", f"{m['frechet_squeezenet']:.0f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if args.plot:
        plot(ms, real, Path(args.plot))
        lines += ["", f"(plot: {args.plot})"]
    return "\n".join(lines)


def plot(ms: dict, real: dict | None, path: Path) -> None:
    """Fig. 4.6-style scatter: diversity (LPIPS) against each realism proxy, one point per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "frechet_squeezenet", "Fréchet distance, SqueezeNet conv5 (lower = more real)"),
                           (axes[1], "real_fake_accuracy", "held-out real-vs-fake accuracy (50% = indistinguishable)")):  # fmt: skip
        for name, (title, _, _) in THESIS_FIG46.items():
            m = ms[name]
            if m is None:
                continue
            ax.scatter(m["diversity_lpips"], m[key], s=30)
            ax.annotate(title, (m["diversity_lpips"], m[key]), textcoords="offset points", xytext=(4, 4), fontsize=8)
            if key == "real_fake_accuracy":
                lo, hi = m["diversity_lpips_ci95"]
                ax.plot([lo, hi], [m[key]] * 2, color="gray", lw=0.8)
                lo, hi = m["real_fake_accuracy_ci95"]
                ax.plot([m["diversity_lpips"]] * 2, [lo, hi], color="gray", lw=0.8)
        if real is not None:
            ax.axvline(real["real_pairs_lpips"], ls="--", color="k", lw=0.8)
            ax.annotate(
                "random real pairs", (real["real_pairs_lpips"], ax.get_ylim()[1]), fontsize=8, ha="right", va="top"
            )
        ax.set_xlabel("diversity: mean LPIPS between samples of one input")
        ax.set_ylabel(label, fontsize=8)
    fig.suptitle(
        "BicycleGAN variants, BSDS500 edges→photo 64 px (realism axes are PROXIES, not a human study)", fontsize=9
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=["train", "evaluate", "report", "all"])
    p.add_argument("--root", default="runs/bg/study2000")
    p.add_argument("--source", default=SOURCE)
    p.add_argument("--pairs", default=PAIRS)
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps per run (docs/bicyclegan.md: 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--inputs", type=int, default=100, help="evaluation inputs (thesis: 100)")
    p.add_argument("--samples", type=int, default=20, help="samples per input (thesis: 20)")
    p.add_argument("--classifier-dir", default="../shared/datasets/squeezenet1_1")
    p.add_argument("--plot", help="report: write the Fig. 4.6-style scatter PNG here")
    p.add_argument("--only", nargs="*", choices=list(RUNS), help="these runs only")
    args = p.parse_args(argv)
    if args.phase in ("train", "all"):
        train(args)
    if args.phase in ("evaluate", "all"):
        evaluate(args)
    if args.phase in ("report", "all"):
        print(report(args))


if __name__ == "__main__":
    main()
