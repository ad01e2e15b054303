"""The gateway: the web page plus a token-holding proxy to TorchServe (standard library only).

    python -m chromaflow.gateway --upstream http://127.0.0.1:8080 --key-file runs/serve/key_file.json --port 8000

Routes:

- ``GET /``: the page (``static/index.html``, one self-contained file, no build step).
- ``GET /api/health``: ``{"upstream": bool, "endpoints": {name: bool}}`` (which endpoints are served).
- ``POST /api/<endpoint>``, ``endpoint`` in ``colorize`` (automatic model), ``guided``, ``palette``, ``gamut``:
  the JSON body is forwarded to ``/predictions/<model>`` with ``Authorization: Bearer <inference key>``;
  TorchServe's status, content type and body come back unchanged (so do its 4xx JSON errors).

Safety: loopback by default; only ``application/json`` POSTs with a ``Content-Length`` up to ``max_body``;
a request whose ``Origin`` is not this gateway gets 403 (a foreign page cannot use the token held here);
a Content-Security-Policy allows only the page's own inline script and style (by hash) and same-origin calls.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MODELS = {"colorize": "colorizer", "guided": "colorize_guided", "palette": "palette", "gamut": "gamut"}
MAX_BODY = 20 << 20  # TorchServe's max_request_size in serving/config.properties
JSON_TYPE = "application/json"


def _page() -> tuple[bytes, str]:
    """The page's bytes and its Content-Security-Policy (hashes of its inline ``<script>`` and ``<style>``)."""
    html = resources.files("chromaflow.gateway").joinpath("static/index.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        digests = [base64.b64encode(hashlib.sha256(t.encode("utf-8")).digest()).decode() for t in found]
        return " ".join(f"'sha256-{d}'" for d in digests) or "'none'"

    csp = (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )
    return html.encode("utf-8"), csp


@dataclass
class GatewayConfig:
    """``upstream``: TorchServe's inference URL; ``key_file``: its ``key_file.json`` (read on each call, so
    regenerated keys are picked up; ``None``: no Authorization header); ``models``: endpoint -> TorchServe
    model name (``None`` or absent: not served); ``max_body``: largest accepted request in bytes."""

    upstream: str
    key_file: Path | None = None
    models: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    max_body: int = MAX_BODY
    timeout_s: float = 120.0

    def token(self) -> str | None:
        if self.key_file is None:
            return None
        try:
            return str(json.loads(Path(self.key_file).read_text(encoding="utf-8"))["inference"]["key"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


class _Handler(BaseHTTPRequestHandler):
    server_version = "chromaflow-gateway"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    @property
    def cfg(self) -> GatewayConfig:
        return self.server.config  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, ctype: str, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, kind: str, message: str) -> None:
        doc = {"code": status, "error": kind, "message": message}
        self._send(status, JSON_TYPE, json.dumps(doc).encode("utf-8"))

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            page, csp = self.server.page  # type: ignore[attr-defined]
            self._send(
                200, "text/html; charset=utf-8", page, {"Content-Security-Policy": csp, "X-Frame-Options": "DENY"}
            )
        elif path == "/api/health":
            self._send(200, JSON_TYPE, json.dumps(self._health()).encode("utf-8"))
        else:
            self._error(404, "not_found", f"no such page: {path}")

    def _health(self) -> dict[str, Any]:
        import requests

        token = self.cfg.token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            up = requests.get(f"{self.cfg.upstream}/ping", headers=headers, timeout=5).status_code == 200
        except requests.RequestException:
            up = False
        return {"upstream": up, "endpoints": {k: bool(v) for k, v in self.cfg.models.items()}}

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        m = re.fullmatch(r"/api/([a-z_]+)", path)
        if not m or m.group(1) not in DEFAULT_MODELS:
            self._drain_or_close()
            return self._error(404, "not_found", f"no such endpoint: {path}; use /api/{{{','.join(DEFAULT_MODELS)}}}")
        endpoint = m.group(1)
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host', '')}":
            self._drain_or_close()
            return self._error(403, "foreign_origin", f"requests from {origin} are not accepted")
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != JSON_TYPE:
            self._drain_or_close()
            return self._error(415, "unsupported_content_type", f"send {JSON_TYPE}, not {ctype or 'nothing'}")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            return self._error(411, "length_required", "a Content-Length header is required")
        if int(length) > self.cfg.max_body:
            self.close_connection = True
            return self._error(413, "too_large", f"the body is {length} bytes; the limit is {self.cfg.max_body}")
        body = self.rfile.read(int(length))
        model = self.cfg.models.get(endpoint)
        if not model:
            return self._error(404, "not_served", f"endpoint {endpoint!r} has no model on this server")
        self._proxy(model, body)

    def _drain_or_close(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= self.cfg.max_body:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _proxy(self, model: str, body: bytes) -> None:
        import requests

        headers = {"Content-Type": JSON_TYPE}
        token = self.cfg.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            r = requests.post(
                f"{self.cfg.upstream}/predictions/{model}", data=body, headers=headers, timeout=self.cfg.timeout_s
            )
        except requests.RequestException as e:
            log.warning("upstream %s unreachable: %s", self.cfg.upstream, e)
            return self._error(502, "upstream_unavailable", "the colorization server does not answer")
        self._send(r.status_code, r.headers.get("Content-Type", "application/octet-stream"), r.content)


def make_gateway(config: GatewayConfig, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A ready-to-run ``ThreadingHTTPServer`` (call ``serve_forever``); ``port=0`` picks a free port."""
    httpd = ThreadingHTTPServer((host, port), _Handler)
    httpd.daemon_threads = True
    httpd.config = config  # type: ignore[attr-defined]
    httpd.page = _page()  # type: ignore[attr-defined]
    return httpd


class Gateway:
    """The gateway on a background thread (tests, notebooks): ``with Gateway(cfg) as gw: gw.url``."""

    def __init__(self, config: GatewayConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.httpd = make_gateway(config, host, port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="chromaflow-gateway", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def models_for(names: list[str]) -> dict[str, str | None]:
    """Endpoint -> model name from the names TorchServe serves: the guided endpoints by name, ``colorize``
    the first other name (``None`` when there is none)."""
    from chromaflow.serving.guided import ENDPOINTS

    others = [n for n in names if n not in ENDPOINTS]
    return {
        "colorize": others[0] if others else None,
        "guided": "colorize_guided" if "colorize_guided" in names else None,
        "palette": "palette" if "palette" in names else None,
        "gamut": "gamut" if "gamut" in names else None,
    }


def start_gateway_process(
    server: Any, port: int = 0, host: str = "127.0.0.1", timeout_s: float = 30.0
) -> tuple[int, str]:
    """Start ``python -m chromaflow.gateway`` in its own session for a running :class:`chromaflow.serve.Server`;
    return its pid and URL once ``/api/health`` answers."""
    import requests

    from chromaflow.serve import free_port

    port = port or free_port()
    models = models_for(list(server.model_names))
    cmd = [sys.executable, "-m", "chromaflow.gateway", "--upstream", server.inference_url]
    cmd += ["--key-file", str(server.key_file), "--host", host, "--port", str(port)]
    cmd += ["--models", ",".join(f"{k}={v}" for k, v in models.items() if v)]
    logs = Path(server.run_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "gateway.log", "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}; see {logs / 'gateway.log'}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/api/health", timeout=5).status_code == 200:
                return proc.pid, url
        time.sleep(0.3)
    stop_gateway_process(proc.pid)
    raise RuntimeError(f"gateway not answering on {url} after {timeout_s:.0f}s; see {logs / 'gateway.log'}")


def stop_gateway_process(pid: int, timeout_s: float = 20.0) -> bool:
    """SIGTERM the gateway ``pid`` (only if it is one: its command line names chromaflow.gateway)."""
    try:
        if b"chromaflow.gateway" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    return True


def main(argv: list[str] | None = None) -> int:
    from chromaflow.logs import setup_logging

    p = argparse.ArgumentParser(prog="python -m chromaflow.gateway", description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="TorchServe inference URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--key-file", type=Path, default=None, help="TorchServe's key_file.json (token stays here)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--models",
        default=None,
        help="endpoint=model,... (default: " + ",".join(f"{k}={v}" for k, v in DEFAULT_MODELS.items()) + ")",
    )
    args = p.parse_args(argv)
    setup_logging()
    models: dict[str, str | None] = dict(DEFAULT_MODELS)
    if args.models is not None:
        models = dict.fromkeys(DEFAULT_MODELS)
        for item in filter(None, args.models.split(",")):
            k, _, v = item.partition("=")
            if k not in DEFAULT_MODELS or not v:
                p.error(f"--models: {item!r}: expected endpoint=model with endpoint in {list(DEFAULT_MODELS)}")
            models[k] = v
    httpd = make_gateway(
        GatewayConfig(upstream=args.upstream.rstrip("/"), key_file=args.key_file, models=models), args.host, args.port
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
    log.info("gateway on http://%s:%d -> %s", args.host, httpd.server_address[1], args.upstream)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


__all__ = [
    "DEFAULT_MODELS",
    "Gateway",
    "GatewayConfig",
    "make_gateway",
    "models_for",
    "start_gateway_process",
    "stop_gateway_process",
]
