"""One logging setup and one progress helper for every step.

On a terminal, long work shows a tqdm bar; elsewhere (Kubeflow pod logs, CI) it emits a log
line every ``every_s`` seconds instead, so logs stay readable.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("chromaflow")


def setup_logging(verbose: bool = False) -> None:
    """Configure the ``chromaflow`` logger once (idempotent)."""
    level = logging.DEBUG if verbose else logging.INFO
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)


def progress(it: Iterable[T], *, total: int | None = None, desc: str = "", every_s: float = 30.0) -> Iterator[T]:
    """Yield from ``it`` with a tqdm bar on a TTY, or periodic log lines otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(it, total=total, desc=desc)
        return
    start = last = time.monotonic()
    n = 0
    for n, item in enumerate(it, 1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            of = f"/{total}" if total else ""
            log.info("%s: %d%s done, %.1f/s", desc, n, of, n / (now - start))
    log.info("%s: %d done in %.1fs", desc, n, time.monotonic() - start)


def printable(name: object) -> str:
    """``name`` (a str, bytes or path) safe to put in one log line: control characters (newline, CR, ESC...),
    other non-printable characters (U+2028, lone surrogates of undecodable bytes) become ``\\n`` / ``\\x1b`` /
    ``\\udce9`` escapes, so a file name cannot forge or hide a log line. Printable text, non-ASCII included,
    is kept as is.

    >>> printable("a\\nb.png"), printable(b"caf\\xe9.jpg"), printable("café.jpg")
    ('a\\\\nb.png', 'caf\\\\udce9.jpg', 'café.jpg')
    """
    import os

    text = os.fsdecode(name) if isinstance(name, bytes | os.PathLike) else str(name)
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in text
    )
