"""The gateway: the web page plus a token-holding proxy to TorchServe (standard library only).

    python -m chromaflow.gateway --upstream http://127.0.0.1:8080 --key-file runs/serve/key_file.json --port 8000

Routes:

- ``GET /``: the page (``static/index.html``, one self-contained file, no build step).
- ``GET /api/health``: ``{"upstream": bool, "endpoints": {name: bool}}`` (which endpoints are served).
- ``POST /api/<endpoint>``, ``endpoint`` in ``colorize`` (automatic model), ``guided``, ``palette``, ``gamut``,
  ``translate`` (BicycleGAN's N samples, the page's "variations" mode):
  the JSON body is forwarded to ``/predictions/<model>`` with ``Authorization: Bearer <inference key>``;
  TorchServe's status, content type and body come back unchanged (so do its 4xx JSON errors).

Safety:

- loopback by default: another address needs ``--public`` (put TLS, a reverse proxy, in front);
- every request must name this gateway in ``Host`` (``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT``,
  plus ``--allowed-host``): a DNS-rebound page (``Host: evil.example``) gets 403;
- a POST must carry ``Origin`` equal to ``http://<its Host>`` (or an ``--allowed-origin``): a foreign page
  cannot use the token held here, and neither can a request without an origin (403); curl users send
  ``-H "Origin: http://127.0.0.1:PORT"``;
- only ``application/json`` POSTs with a ``Content-Length`` up to ``max_body``; a whole request (line, headers,
  body) must arrive within ``read_timeout_s`` or its connection is closed (slow-loris); at most
  ``max_connections`` connections are served at once, more are answered 503 and closed;
- the inference token is renewed through TorchServe's token API before it expires, and once more when
  TorchServe answers that the key is invalid;
- a Content-Security-Policy allows only the page's own inline script and style (by hash) and same-origin calls.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import signal
import socket
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

DEFAULT_MODELS = {
    "colorize": "colorize",
    "guided": "colorize_guided",
    "palette": "palette",
    "gamut": "gamut",
    "translate": "translate",
}
MAX_BODY = 20 << 20  # TorchServe's max_request_size in serving/config.properties
JSON_TYPE = "application/json"
READ_TIMEOUT_S = 30.0  # a whole request must arrive within this (a 20 MiB body needs >= 0.7 MB/s)
MAX_CONNECTIONS = 16  # connections served at once (one thread each); memory <= this x max_body
RENEW_MARGIN_S = 600.0  # renew the inference token this long before it expires
PUBLIC_NOTE = (
    "the gateway listens on a non-loopback address: anyone who reaches it can run the models. Put TLS in front "
    "(a reverse proxy such as nginx or Caddy terminating HTTPS), list the proxy's public name with --allowed-host "
    "and its https:// origin with --allowed-origin."
)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def is_loopback(host: str | None) -> bool:
    """``127.0.0.0/8``, ``::1`` or ``localhost`` (brackets allowed); ``0.0.0.0`` and names are not."""
    import ipaddress

    host = (host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


KEY_FILE_SETTLE_S = 2.0  # how long a key file caught mid-rewrite is read again before it counts as broken


def read_key_file(path: str | os.PathLike, settle_s: float = KEY_FILE_SETTLE_S) -> dict[str, Any]:
    """TorchServe's ``key_file.json`` as a dict. TorchServe rewrites the file in place when a key is renewed, so
    a reader can catch it empty or cut short: such a file is read again until it parses or ``settle_s`` passes,
    then ``ValueError`` names the file and the reason. A missing file raises ``OSError`` at once."""
    deadline = time.monotonic() + settle_s
    while True:
        text = Path(path).read_text(encoding="utf-8")
        try:
            doc = json.loads(text)
            reason = "" if isinstance(doc, dict) else f"a JSON {type(doc).__name__}, not an object"
        except ValueError as e:
            doc, reason = None, f"not JSON ({e})"
        if not reason:
            return doc
        if time.monotonic() >= deadline:
            raise ValueError(f"{path}: not a TorchServe key file: {reason}")
        time.sleep(0.05)


@dataclass
class GatewayConfig:
    """``upstream``: TorchServe's inference URL; ``key_file``: its ``key_file.json`` (read on each call, so
    regenerated keys are picked up; ``None``: no Authorization header); ``management``: TorchServe's management
    URL, used to renew the inference key (``None``: no renewal); ``models``: endpoint -> TorchServe model name
    (``None`` or absent: not served); ``max_body``: largest accepted request in bytes; ``allowed_hosts`` /
    ``allowed_origins``: accepted besides the gateway's own loopback names (``host:port`` / ``scheme://host:port``);
    ``read_timeout_s``, ``max_connections``: see the module docstring; ``renew_margin_s``: how long before its
    expiry the inference key is renewed."""

    upstream: str
    key_file: Path | None = None
    models: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    max_body: int = MAX_BODY
    timeout_s: float = 120.0
    management: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    read_timeout_s: float = READ_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    renew_margin_s: float = RENEW_MARGIN_S

    def _keys(self) -> dict[str, Any]:
        if self.key_file is None:
            return {}
        try:
            return read_key_file(self.key_file)
        except (OSError, ValueError):
            return {}

    def token(self) -> str | None:
        try:
            return str(self._keys()["inference"]["key"])
        except (KeyError, TypeError):
            return None

    def token_expiry(self) -> float | None:
        """When the inference key expires (epoch seconds), from the key file's ``expiration time``."""
        from datetime import datetime

        try:
            text = str(self._keys()["inference"]["expiration time"])
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except (KeyError, TypeError, ValueError):
            return None

    def renew_token(self) -> bool:
        """Ask TorchServe for a new inference key (``GET <management>/token?type=inference`` with the key file's
        API key); TorchServe writes it to the key file. ``False`` when there is no way or it failed."""
        import requests

        api = (self._keys().get("API") or {}).get("key") if self.management else None
        if not api:
            return False
        try:
            r = requests.get(
                f"{self.management}/token",
                params={"type": "inference"},
                headers={"Authorization": f"Bearer {api}"},
                timeout=10,
            )
        except requests.RequestException as e:
            log.warning("token renewal failed: %s", e)
            return False
        if r.status_code != 200:
            log.warning("token renewal refused: HTTP %d", r.status_code)
            return False
        log.info("inference token renewed")
        return True


def _renew_loop(config: GatewayConfig, stop: threading.Event) -> None:
    """Renew the inference key ``config.renew_margin_s`` before it expires (checked at least hourly)."""
    while not stop.is_set():
        expiry = config.token_expiry()
        wait = 60.0
        if expiry is not None:
            left = expiry - time.time()
            if left <= config.renew_margin_s:
                config.renew_token()
            else:
                wait = min(3600.0, left - config.renew_margin_s)
        stop.wait(wait)


def _invalid_key(status: int, text: str) -> bool:
    """TorchServe 0.12 refuses a stale or wrong key with 400 (docs: 401): 'Token Authorization failed. Token either
    incorrect, expired, ...' (an expired key answers the same)."""
    markers = ("Token Authorization failed", "Token Authentication failed", "InvalidKeyException")
    return status in (400, 401) and any(m in text for m in markers)


class _DeadlineReader(io.RawIOBase):
    """The connection's reads, each with the time left until the request's deadline as its socket timeout."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.deadline = sock, time.monotonic() + READ_TIMEOUT_S

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not received in time")
        self.sock.settimeout(left)
        return self.sock.recv_into(buf)


class _Handler(BaseHTTPRequestHandler):
    server_version = "chromaflow-gateway"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    @property
    def cfg(self) -> GatewayConfig:
        return self.server.config  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        self._raw = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._raw, 1 << 16)

    def handle_one_request(self) -> None:
        self._raw.deadline = time.monotonic() + self.cfg.read_timeout_s  # for this request (keep-alive: the next)
        try:
            super().handle_one_request()
        except (TimeoutError, OSError) as e:
            log.info("%s: connection closed: %s", self.address_string(), e)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.info("%s %s", self.address_string(), (format % args).encode("unicode_escape").decode("ascii"))

    def _host_ok(self) -> bool:
        """``Host`` names this gateway (DNS rebinding defence); otherwise answers 403 and closes."""
        host = (self.headers.get("Host") or "").strip().lower()
        if host in self.server.allowed_hosts:  # type: ignore[attr-defined]
            return True
        self.close_connection = True
        self._error(403, "foreign_host", "the Host header does not name this gateway")
        return False

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
        if not self._host_ok():
            return
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
        if not self._host_ok():
            return
        path = self.path.split("?", 1)[0]
        m = re.fullmatch(r"/api/([a-z_]+)", path)
        if not m or m.group(1) not in DEFAULT_MODELS:
            self._drain_or_close()
            return self._error(404, "not_found", f"no such endpoint; use /api/{{{','.join(DEFAULT_MODELS)}}}")
        endpoint = m.group(1)
        origin = self.headers.get("Origin")
        own = {f"http://{self.headers.get('Host', '').strip().lower()}", *self.cfg.allowed_origins}
        if origin is None or origin.strip().lower() not in own:
            self.close_connection = True
            if origin is None:
                return self._error(403, "origin_required", f"send Origin: http://{self.headers.get('Host')}")
            return self._error(403, "foreign_origin", "requests from other origins are not accepted")
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != JSON_TYPE:
            self._drain_or_close()
            return self._error(415, "unsupported_content_type", f"send {JSON_TYPE}")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            return self._error(411, "length_required", "a Content-Length header is required")
        if int(length) > self.cfg.max_body:
            self.close_connection = True
            return self._error(413, "too_large", f"the body is {length} bytes; the limit is {self.cfg.max_body}")
        body = self._read_body(int(length))
        if body is None:
            self.close_connection = True
            return self._error(400, "incomplete_body", "the connection closed before Content-Length bytes arrived")
        model = self.cfg.models.get(endpoint)
        if not model:
            return self._error(404, "not_served", f"endpoint {endpoint!r} has no model on this server")
        self._proxy(model, body)

    def _read_body(self, length: int) -> bytes | None:
        """``length`` bytes in chunks (memory grows only as bytes arrive), ``None`` if the client stops short;
        a stalled client hits the request's deadline (``TimeoutError``, the connection is closed)."""
        buf = bytearray()
        while len(buf) < length:
            chunk = self.rfile.read1(min(1 << 20, length - len(buf)))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _drain_or_close(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= self.cfg.max_body:
            self._read_body(int(length))
        else:
            self.close_connection = True

    def _proxy(self, model: str, body: bytes) -> None:
        import requests

        for attempt in (0, 1):
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
            if attempt or not _invalid_key(r.status_code, r.text[:2000]) or not self.cfg.renew_token():
                break
            log.info("upstream refused the inference key; renewed it, retrying once")
        self._send(r.status_code, r.headers.get("Content-Type", "application/octet-stream"), r.content)


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``config.max_connections`` at once: one more is answered 503 and closed
    (the accept loop never blocks on a full pool)."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog: a burst of connections is accepted (then served or refused), not
    # left in SYN retries for seconds

    def __init__(self, address: tuple[str, int], config: GatewayConfig) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)
        self.config = config
        self.page = _page()
        self.slots = threading.BoundedSemaphore(config.max_connections)
        port = self.server_address[1]
        own = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        if not is_loopback(address[0]) and address[0] not in ("", "0.0.0.0", "::"):
            own.add(f"{address[0]}:{port}".lower())
        self.allowed_hosts = frozenset(own | {h.lower() for h in config.allowed_hosts})

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_gateway(
    config: GatewayConfig, host: str = "127.0.0.1", port: int = 0, *, public: bool = False
) -> ThreadingHTTPServer:
    """A ready-to-run server (call ``serve_forever``); ``port=0`` picks a free port. A non-loopback ``host``
    needs ``public=True`` (a :class:`ValueError` otherwise) and logs :data:`PUBLIC_NOTE`."""
    if not is_loopback(host):
        if not public:
            raise ValueError(f"gateway: {host!r} is not a loopback address; pass --public (and put TLS in front)")
        log.warning("%s", PUBLIC_NOTE)
    httpd = _BoundedServer((host, port), config)
    if config.management and config.key_file is not None:
        stop = threading.Event()
        threading.Thread(target=_renew_loop, args=(config, stop), name="token-renewal", daemon=True).start()
        httpd.renewal_stop = stop  # type: ignore[attr-defined]
    return httpd


class Gateway:
    """The gateway on a background thread (tests, notebooks): ``with Gateway(cfg) as gw: gw.url``."""

    def __init__(self, config: GatewayConfig, host: str = "127.0.0.1", port: int = 0, *, public: bool = False) -> None:
        self.httpd = make_gateway(config, host, port, public=public)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="chromaflow-gateway", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def origin(self) -> dict[str, str]:
        """The ``Origin`` header of this gateway's own page (what a same-origin POST carries)."""
        return {"Origin": self.url}

    def stop(self) -> None:
        stop = getattr(self.httpd, "renewal_stop", None)
        if stop is not None:
            stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def models_for(names: list[str]) -> dict[str, str | None]:
    """Endpoint -> model name from the names TorchServe serves: the guided endpoints and ``translate`` by name,
    ``colorize`` the first other name (``None`` when there is none)."""
    from chromaflow.export.handler_settings import ENDPOINTS

    named = (*ENDPOINTS, "translate")
    others = [n for n in names if n not in named]
    return {
        "colorize": others[0] if others else None,
        "guided": "colorize_guided" if "colorize_guided" in names else None,
        "palette": "palette" if "palette" in names else None,
        "gamut": "gamut" if "gamut" in names else None,
        "translate": "translate" if "translate" in names else None,
    }


def start_gateway_process(
    server: Any, port: int = 0, host: str = "127.0.0.1", timeout_s: float = 30.0, *, public: bool = False
) -> tuple[int, str]:
    """Start ``python -m chromaflow.gateway`` in its own session for a running :class:`chromaflow.serve.Server`;
    return its pid and URL once ``/api/health`` answers."""
    import requests

    if not is_loopback(host) and not public:
        raise ValueError(f"gateway: {host!r} is not a loopback address; pass --public (and put TLS in front)")
    port = port or free_port()
    models = models_for(list(server.model_names))
    cmd = [sys.executable, "-m", "chromaflow.gateway", "--upstream", server.inference_url]
    cmd += ["--key-file", str(server.key_file), "--host", host, "--port", str(port)]
    cmd += ["--management", server.management_url]
    cmd += ["--models", ",".join(f"{k}={v}" for k, v in models.items() if v)] + (["--public"] if public else [])
    logs = Path(server.run_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "gateway.log", "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{host}:{port}"
    probe = f"http://127.0.0.1:{port}" if not is_loopback(host) else url
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}; see {logs / 'gateway.log'}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{probe}/api/health", timeout=5).status_code == 200:
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
    p.add_argument("--host", default="127.0.0.1", help="a non-loopback address needs --public")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--management", default=None, help="TorchServe management URL (renews the inference token)")
    p.add_argument("--public", action="store_true", help="allow a non-loopback --host (put TLS in front)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="HOST:PORT", help="another accepted Host")
    p.add_argument("--allowed-origin", action="append", default=[], metavar="URL", help="another accepted Origin")
    p.add_argument("--read-timeout", type=float, default=READ_TIMEOUT_S, help="seconds for a whole request")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, help="connections served at once")
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
    cfg = GatewayConfig(
        upstream=args.upstream.rstrip("/"),
        key_file=args.key_file,
        models=models,
        management=args.management.rstrip("/") if args.management else None,
        allowed_hosts=tuple(args.allowed_host),
        allowed_origins=tuple(o.rstrip("/") for o in args.allowed_origin),
        read_timeout_s=args.read_timeout,
        max_connections=args.max_connections,
    )
    if not is_loopback(args.host) and not args.public:
        p.error(f"--host {args.host}: not a loopback address; pass --public (and put TLS in front)")
    if args.public:
        print(f"chromaflow gateway: {PUBLIC_NOTE}", file=sys.stderr)
    httpd = make_gateway(cfg, args.host, args.port, public=args.public)
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
    "is_loopback",
    "make_gateway",
    "models_for",
    "start_gateway_process",
    "stop_gateway_process",
]
