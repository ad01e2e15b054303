"""Weights I/O: round trip, strict loading, tamper detection, contract checks, no unpickling."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from chromaflow.models import create_model, load_weights, read_config, save_weights, sha256_file


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("eccv16", width=0.125, head="class", contract={"T": 0.42})
    path = tmp_path_factory.mktemp("w") / "m.safetensors"
    digest = save_weights(model, path)
    return model, path, digest


def _rewrite(src, dst, drop=None, add=None, metadata=None):
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(src))
    if drop:
        tensors.pop(drop)
    tensors.update(add or {})
    save_file(tensors, str(dst), metadata=metadata if metadata is not None else meta)


def test_round_trip(saved):
    model, path, digest = saved
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == sha256_file(path)
    loaded = load_weights(path, expected_sha256=digest)
    assert loaded.config == model.config and loaded.config["contract"]["T"] == 0.42
    assert not loaded.training
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.rand(1, 1, 32, 32) - 0.5
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["chromaflow.contract"])["T"] == 0.42 and meta["chromaflow.format"] == "1"
    assert read_config(path)["kwargs"] == {"width": 0.125, "head": "class"}


def test_tampered_file_is_refused(saved, tmp_path):
    _, path, digest = saved
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip bits inside the last tensor
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_weights(bad, expected_sha256=digest)


def test_missing_and_unexpected_keys_are_named(saved, tmp_path):
    _, path, _ = saved
    _rewrite(path, tmp_path / "miss.safetensors", drop="conv4.2.weight")
    with pytest.raises(ValueError, match=r"missing keys \['conv4.2.weight'\]"):
        load_weights(tmp_path / "miss.safetensors")
    _rewrite(path, tmp_path / "extra.safetensors", add={"extra.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"unexpected keys \['extra.bias'\]"):
        load_weights(tmp_path / "extra.safetensors")
    _rewrite(path, tmp_path / "shape.safetensors", add={"head.bias": torch.zeros(7)})
    with pytest.raises(ValueError, match="shape mismatch head.bias"):
        load_weights(tmp_path / "shape.safetensors")


def test_contract_mismatch_is_refused(saved):
    _, path, _ = saved
    load_weights(path, contract={"T": 0.42, "ab_norm": 110.0})  # matching keys are fine
    with pytest.raises(ValueError, match=r"contract mismatch \(T: stored 0.42 vs requested 0.38\)"):
        load_weights(path, contract={"T": 0.38})


def test_foreign_files_are_refused(saved, tmp_path):
    _, path, _ = saved
    _rewrite(path, tmp_path / "nometa.safetensors", metadata={})
    with pytest.raises(ValueError, match="not written by chromaflow"):
        load_weights(tmp_path / "nometa.safetensors")
    pkl = tmp_path / "evil.safetensors"
    pkl.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_weights(pkl)
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match="no registry config"):
        save_weights(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")


def test_fp16_file_loads_into_fp32_model(saved, tmp_path):
    """Shipped models are stored in fp16 (half the bytes); loading casts back to the model's fp32."""
    model, path, _ = saved
    half = tmp_path / "half.safetensors"
    save_weights(model, half, dtype=torch.float16)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    stored = load_file(str(half))
    assert stored["head.weight"].dtype == torch.float16
    assert stored["conv1.4.num_batches_tracked"].dtype == torch.long  # integer buffers keep their type
    loaded = load_weights(half)
    assert next(loaded.parameters()).dtype == torch.float32
    ref = {k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    assert all(torch.equal(ref[k], v) for k, v in loaded.state_dict().items())


def test_same_weights_give_the_same_bytes(tmp_path):
    """safetensors writes its metadata in a random order per call; save_weights must not (one model, one hash)."""
    model = create_model("eccv16", width=1 / 16)
    raw = set()
    for _ in range(8):  # the library alone: more than one byte string for the same content
        save_file({"w": torch.zeros(2)}, str(tmp_path / "raw.safetensors"), metadata={"x": "1", "y": "2", "z": "3"})
        raw.add((tmp_path / "raw.safetensors").read_bytes())
    digests = {save_weights(model, tmp_path / f"m{i}.safetensors") for i in range(8)}
    assert len(raw) > 1 and len(digests) == 1
    data = (tmp_path / "m0.safetensors").read_bytes()
    meta = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]  # in file order
    assert list(meta) == sorted(meta)
    torch.testing.assert_close(load_weights(tmp_path / "m0.safetensors").state_dict(), model.state_dict())
