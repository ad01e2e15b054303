"""``make mutate``: mutation testing (mutmut 2.5.1) of the code that holds the thesis's numbers.

Each module is mutated in place, one mutant at a time, and only the fast tests that cover it run against the
mutant (``-x``: the first failure kills it). Survivors are listed with their diffs in ``runs/mutate/report.md``.
Not part of ``make test``: it runs pytest once per mutant (minutes per module on 2 cores).

    python tests/mutate.py                      # every module below
    python tests/mutate.py constants metrics    # modules whose path contains one of the words

An interrupted run can leave the mutant it was testing in the source (and a ``.bak`` beside it): check
``git status src`` and ``git checkout`` the module.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".mutmut-cache"
MUTMUT = Path(sys.executable).with_name("mutmut")

# module -> the tests that cover it, most discriminating (and fastest) first
MODULES: dict[str, list[str]] = {
    "src/chromaflow/color/constants.py": [
        "tests/color/test_encode.py::test_defaults_are_the_thesis_numbers",
        "tests/color/test_gamut_prior_decode.py::test_smoothing_and_rebalancing_defaults_are_eq_2_4_with_sigma_5_and_lambda_half",
        "tests/color/test_gamut_prior_decode.py::test_annealed_mean_limits",
        "tests/color/test_gamut_prior_decode.py::test_ab_bins_equal_reference",
        "tests/guided/test_guided_task.py::test_task_loss_is_eq_3_4_to_3_6_with_the_thesis_numbers",
        "tests/train/test_colorization.py::test_task_loss_with_its_defaults_is_table_2_1",
        "tests/color/test_lab.py",
        "tests/spine/test_steps.py::test_evaluate_guided_feeds_the_revealed_patches_to_the_network",
    ],
    "src/chromaflow/evaluate/metrics.py": [
        "tests/evaluate/test_metrics.py",
        "tests/evaluate/test_colorization.py::test_gray_row_auc_raw_and_rebalanced_recomputed_independently",
    ],
    "src/chromaflow/train/losses.py": [
        "tests/train/test_colorization.py::test_classification_loss_matches_dense_reference",
        "tests/train/test_colorization.py::test_regression_loss_is_eq_2_1_per_pixel",
        "tests/train/test_colorization.py::test_loss_input_rules_and_their_messages",
        "tests/train/test_colorization.py::test_task_loss_with_its_defaults_is_table_2_1",
    ],
    "src/chromaflow/color/decode.py": ["tests/color/test_gamut_prior_decode.py"],
    "src/chromaflow/color/prior.py": ["tests/color/test_gamut_prior_decode.py"],
    "src/chromaflow/color/gamut.py": ["tests/color/test_gamut_prior_decode.py"],
    "src/chromaflow/color/lab.py": ["tests/color/test_lab.py"],
    "src/chromaflow/color/encode.py": ["tests/color/test_encode.py"],
    "src/chromaflow/color/palette.py": ["tests/guided/test_palette.py"],
    "src/chromaflow/train/tasks/guided.py": ["tests/guided/test_guided_task.py"],
    "src/chromaflow/train/tasks/lpips.py": [
        "tests/lpips/test_train_serve.py::test_task_loss_is_eq_6_2_as_the_official_ranking_loss",
        "tests/lpips/test_train_serve.py::test_ranknet_matches_official",
    ],
    "src/chromaflow/serving/request.py": ["tests/serving/test_request.py"],
    "src/chromaflow/tracking/promote.py": ["tests/tracking/test_promote.py"],
}


def runner(tests: list[str]) -> str:
    """The command mutmut runs per mutant. mutmut 2 counts only exit codes 1 and 2 as a kill, but a mutant that
    breaks an import makes pytest exit 4 ("found no collectors"), so any failure is mapped to 1."""
    pytest = Path(sys.executable).with_name("pytest")
    cmd = " ".join(["env", f"PYTHONPATH={REPO / 'src'}", str(pytest), "-x", "-q", "-p", "no:cacheprovider",
                    *map(shlex.quote, tests)])  # fmt: skip
    return f"sh -c {shlex.quote(cmd + ' || exit 1')}"


def counts(module: str) -> dict[str, int]:
    """Mutant statuses of one module from mutmut's cache (``ok_killed``, ``bad_survived``, ``bad_timeout`` ...)."""
    with sqlite3.connect(CACHE) as db:
        rows = db.execute(
            "SELECT m.status, COUNT(*) FROM Mutant m JOIN Line l ON m.line = l.id "
            "JOIN SourceFile f ON l.sourcefile = f.id WHERE f.filename = ? GROUP BY m.status",
            (module,),
        ).fetchall()
    return dict(rows)


def survivors(module: str) -> list[int]:
    with sqlite3.connect(CACHE) as db:
        return [
            r[0]
            for r in db.execute(
                "SELECT m.id FROM Mutant m JOIN Line l ON m.line = l.id JOIN SourceFile f ON l.sourcefile = f.id "
                "WHERE f.filename = ? AND m.status IN ('bad_survived', 'bad_timeout') ORDER BY m.id",
                (module,),
            )
        ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", help="words: run the modules whose path contains one of them")
    ap.add_argument("--out", default=str(REPO / "runs" / "mutate"))
    ap.add_argument("--keep-cache", action="store_true", help="resume from .mutmut-cache instead of starting anew")
    args = ap.parse_args(argv)
    modules = {m: t for m, t in MODULES.items() if not args.only or any(w in m for w in args.only)}
    if not modules:
        ap.error(f"no module matches {args.only}; modules: {list(MODULES)}")
    if not args.keep_cache:
        CACHE.unlink(missing_ok=True)
    os.chdir(REPO)
    rows, details, t_all = [], [], time.monotonic()
    for module, tests in modules.items():
        t0 = time.monotonic()
        cmd = [str(MUTMUT), "run", "--paths-to-mutate", module, "--runner", runner(tests), "--tests-dir", "tests",
               "--simple-output", "--no-progress", "--test-time-base", "60"]  # fmt: skip
        print(f"== {module}: {len(tests)} test target(s)", flush=True)
        rc = subprocess.run(cmd).returncode
        if rc & 1:
            print(f"mutmut failed on {module} (exit {rc}): the tests must pass on the unmutated code", file=sys.stderr)
            return 1
        c = counts(module)
        n, killed = sum(c.values()), c.get("ok_killed", 0) + c.get("ok_suspicious", 0)
        left = survivors(module)
        rows.append((module, n, killed, c.get("bad_survived", 0), c.get("bad_timeout", 0), time.monotonic() - t0))
        for i in left:
            diff = subprocess.run([str(MUTMUT), "show", str(i)], capture_output=True, text=True).stdout.strip()
            details.append(f"### {module} #{i}\n\n```diff\n{diff}\n```\n")
    total_n, total_k = sum(r[1] for r in rows), sum(r[2] for r in rows)
    lines = [
        "# Mutation testing (mutmut 2.5.1)",
        "",
        f"Score: {total_k}/{total_n} mutants killed ({100 * total_k / max(total_n, 1):.1f}%), "
        f"{time.monotonic() - t_all:.0f} s on {os.cpu_count()} core(s).",
        "",
        "| module | mutants | killed | survived | timeout | score | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[f"| `{m}` | {n} | {k} | {s} | {t} | {100 * k / max(n, 1):.1f}% | {sec:.0f} |" for m, n, k, s, t, sec in rows],
        "",
        "## Surviving mutants" if details else "No surviving mutant.",
        "",
        *details,
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[: 7 + len(rows)]))
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
