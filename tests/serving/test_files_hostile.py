"""``colorize`` on hostile inputs: links out of the input, fifos, non-UTF-8 names, a failing output folder,
Ctrl-C, odd modes. Nothing outside the inputs is read, nothing is lost: every file is written, rejected with a
reason, or listed as not processed, and ``colorize.json`` is always there."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab
from tests.data.conftest import odd_modes
from tests.serving.conftest import encode, random_rgb

from chromaflow.cli import main
from chromaflow.serving.files import MANIFEST, colorize_files

NON_UTF8 = os.fsdecode(b"caf\xe9.png")


def manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_bytes().decode("utf-8"))


@pytest.fixture
def linked(tmp_path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.png").write_bytes(encode(random_rgb(20, 30, seed=9)))
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.png").write_bytes(encode(random_rgb(20, 30, seed=1)))
    (src / "sub" / "s.png").write_bytes(encode(random_rgb(20, 30, seed=2)))
    (src / "passwd").symlink_to("/etc/passwd")
    (src / "out.png").symlink_to(outside / "o.png")
    (src / "outdir").symlink_to(outside)
    (src / "in.png").symlink_to("a.png")
    os.mkfifo(src / "fifo.png")
    return src


@pytest.mark.timeout(120)  # a fifo opened for reading without a writer would block forever
def test_links_out_of_the_input_are_listed_and_never_read(linked, tmp_path, tiny_weights, opened):
    out = tmp_path / "out"
    m = colorize_files([linked], out, weights=tiny_weights, size=32)
    assert sorted(Path(w["input"]).name for w in m["written"]) == ["a.png", "s.png"]
    rejected = {Path(r["input"]).name: (r["error"], r["message"]) for r in m["rejected"]}
    assert set(rejected) == {"passwd", "out.png", "outdir", "in.png", "fifo.png"}
    assert all(e == "not_a_file" for e, _ in rejected.values())
    assert rejected["fifo.png"][1] == "a fifo, not a regular file" and "symbolic link" in rejected["passwd"][1]
    assert [p for p in opened if p.startswith("/etc/passwd") or "outside" in p] == []
    assert manifest(out)["rejected"] == m["rejected"]

    m = colorize_files([linked], tmp_path / "follow", weights=tiny_weights, size=32, follow_symlinks=True)
    assert sorted(Path(w["input"]).name for w in m["written"]) == ["a.png", "in.png", "s.png"]
    assert {Path(r["input"]).name for r in m["rejected"]} == {"passwd", "out.png", "outdir", "fifo.png"}
    assert [p for p in opened if p.startswith("/etc/passwd") or "outside" in p] == []


@pytest.mark.timeout(120)
def test_a_named_link_is_followed_a_named_fifo_is_listed(linked, tmp_path, tiny_weights):
    m = colorize_files([linked / "out.png", linked / "fifo.png"], tmp_path / "o", weights=tiny_weights, size=32)
    assert [Path(w["output"]).name for w in m["written"]] == ["out.png"]  # asked for by name: read
    assert [(Path(r["input"]).name, r["error"]) for r in m["rejected"]] == [("fifo.png", "unreadable")]


def test_a_non_utf8_name_is_colorized_under_its_own_name(tmp_path, tiny_weights, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / NON_UTF8).write_bytes(encode(random_rgb(20, 30, seed=1)))
    (src / "x\nERROR forged.png").write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        m = colorize_files([src], tmp_path / "out", weights=tiny_weights, size=32)
    assert (tmp_path / "out" / NON_UTF8).is_file()  # the same bytes as the input's name
    assert m["written"][0]["input"].endswith("caf\\xe9.png")  # valid text in colorize.json
    assert manifest(tmp_path / "out")["written"] == m["written"]
    assert [Path(r["input"]).name for r in m["rejected"]] == ["x\nERROR forged.png"]
    assert not any("\n" in r.getMessage() for r in caplog.records)
    assert "x\\nERROR forged.png" in caplog.text


def test_a_write_error_is_that_files_rejection_and_the_batch_goes_on(tmp_path, tiny_weights):
    src = tmp_path / "src"
    (src / "trip").mkdir(parents=True)
    for name in ("a.png", "trip/b.png", "z.png"):
        (src / name).write_bytes(encode(random_rgb(20, 30, seed=len(name))))
    out = tmp_path / "out"
    out.mkdir()
    (out / "trip").write_text("a file where the output subfolder should be")
    assert main(["colorize", str(src), "--out", str(out), "--weights", str(tiny_weights), "--size", "32"]) == 1
    m = manifest(out)
    assert [Path(w["output"]).name for w in m["written"]] == ["a.png", "z.png"]
    assert [(Path(r["input"]).name, r["status"], r["error"]) for r in m["rejected"]] == [("b.png", 500, "write_failed")]
    assert "trip" in m["rejected"][0]["message"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "colorize.json", "trip", "z.png"]  # no temp files


def test_ctrl_c_writes_what_is_done_and_lists_the_rest(tmp_path, tiny_weights, monkeypatch):
    from chromaflow.serving.service import ColorizeService

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.png").write_bytes(encode(random_rgb(20, 30, seed=i)))
    (src / "link.png").symlink_to("0.png")
    handle, calls = ColorizeService.handle, []

    def interrupted(self, requests):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return handle(self, requests)

    monkeypatch.setattr(ColorizeService, "handle", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        colorize_files([src], out, weights=tiny_weights, size=32)
    m = manifest(out)
    assert [Path(w["input"]).name for w in m["written"]] == ["0.png", "1.png"]
    assert [Path(r["input"]).name for r in m["rejected"]] == ["link.png"]
    assert [Path(p).name for p in m["not_processed"]] == ["2.png", "3.png"]  # nothing lost
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "colorize.json"]

    calls.clear()
    assert main(["colorize", str(src), "--out", str(tmp_path / "cli"), "--weights", str(tiny_weights)]) == 130
    assert len(manifest(tmp_path / "cli")["not_processed"]) == 2


def test_T_records_the_temperature_used(tmp_path, tiny_weights):
    photo = tmp_path / "p.png"
    photo.write_bytes(encode(random_rgb(20, 30)))
    assert colorize_files([photo], tmp_path / "a", weights=tiny_weights, size=32)["T"] == 0.38  # the thesis's T
    assert colorize_files([photo], tmp_path / "b", weights=tiny_weights, size=32, T=0.5)["T"] == 0.5
    assert colorize_files([photo], tmp_path / "c", weights=tiny_weights, size=32, method="mean")["T"] is None
    assert manifest(tmp_path / "a")["T"] == 0.38


def test_odd_modes_follow_the_ingest_policy_not_a_415(tmp_path, tiny_weights):
    src = tmp_path / "src"
    src.mkdir()
    files = odd_modes()
    for name, data in files.items():
        (src / name).write_bytes(data)
    m = colorize_files([src], tmp_path / "out", weights=tiny_weights, size=32)
    written = {Path(w["input"]).name: w for w in m["written"]}
    assert sorted(written) == ["anim.gif", "cmyk.jpg", "float.tif", "gray16.png", "rgb.bmp"]
    assert written["anim.gif"]["notes"][0] == "frame 0 of 2 kept"
    assert written["gray16.png"]["notes"] == ["I;16 scaled to 8 bit"]
    rejected = {Path(r["input"]).name: (r["status"], r["error"]) for r in m["rejected"]}
    assert rejected == {"nan.tif": (415, "bad_values"), "targa.tga": (400, "not_an_image")}
    # the 16-bit ramp is colorized exactly as the same ramp scaled to 8 bit by hand (v / 257) and sent as a PNG
    ramp = np.round(np.tile(np.linspace(0, 65535, 64), (16, 1)) / 257).astype(np.uint8)
    (tmp_path / "by_hand.png").write_bytes(encode(ramp))
    colorize_files([tmp_path / "by_hand.png"], tmp_path / "ref", weights=tiny_weights, size=32)
    got = np.asarray(Image.open(tmp_path / "out" / "gray16.png"))
    assert np.array_equal(got, np.asarray(Image.open(tmp_path / "ref" / "by_hand.png")))
    assert np.abs(rgb2lab(got)[..., 1:]).mean() > 5  # colorized, not passed through
