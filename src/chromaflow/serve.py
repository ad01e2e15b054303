"""``chromaflow serve``: start / stop TorchServe with an exported archive, everything under one run directory.

    chromaflow serve --mar runs/export/colorize.mar --run-dir runs/serve          # 8080 / 8081 / 8082
    curl -H "Authorization: Bearer $(jq -r .inference.key runs/serve/key_file.json)" \\
         -H "Content-Type: image/jpeg" --data-binary @data/sample/kodim01.jpg \\
         http://127.0.0.1:8080/predictions/colorize -o out.png
    chromaflow serve --stop --run-dir runs/serve

Several archives, and the web page (a gateway that holds the token and proxies to TorchServe)::

    chromaflow serve --mar runs/export/colorize.mar --mar runs/export/colorize_guided.mar \\
                     --run-dir runs/serve --gateway 8000                          # http://127.0.0.1:8000/

A user-guided archive (``guided_handler.py`` inside) is registered under the three endpoint names
``colorize_guided``, ``palette`` and ``gamut`` unless a name is given (``--mar NAME=PATH``).

    >>> with start_server("runs/export/colorize.mar", "runs/serve-test") as srv:   # free loopback ports
    ...     requests.post(srv.predict_url, data=png, headers=srv.auth_headers("image/png"))

The Java frontend is launched directly (not through the ``torchserve`` script, whose pid file in /tmp
allows one server per machine), with cwd = the run directory, LOG_LOCATION / METRICS_LOCATION pointing
into it, and the config rendered from ``serving/config.properties``. The settings that make the server
safe (token auth, management on loopback, no model API, no env overrides) are checked before start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from chromaflow.gateway.server import free_port, read_key_file
from chromaflow.io import read_json, write_json, write_text
from chromaflow.resources import serving_dir

log = logging.getLogger(__name__)

CONFIG_TEMPLATE = serving_dir() / "config.properties"
STATE = "server.json"  # in the run dir: pid, urls, model name
KEY_FILE = "key_file.json"  # written by TorchServe in its cwd (the run dir)
USER_PORTS = (8080, 8081, 8082)
MAIN_CLASS = "org.pytorch.serve.ModelServer"


class ServeError(RuntimeError):
    """TorchServe could not be started, was misconfigured, or did not become healthy."""


def read_properties(text: str) -> dict[str, str]:
    """Parse a ``.properties`` file (``key=value`` lines, ``#`` comments, ``\\`` continuations, ``\\\\`` escapes)."""
    props: dict[str, str] = {}
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        while line.endswith("\\") and not line.endswith("\\\\"):
            line = line[:-1] + next(lines, "").strip()
        key, _, value = line.partition("=")
        props[key.strip()] = value.strip().replace("\\\\", "\\")
    return props


def write_properties(props: dict[str, str]) -> str:
    return "".join(f"{k}={v.replace(chr(92), chr(92) * 2)}\n" for k, v in props.items())


EXPOSABLE = ("inference_address", "metrics_address", "grpc_inference_address")  # loopback unless public=True


def _host(value: str) -> str:
    """The host of an ``http://host:port`` address or of a bare gRPC host."""
    return (urlparse(value).hostname or "") if "://" in value else value.strip().strip("[]")


def check_secure(props: dict[str, str], *, public: bool = False) -> None:
    """Raise :class:`ServeError` listing every weakened security setting in ``props``.

    Inference, metrics and gRPC inference must be on loopback unless ``public`` (``chromaflow serve --public``),
    which logs a warning naming each exposed address; management (HTTP and gRPC) is loopback always.
    """
    from chromaflow.gateway.server import PUBLIC_NOTE, is_loopback

    problems = []
    if props.get("disable_token_authorization", "false").lower() != "false":
        problems.append("disable_token_authorization must be false (token authorization on)")
    if props.get("enable_model_api", "false").lower() != "false":
        problems.append("enable_model_api must be false (no model registration over the network)")
    if props.get("enable_envvars_config", "false").lower() != "false":
        problems.append("enable_envvars_config must be false (the environment must not override this config)")
    for key in ("management_address", "grpc_management_address"):
        if not is_loopback(_host(props.get(key, "127.0.0.1"))):
            problems.append(f"{key} must be on loopback, got {props.get(key)!r}")
    exposed = [f"{k}={props[k]}" for k in EXPOSABLE if k in props and not is_loopback(_host(props[k]))]
    if exposed and not public:
        problems.append(f"{', '.join(exposed)}: not loopback; pass --public to expose them (and put TLS in front)")
    elif exposed:
        log.warning("TorchServe exposed on %s: %s", ", ".join(exposed), PUBLIC_NOTE)
    if not props.get("allowed_urls", "").startswith("file://"):
        problems.append("allowed_urls must be restricted to the local model store (file://...)")
    for key in ("max_request_size", "max_response_size"):
        if not props.get(key, "").isdigit():
            problems.append(f"{key} must be set to a number of bytes")
    if not any(a.startswith("-Xmx") for a in props.get("vmargs", "").split()):
        problems.append("vmargs must bound the JVM heap (-Xmx...)")
    if problems:
        raise ServeError("insecure TorchServe config: " + "; ".join(problems))


def _worker_port() -> int:
    """A base port for TorchServe's worker sockets (/tmp/.ts.sock.<port>) that no other server uses."""
    for _ in range(100):
        p = free_port()
        if p < 65000 and not any(Path(f"/tmp/.ts.sock.{p + i}").exists() for i in range(8)):
            return p
    raise ServeError("no free worker socket port found")


@dataclass
class Server:
    """A running TorchServe (see :func:`start_server`); a context manager that stops it on exit."""

    run_dir: Path
    pid: int
    model_name: str
    inference_url: str
    management_url: str
    metrics_url: str
    process: subprocess.Popen | None = field(default=None, repr=False)
    model_names: list[str] = field(default_factory=list)  # every registered name (model_name first)

    def __post_init__(self) -> None:
        if not self.model_names:
            self.model_names = [self.model_name]

    def predict_url_for(self, name: str) -> str:
        """``<inference_url>/predictions/<name>`` for one of :attr:`model_names`."""
        if name not in self.model_names:
            raise KeyError(f"model {name!r} is not served here; served: {self.model_names}")
        return f"{self.inference_url}/predictions/{name}"

    @property
    def key_file(self) -> Path:
        return self.run_dir / KEY_FILE

    def _keys(self) -> dict[str, Any]:
        return read_key_file(self.key_file)

    @property
    def token(self) -> str:
        """The inference key (``Authorization: Bearer <token>``)."""
        return str(self._keys()["inference"]["key"])

    @property
    def management_token(self) -> str:
        return str(self._keys()["management"]["key"])

    @property
    def predict_url(self) -> str:
        return f"{self.inference_url}/predictions/{self.model_name}"

    def auth_headers(self, content_type: str | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"}
        if content_type:
            h["Content-Type"] = content_type
        return h

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop TorchServe (SIGTERM to its process group, SIGKILL after ``timeout_s``) and remove its keys."""
        _terminate(self.pid, self.process, timeout_s)
        for name in (STATE, KEY_FILE):
            (self.run_dir / name).unlink(missing_ok=True)
        log.info("TorchServe (pid %d) stopped", self.pid)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return MAIN_CLASS.encode() in cmdline


def _terminate(pid: int, process: subprocess.Popen | None, timeout_s: float) -> None:
    if not _alive(pid):
        return
    try:
        pgid = os.getpgid(pid)
    except OSError:
        return
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        if process is None and not _alive(pid):
            break
        time.sleep(0.2)
    else:
        log.warning("TorchServe (pid %d) did not stop in %.0fs; killing it", pid, timeout_s)
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    if process is not None:
        process.wait(timeout=30)
    with contextlib.suppress(OSError):  # worker processes left in the group
        os.killpg(pgid, signal.SIGKILL)


def _get(url: str, token: str | None, timeout: float = 5.0) -> tuple[int, str]:
    import requests

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = requests.get(url, headers=headers, timeout=timeout)
    except requests.RequestException:
        return 0, ""
    return r.status_code, r.text


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return ""


GUIDED_HANDLER = "guided_handler.py"  # inside an archive: the user-guided handler (several endpoint names)


def archive_names(mar: str | os.PathLike) -> list[str]:
    """Default TorchServe names for an archive: the endpoint names of a user-guided archive
    (``colorize_guided``, ``palette``, ``gamut``), else the file's stem."""
    import zipfile

    from chromaflow.export.handler_settings import ENDPOINTS

    try:
        with zipfile.ZipFile(mar) as z:
            guided = GUIDED_HANDLER in z.namelist()
    except (OSError, zipfile.BadZipFile) as e:
        raise ServeError(f"archive {mar}: not a readable .mar ({e})") from None
    return list(ENDPOINTS) if guided else [Path(mar).stem]


def start_server(
    mar: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    model_name: str | None = None,
    models: dict[str, str | os.PathLike] | None = None,
    inference_port: int = 0,
    management_port: int = 0,
    metrics_port: int = 0,
    config: str | os.PathLike | None = None,
    timeout_s: float = 180.0,
    java: str | None = None,
    public: bool = False,
) -> Server:
    """Start TorchServe serving ``mar``; return once the model's worker is ready.

    Args:
        mar: an archive from ``chromaflow export`` (copied into ``<run_dir>/model-store``).
        run_dir: cwd of the server: its config, logs (``logs/``), keys (``key_file.json``), ``server.json``.
        model_name: the name in URLs (default: the archive's file stem; a user-guided archive is registered
            under all of :func:`archive_names` then).
        models: more registrations, ``{name: archive}`` (an archive may appear under several names).
        inference_port, management_port, metrics_port: 0 picks a free loopback port.
        config: the config template (default: ``serving/config.properties``); security settings are enforced.
        timeout_s: how long to wait for a healthy server.
        public: allow non-loopback inference / metrics / gRPC addresses in the config (see :func:`check_secure`).

    Raises :class:`ServeError` (with the tail of the server's log) when it does not come up.
    """
    mar = Path(mar).resolve()
    if not mar.is_file() or mar.suffix != ".mar":
        raise FileNotFoundError(f"start_server: archive {mar}: no such .mar file")
    run_dir = Path(run_dir).resolve()
    state = run_dir / STATE
    if state.is_file() and _alive(int(read_json(state).get("pid", -1))):
        raise ServeError(f"start_server: a server from {run_dir} is still running; stop it first")
    template = Path(config or CONFIG_TEMPLATE)
    if not template.is_file():
        raise FileNotFoundError(f"start_server: config template {template}: no such file")
    java = java or (os.path.join(os.environ["JAVA_HOME"], "bin", "java") if "JAVA_HOME" in os.environ else "java")
    if shutil.which(java) is None:
        raise ServeError(f"start_server: {java!r} not found: TorchServe needs Java 17 (set JAVA_HOME)")
    import ts

    registrations = [(model_name, mar)] if model_name else [(n, mar) for n in archive_names(mar)]
    for name, path in (models or {}).items():
        path = Path(path).resolve()
        if not path.is_file() or path.suffix != ".mar":
            raise FileNotFoundError(f"start_server: archive {path} (model {name!r}): no such .mar file")
        registrations.append((name, path))
    names = [n for n, _ in registrations]
    if len(set(names)) != len(names):
        raise ServeError(f"start_server: model names must be unique, got {names}")
    by_file: dict[str, Path] = {}
    for _, path in registrations:
        if by_file.setdefault(path.name, path) != path:
            raise ServeError(f"start_server: two different archives are both named {path.name}")
    model_name = names[0]
    store = run_dir / "model-store"
    store.mkdir(parents=True, exist_ok=True)
    for path in by_file.values():
        (store / path.name).unlink(missing_ok=True)
        shutil.copy2(path, store / path.name)
    (run_dir / KEY_FILE).unlink(missing_ok=True)

    props = read_properties(template.read_text(encoding="utf-8"))
    ports = {
        "inference_address": inference_port or free_port(),
        "management_address": management_port or free_port(),
        "metrics_address": metrics_port or free_port(),
    }
    for key, port in ports.items():
        host = urlparse(props.get(key, "http://127.0.0.1")).hostname or "127.0.0.1"
        props[key] = f"http://{host}:{port}"
    props["grpc_inference_port"] = str(free_port())
    props["grpc_management_port"] = str(free_port())
    props["initial_worker_port"] = str(_worker_port())
    props["model_store"] = str(store)
    props["allowed_urls"] = f"file://{store}/.*"
    props["load_models"] = ",".join(f"{n}={p.name}" for n, p in registrations)
    check_secure(props, public=public)
    conf = run_dir / "config.properties"
    write_text(conf, write_properties(props))

    ts_home = Path(ts.__file__).resolve().parents[1]
    cmd = [java, *props.get("vmargs", "").split(), f"-Dmodel_server_home={ts_home}"]  # vmargs: -Xmx, as `torchserve`
    cmd += ["-cp", f".:{ts_home / 'ts' / 'frontend' / '*'}", MAIN_CLASS]
    cmd += ["--python", sys.executable, "-f", str(conf), "-s", str(store), "-ncs"]
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    env = {**os.environ, "LOG_LOCATION": str(logs), "METRICS_LOCATION": str(logs)}
    for var in ("TS_CONFIG_FILE", "TS_DISABLE_TOKEN_AUTHORIZATION"):
        env.pop(var, None)
    out = open(logs / "torchserve.out", "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        out.close()
    server = Server(
        run_dir=run_dir,
        pid=proc.pid,
        model_name=model_name,
        inference_url=props["inference_address"],
        management_url=props["management_address"],
        metrics_url=props["metrics_address"],
        process=proc,
        model_names=names,
    )
    write_json(state, {k: v for k, v in vars(server).items() if k != "process"} | {"run_dir": str(run_dir)})
    try:
        _wait_ready(server, timeout_s)
    except BaseException:
        server.stop(timeout_s=20)
        raise
    log.info("TorchServe ready: %s (keys in %s)", ", ".join(map(server.predict_url_for, names)), server.key_file)
    return server


def _wait_ready(server: Server, timeout_s: float) -> None:
    """Wait for the key file, then for every model's worker to report READY on the management API."""
    deadline = time.monotonic() + timeout_s
    pending = list(server.model_names)
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise ServeError(
                f"TorchServe exited with {server.process.returncode}:\n{_tail(server.run_dir / 'logs' / 'torchserve.out')}"
            )
        if server.key_file.is_file():
            try:
                token = server.management_token
            except (OSError, ValueError, KeyError):
                token = None
            while token and pending:
                code, text = _get(f"{server.management_url}/models/{pending[0]}", token)
                try:
                    workers = json.loads(text)[0].get("workers", []) if code == 200 else []
                except (ValueError, IndexError, AttributeError):
                    workers = []
                if not any(w.get("status") == "READY" for w in workers):
                    break
                pending.pop(0)
            if not pending:
                return
        time.sleep(0.5)
    raise ServeError(
        f"TorchServe not ready after {timeout_s:.0f}s:\n{_tail(server.run_dir / 'logs' / 'model_log.log')}"
        f"\n{_tail(server.run_dir / 'logs' / 'torchserve.out')}"
    )


def stop_server(run_dir: str | os.PathLike, timeout_s: float = 60.0) -> bool:
    """Stop the server started from ``run_dir`` (its ``server.json``); ``False`` if none was running."""
    run_dir = Path(run_dir).resolve()
    state = run_dir / STATE
    if not state.is_file():
        return False
    s = read_json(state)
    running = _alive(int(s["pid"]))
    if s.get("gateway_pid"):
        from chromaflow.gateway.server import stop_gateway_process

        stop_gateway_process(int(s["gateway_pid"]), timeout_s=min(timeout_s, 20.0))
    Server(
        run_dir=run_dir,
        pid=int(s["pid"]),
        model_name=s["model_name"],
        inference_url=s["inference_url"],
        management_url=s["management_url"],
        metrics_url=s["metrics_url"],
        model_names=list(s.get("model_names") or [s["model_name"]]),
    ).stop(timeout_s)
    return running


SEND_A_REQUEST = """send a request (token auth is on; the key lies in the run directory):
  TOKEN=$(.venv/bin/python -c 'import json; print(json.load(open("RUN_DIR/key_file.json"))["inference"]["key"])')
  curl -sSf -H "Authorization: Bearer $TOKEN" -H "Content-Type: image/jpeg" --data-binary @photo.jpg \\
       http://127.0.0.1:8080/predictions/colorize -o photo_color.png"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = SEND_A_REQUEST
    parser.add_argument(
        "--mar",
        action="append",
        default=None,
        metavar="[NAME=]PATH",
        help="archive from `chromaflow export` (repeat for several; NAME= sets its name in URLs); "
        "default: the models shipped in weights/",
    )
    parser.add_argument("--run-dir", type=Path, required=True, help="config, logs and keys go here")
    parser.add_argument("--stop", action="store_true", help="stop the server started from --run-dir")
    parser.add_argument("--model-name", default=None, help="name in URLs of the first archive (default: its stem)")
    parser.add_argument("--port", type=int, default=USER_PORTS[0], help="inference port (0: any free)")
    parser.add_argument("--management-port", type=int, default=USER_PORTS[1], help="management port (loopback)")
    parser.add_argument("--metrics-port", type=int, default=USER_PORTS[2], help="metrics port")
    parser.add_argument("--config", type=Path, default=None, help="config template (default serving/config.properties)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for a healthy server")
    parser.add_argument(
        "--gateway",
        type=int,
        default=None,
        metavar="PORT",
        help="also start the web page + proxy on 127.0.0.1:PORT (0: any free port); it holds the token",
    )
    parser.add_argument(
        "--gateway-host", default="127.0.0.1", help="address the gateway listens on (loopback unless --public)"
    )
    parser.add_argument(
        "--public",
        action="store_true",
        help="allow non-loopback addresses (inference / metrics / gRPC in --config, --gateway-host); put TLS in front",
    )


def _parse_mars(items: list[str | os.PathLike]) -> list[tuple[str | None, Path]]:
    out = []
    for item in items:
        text = os.fspath(item)
        name, sep, path = text.partition("=")
        if sep and not Path(text).is_file():
            out.append((name, Path(path)))
        else:
            out.append((None, Path(text)))
    return out


def shipped_archives(out_dir: Path) -> list[tuple[str | None, Path]]:
    """Export the servable models shipped in ``weights/`` (hash-checked against their cards; servable: their
    description names a TorchServe handler) to ``.mar`` archives under their kind's default name."""
    from chromaflow.export.mar import export_mar, handler_kind
    from chromaflow.models import described_models, read_config
    from chromaflow.models.shipped import shipped_names, shipped_weights

    out, taken = [], {}
    for shipped in shipped_names():
        try:
            weights, card = shipped_weights(shipped)
        except FileNotFoundError as e:
            log.warning("serve: %s", e)
            continue
        model_name = read_config(weights)["name"]
        description = described_models().get(model_name)
        if description is None or description.handler is None:
            continue
        # a card's "served_name" serves a second model of a kind beside the kind's default name (colorize);
        # checked before exporting, so an archive already made is never overwritten by a namesake
        name = card.get("served_name") or handler_kind(model_name).default_name
        if name in taken:
            raise SystemExit(
                f"chromaflow serve: weights/{shipped} and weights/{taken[name]} would both be served as "
                f'{name!r}; give one a "served_name" in its card.json'
            )
        taken[name] = shipped
        out.append((None, export_mar(weights, out_dir, name=name, version=card["sha256"][:12])))
    if not out:
        raise SystemExit("chromaflow serve: no --mar given and no shipped model in weights/")
    return out


def main(args: argparse.Namespace) -> int:
    if args.stop:
        stopped = stop_server(args.run_dir)
        print("stopped" if stopped else f"no server running from {args.run_dir}")
        return 0
    from chromaflow.gateway.server import PUBLIC_NOTE, is_loopback

    public = bool(getattr(args, "public", False))
    if args.gateway is not None and not is_loopback(args.gateway_host) and not public:
        raise SystemExit(f"chromaflow serve: --gateway-host {args.gateway_host} is not loopback; pass --public")
    if public:
        print(f"chromaflow serve --public: {PUBLIC_NOTE}", file=sys.stderr)
    mars = _parse_mars(args.mar) if args.mar else shipped_archives(args.run_dir / "shipped")
    first_name, first = mars[0]
    extra: dict[str, str | os.PathLike] = {}
    for name, path in mars[1:]:
        for n in [name] if name else archive_names(path):
            extra[n] = path
    srv = start_server(
        first,
        args.run_dir,
        model_name=args.model_name or first_name,
        models=extra,
        inference_port=args.port,
        management_port=args.management_port,
        metrics_port=args.metrics_port,
        config=args.config,
        timeout_s=args.timeout,
        public=public,
    )
    srv.process = None  # keep running after this command returns
    for name in srv.model_names:
        print(f"inference: {srv.predict_url_for(name)}")
    if args.gateway is not None:
        from chromaflow.gateway.server import start_gateway_process

        try:
            pid, url = start_gateway_process(srv, port=args.gateway, host=args.gateway_host, public=public)
        except BaseException:
            srv.stop(timeout_s=20)
            raise
        state = args.run_dir.resolve() / STATE
        write_json(state, read_json(state) | {"gateway_pid": pid, "gateway_url": url})
        print(f"web page:  {url}")
    print(f"key file:  {srv.key_file} (send 'Authorization: Bearer <inference.key>')")
    print(f"metrics:   {srv.metrics_url}/metrics")
    print(f"stop with: chromaflow serve --stop --run-dir {args.run_dir}")
    return 0
