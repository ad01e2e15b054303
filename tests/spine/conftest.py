"""Fixtures for the MLOps spine tests: a fake Kubeflow Pipelines API server on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest


class FakeKFP(BaseHTTPRequestHandler):
    """Answers the KFP v2beta1 REST calls the client makes; records (method, path, query, headers, body)."""

    calls: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, obj: dict, code: int = 200) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        url = urlparse(self.path)
        call = {
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        self.calls.append(call)
        return call

    def do_GET(self):
        call = self._record()
        if call["path"].endswith("/healthz"):
            return self._reply({"multi_user": False})
        if call["path"].endswith("/experiments") or call["path"].endswith("/pipelines"):
            return self._reply({})  # none exist yet
        return self._reply({"error": "not found"}, 404)

    def do_POST(self):
        call = self._record()
        p = call["path"]
        if p.endswith("/experiments"):
            name = json.loads(call["body"])["display_name"]
            return self._reply({"experiment_id": "exp-1", "display_name": name})
        if p.endswith("/pipelines/upload"):
            return self._reply({"pipeline_id": "pipe-1", "display_name": "uploaded"})
        if p.endswith("/runs"):
            return self._reply({"run_id": "run-1", "display_name": json.loads(call["body"])["display_name"]})
        return self._reply({"error": "not found"}, 404)


@pytest.fixture
def fake_kfp():
    """``(url, calls)``: a KFP API stand-in on 127.0.0.1 in a thread, and the list of requests it got."""
    FakeKFP.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKFP)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", FakeKFP.calls
    finally:
        server.shutdown()
        server.server_close()
