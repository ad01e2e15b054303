"""The README's commands run as written, so the README cannot drift from the code.

- Quick start: every ```bash block of the "## Quick start" section runs on a fresh copy of the repository (the
  files git tracks or would track, with this checkout's ``.venv``), except a block right after a
  ``<!-- long ... -->`` comment (``make install``, ``make demo`` / ``make test``: minutes, and the install would
  write the shared venv). ``photos/`` there holds two sample photos: the reader's own photos.
- Serve it: the block after ``<!-- serve-example -->`` runs against a real TorchServe (needs ``java`` and
  ``curl``), its fixed ports moved to free loopback ones so that it cannot collide with a server already running.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BLOCK = re.compile(r"(?:<!--(?P<marker>[^>]*)-->\s*\n)?```bash\n(?P<body>.*?)```", re.S)


def section(text: str, title: str) -> str:
    """The text under ``## title`` up to the next ``## `` heading; ``AssertionError`` when there is none."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"README.md has no '## {title}' section"
    return m[1]


def blocks(text: str) -> list[tuple[str, str]]:
    """``(marker, body)`` of each ```bash block; ``marker`` is the HTML comment right above it, or ''."""
    return [((m["marker"] or "").strip(), m["body"]) for m in BLOCK.finditer(text)]


def run_block(body: str, cwd: Path, timeout_s: float) -> subprocess.CompletedProcess:
    """``body`` as a reader pastes it into bash (stopping at the first failing command)."""
    env = os.environ | {"PYTHONPATH": str(cwd / "src")}  # what `make install`'s editable install of cwd gives
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", body], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout_s,
    )  # fmt: skip


@pytest.fixture
def fresh_copy(tmp_path) -> Path:
    """The repository's files as a fresh clone has them (plus untracked, not ignored ones), this ``.venv``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True,
        check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    copy = tmp_path / "chromaflow"
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_symlink():  # as git keeps them (src/chromaflow/share/*, src/components): the link itself
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            (copy / rel).symlink_to(os.readlink(src))
        elif src.is_file():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, copy / rel)
    (copy / ".venv").symlink_to((REPO / ".venv").resolve())
    return copy


def test_quick_start_blocks_run_on_a_fresh_copy(fresh_copy, sample_dir):
    found = blocks(section(README.read_text(encoding="utf-8"), "Quick start"))
    quick = [body for marker, body in found if not marker.startswith("long")]
    assert any("make install" in body for marker, body in found if marker.startswith("long"))
    assert quick, "the quick start has no block that runs in seconds"
    (fresh_copy / "photos").mkdir()
    for name in ("kodim23.jpg", "skimage_coffee.jpg"):
        shutil.copy2(sample_dir / name, fresh_copy / "photos" / name)
    for body in quick:
        r = run_block(body, fresh_copy, timeout_s=300)
        assert r.returncode == 0, f"README quick start block failed:\n{body}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    # what the quick start promises: out/<name>.png for each photo, colour from gray, and out/colorize.json
    for name in ("kodim23", "skimage_coffee"):
        out = np.asarray(Image.open(fresh_copy / "out" / f"{name}.png").convert("RGB"), dtype=np.int16)
        assert out.shape[:2] == np.asarray(Image.open(sample_dir / f"{name}.jpg")).shape[:2]
        assert np.abs(out[..., 0] - out[..., 2]).mean() > 3  # not gray: red and blue differ
    assert '"rejected": []' in (fresh_copy / "out" / "colorize.json").read_text()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None or shutil.which("curl") is None, reason="needs java and curl")
def test_serve_example_answers_with_a_colorized_photo(fresh_copy, sample_dir):
    found = [body for marker, body in blocks(README.read_text(encoding="utf-8")) if marker == "serve-example"]
    assert len(found) == 1, "README.md must hold exactly one block marked <!-- serve-example -->"
    body, (port, mgmt, metrics) = found[0], _free_ports(3)
    start = "chromaflow serve --run-dir runs/serve "
    for old, new in ((start, f"{start}--port {port} --management-port {mgmt} --metrics-port {metrics} "),
                     ("http://127.0.0.1:8080/", f"http://127.0.0.1:{port}/")):  # fmt: skip
        assert body.count(old) == 1, f"the serve example no longer has {old!r} once:\n{body}"
        body = body.replace(old, new)
    try:
        r = run_block(body, fresh_copy, timeout_s=600)
    finally:
        run_block(".venv/bin/chromaflow serve --stop --run-dir runs/serve", fresh_copy, timeout_s=120)
    assert r.returncode == 0, f"README serve example failed:\n{body}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    out = np.asarray(Image.open(fresh_copy / "kodim23_color.png").convert("RGB"), dtype=np.int16)
    assert out.shape[:2] == np.asarray(Image.open(sample_dir / "kodim23.jpg")).shape[:2]
    assert np.abs(out[..., 0] - out[..., 2]).mean() > 3  # a colorized photo, not an error page or a gray one
    assert not (fresh_copy / "runs" / "serve" / "key_file.json").exists()  # stopped: keys deleted
