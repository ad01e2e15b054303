"""prepare on hostile folders: non-UTF-8 and newline names, links in and out of the root, fifos, odd modes.

Every file found is either ingested or listed as rejected with its reason; nothing outside the root is opened.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from tests.data.conftest import colorful, encode, odd_modes

from chromaflow.data.images import accept_image, open_image, process_image
from chromaflow.data.prepare import prepare
from chromaflow.data.sources import list_source
from chromaflow.logs import printable

NON_UTF8 = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name: its byte 0xE9 is not UTF-8


def _ids(out: Path) -> dict[str, bytes]:
    rows = {}
    for shard in sorted((out / "shards").glob("*.parquet")):
        t = pq.read_table(shard).to_pydict()
        rows.update(zip(t["id"], t["image"], strict=True))
    return rows


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_a_non_utf8_name_is_ingested_with_its_bytes_escaped_in_the_id(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.png").write_bytes(encode(colorful(seed=1), "PNG"))
    (src / NON_UTF8).write_bytes(encode(colorful(seed=2), "PNG"))
    m = prepare(str(src), tmp_path / "out", workers=1, val_fraction=0.0)
    assert m["counts"]["images"] == 2 and m["rejected"] == []
    rows = _ids(tmp_path / "out")
    assert sorted(rows) == ["caf\\xe9.png", "good.png"]  # the odd byte as the 4 characters \xe9
    assert np.array_equal(_pixels(rows["caf\\xe9.png"]), np.asarray(colorful(seed=2)))  # that file, not another
    json.loads((tmp_path / "out" / "manifest.json").read_bytes().decode("utf-8"))  # valid UTF-8 JSON
    # the fingerprint hashes the name's own bytes (an independent sha1 over the documented lines)
    listing = list_source(str(src))
    h = hashlib.sha1(json.dumps({"params": {}}, sort_keys=True).encode())
    for raw in (b"caf\xe9.png", b"good.png"):
        data = (src / os.fsdecode(raw)).read_bytes()
        h.update(b"\n" + raw + f"\t{len(data)}\tmd5={hashlib.md5(data).hexdigest()}".encode())
    assert listing.fingerprint({}) == h.hexdigest()
    assert prepare(str(src), tmp_path / "out", workers=1, val_fraction=0.0)["fingerprint"] == m["fingerprint"]


def test_an_escaped_name_that_spells_another_files_name_is_rejected_not_merged(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / NON_UTF8).write_bytes(encode(colorful(seed=2), "PNG"))
    (src / "caf\\xe9.png").write_bytes(encode(colorful(seed=3), "PNG"))  # literally backslash-x-e-9
    m = prepare(str(src), tmp_path / "out", workers=1)
    assert m["counts"]["images"] == 1
    assert [(r["path"], "another file's name" in r["reason"]) for r in m["rejected"]] == [("caf\\xe9.png", True)]


def test_utf8_names_keep_the_fingerprint_of_before(tmp_path):
    """The fingerprint of ordinary names is what it was (dvc.lock and model cards' data_hash depend on it):
    an independent sha1 over the documented lines."""
    src = tmp_path / "src"
    (src / "train" / "chat").mkdir(parents=True)
    files = {"train/chat/café.png": encode(colorful(seed=4), "PNG"), "b.jpg": encode(colorful(seed=5), "JPEG")}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    params = {"p": 1}
    h = hashlib.sha1(json.dumps({"params": params}, sort_keys=True).encode())
    for rel in sorted(files):
        h.update(f"\n{rel}\t{len(files[rel])}\tmd5={hashlib.md5(files[rel]).hexdigest()}".encode())
    assert list_source(str(src)).fingerprint(params) == h.hexdigest()


@pytest.fixture
def linked(tmp_path) -> Path:
    """A source folder with links in and out of it, a fifo, and two real images."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.png").write_bytes(encode(colorful(seed=9), "PNG"))
    (outside / "secret.png").write_bytes(encode(colorful(seed=8), "PNG"))
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.png").write_bytes(encode(colorful(seed=1), "PNG"))
    (src / "sub" / "s.png").write_bytes(encode(colorful(seed=2), "PNG"))
    (src / "passwd").symlink_to("/etc/passwd")
    (src / "out.png").symlink_to(outside / "o.png")
    (src / "outdir").symlink_to(outside)
    (src / "in.png").symlink_to("a.png")
    (src / "zsub").symlink_to("sub")
    (src / "sub" / "loop").symlink_to("..")
    (src / "broken.png").symlink_to("nowhere.png")
    os.mkfifo(src / "fifo.png")
    return src


OUT_OF_ROOT = {"passwd", "out.png", "outdir"}


@pytest.mark.timeout(60)  # a fifo opened for reading without a writer would block forever
def test_links_and_special_files_are_rejected_with_a_reason_and_never_opened(linked, tmp_path, opened):
    m = prepare(str(linked), tmp_path / "out", workers=1)
    assert sorted(_ids(tmp_path / "out")) == ["a.png", "sub/s.png"]
    reasons = {r["path"]: r["reason"] for r in m["rejected"]}
    assert set(reasons) == {"passwd", "out.png", "outdir", "in.png", "zsub", "sub/loop", "broken.png", "fifo.png"}
    assert all("symbolic link" in reasons[k] for k in reasons if k != "fifo.png")
    assert reasons["fifo.png"] == "a fifo, not a regular file"
    assert m["counts"]["images"] + m["counts"]["rejected"] == 10  # every entry of the folder accounted for
    assert "follow_symlinks" not in m["params"]
    root = os.path.realpath(linked)
    assert [p for p in opened if p.startswith("/etc") or "outside" in p] == []
    assert os.path.join(root, "fifo.png") not in opened


@pytest.mark.timeout(60)
def test_follow_symlinks_follows_links_that_stay_inside_the_root_only(linked, tmp_path, opened):
    m = prepare(str(linked), tmp_path / "out", workers=1, follow_symlinks=True)
    rows = _ids(tmp_path / "out")
    assert sorted(rows) == ["a.png", "in.png", "sub/s.png", "zsub/s.png"]
    assert np.array_equal(_pixels(rows["in.png"]), _pixels(rows["a.png"]))
    reasons = {r["path"]: r["reason"] for r in m["rejected"]}
    assert {k for k, v in reasons.items() if "outside the source root" in v} == OUT_OF_ROOT
    assert "loop" in reasons["sub/loop"] and "loop" in reasons["zsub/loop"]
    assert set(reasons) == OUT_OF_ROOT | {"sub/loop", "zsub/loop", "broken.png", "fifo.png"}
    assert m["params"]["follow_symlinks"] is True  # another listing, another fingerprint
    assert [p for p in opened if p.startswith("/etc") or "outside" in p] == []


@pytest.mark.timeout(60)
def test_a_file_list_names_its_files_a_link_it_names_is_read_a_fifo_is_not(linked, tmp_path):
    """A ``.txt`` list names each file, like a command line: a link it names is what was asked for."""
    lst = tmp_path / "list.txt"
    lst.write_text("src/out.png\nsrc/a.png\nsrc/fifo.png\n")
    m = prepare(str(lst), tmp_path / "out", workers=1, val_fraction=0.0)
    rows = _ids(tmp_path / "out")
    assert sorted(rows) == ["a.png", "out.png"]
    assert np.array_equal(_pixels(rows["out.png"]), np.asarray(colorful(seed=9)))
    assert [(r["path"], "not a regular file" in r["reason"]) for r in m["rejected"]] == [("src/fifo.png", True)]


def test_names_with_newlines_are_escaped_in_the_log(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.png").write_bytes(encode(colorful(), "PNG"))
    (src / "x\nINFO forged line.jpg").write_bytes(b"not an image")
    with caplog.at_level(logging.INFO, logger="chromaflow"):
        m = prepare(str(src), tmp_path / "out", workers=1)
    assert m["rejected"][0]["path"] == "x\nINFO forged line.jpg"  # the manifest keeps the true name (JSON escapes it)
    lines = [r.getMessage() for r in caplog.records]
    assert not any("\n" in line for line in lines)
    assert any("x\\nINFO forged line.jpg" in line for line in lines)


def test_prepare_cli_exit_codes(tmp_path, capsys):
    """0: the step ran (rejected files are listed in the manifest, as dvc repro needs); 2: it could not."""
    from chromaflow.cli import main

    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.png").write_bytes(encode(colorful(), "PNG"))
    (src / "link.png").symlink_to("/etc/passwd")
    assert main(["prepare", "--source", str(src), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    assert "1 images (1 train, 0 val, 0 gray), 1 rejected" in capsys.readouterr().out
    assert main(["prepare", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")]) == 2
    (src / "ok.png").unlink()
    assert main(["prepare", "--source", str(src), "--out", str(tmp_path / "o3"), "--workers", "1"]) == 2


# --- the shared accept/convert policy, on files made here with PIL ------------------------------------------


def test_the_policy_on_odd_modes_against_independent_values():
    files = odd_modes()
    ramp = np.round(np.linspace(0, 65535, 64) / 257).astype(np.uint8)  # 16 bit -> 8 bit, by hand

    img, notes = accept_image(open_image(files["gray16.png"]))
    assert img.mode == "L" and np.array_equal(np.asarray(img)[0], ramp) and notes == ["I;16 scaled to 8 bit"]
    img, notes = accept_image(open_image(files["float.tif"]))
    assert img.mode == "L" and np.array_equal(np.asarray(img)[0], np.round(np.linspace(0, 255, 64)).astype(np.uint8))
    img, notes = accept_image(open_image(files["cmyk.jpg"]))
    assert img.mode == "RGB" and notes == ["CMYK converted to RGB"]
    assert np.abs(np.asarray(img).astype(int) - (0, 255, 255)).max() <= 3  # cyan, up to JPEG rounding
    img, notes = accept_image(open_image(files["anim.gif"]))
    assert notes[0] == "frame 0 of 2 kept"
    assert np.abs(np.asarray(img.convert("RGB")).astype(int) - (230, 20, 20)).max() <= 8  # the red first frame
    img, notes = accept_image(open_image(files["rgb.bmp"]))
    assert img.mode == "RGB" and notes == [] and np.array_equal(np.asarray(img), np.asarray(colorful(32, 16)))


def test_policy_rejections_have_reasons():
    files = odd_modes()
    res = process_image(files["nan.tif"], 64)
    assert not res["ok"] and "NaN or infinite" in res["reason"]
    res = process_image(files["targa.tga"], 64)
    assert not res["ok"] and res["reason"].startswith("not an image")
    with pytest.raises(Exception, match="cannot identify"):
        open_image(files["targa.tga"])  # the TGA decoder is never tried on untrusted bytes


def test_prepare_ingests_odd_modes_by_the_policy(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, data in odd_modes().items():
        (src / name).write_bytes(data)
    m = prepare(str(src), tmp_path / "out", workers=1, val_fraction=0.0)
    assert sorted(_ids(tmp_path / "out")) == ["anim.gif", "cmyk.jpg", "float.tif", "gray16.png", "rgb.bmp"]
    assert {r["path"] for r in m["rejected"]} == {"nan.tif", "targa.tga"}
    notes = {c["id"]: c["notes"] for c in m["converted"]}
    assert notes["anim.gif"][0] == "frame 0 of 2 kept" and notes["gray16.png"] == ["I;16 scaled to 8 bit"]


def test_printable_escapes_what_would_break_a_line():
    assert printable("a\nb\r\x1b[2Jc\u2028d") == "a\\nb\\r\\x1b[2Jc\\u2028d"
    assert printable(b"caf\xe9.jpg") == "caf\\udce9.jpg"
    assert printable("café/ünï.png") == "café/ünï.png"
