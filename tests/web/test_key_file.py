"""Reading TorchServe's key file while TorchServe rewrites it (a renewal truncates, then writes, in place)."""

import json
import threading
import time

import pytest

from chromaflow.gateway.server import GatewayConfig, read_key_file

KEYS = {"inference": {"key": "abc123", "expiration time": "2026-12-05T00:00:00Z"}, "management": {"key": "m"}}


@pytest.mark.parametrize("partial", ["", '{"inference": {"key": "ab'])
def test_a_file_caught_mid_rewrite_is_read_again_until_it_parses(tmp_path, partial):
    path = tmp_path / "key_file.json"
    path.write_text(partial)
    writer = threading.Timer(0.3, lambda: path.write_text(json.dumps(KEYS)))
    writer.start()
    try:
        t0 = time.monotonic()
        assert read_key_file(path) == KEYS
        assert time.monotonic() - t0 >= 0.25  # it waited for the writer rather than returning early
    finally:
        writer.join()
    assert GatewayConfig(upstream="http://127.0.0.1:1", key_file=path).token() == "abc123"


def test_a_file_that_stays_broken_names_itself_and_the_reason(tmp_path):
    path = tmp_path / "key_file.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"key_file.json: not a TorchServe key file: a JSON list"):
        read_key_file(path, settle_s=0.1)
    path.write_text("{cut")
    with pytest.raises(ValueError, match="not JSON"):
        read_key_file(path, settle_s=0.1)
    with pytest.raises(OSError):
        read_key_file(tmp_path / "missing.json")
    # the gateway sends no token rather than dying on a broken file
    assert GatewayConfig(upstream="http://127.0.0.1:1", key_file=path).token() is None
