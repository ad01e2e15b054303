"""Atomic writes: whole or nothing, and files readable like any other output."""

from __future__ import annotations

import os
import stat

import pytest

from chromaflow import io


def test_atomic_write_is_whole_or_nothing(tmp_path):
    path = tmp_path / "a" / "out.json"
    io.write_json(path, {"x": 1})
    assert io.read_json(path) == {"x": 1}
    with pytest.raises(RuntimeError), io.atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert io.read_json(path) == {"x": 1}  # the old content survives
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]  # no temp file left


def test_outputs_get_umask_permissions_not_0600(tmp_path):
    path = tmp_path / "w.bin"
    io.write_bytes(path, b"abc")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
