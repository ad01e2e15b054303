"""prepare/stats in parts (``--part I/N``) merged: the single-machine run's rows, manifest and stats, exactly;
over HTTP each part fetches only its share."""

from __future__ import annotations

import collections
import functools
import hashlib
import http.server
import json
import os
import shutil
import threading

import pyarrow.parquet as pq
import pytest

from chromaflow.cli import main as cli_main
from chromaflow.data.dataset import shard_files
from chromaflow.data.parts import parse_part, part_range
from chromaflow.data.prepare import prepare
from chromaflow.data.prepare_merge import prepare_merge
from chromaflow.data.stats import OUTPUTS, stats
from chromaflow.data.stats_merge import stats_merge

N = 3
PARAMS = {"max_side": 64, "val_fraction": 0.4, "workers": 1}


def split_rows(root, split: str) -> list[dict]:
    return [r for f in shard_files(root, split) for r in pq.read_table(f).to_pylist()]


def digests(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_same_dataset(single, merged) -> None:
    """ "Equal" for a merged dataset: the same rows in the same order per split, and the same manifest
    (fingerprint, counts, rejects, gray and converted lists, ...) except the shard file names."""
    for split in ("train", "val"):
        assert split_rows(merged, split) == split_rows(single, split), split
    a = json.loads((single / "manifest.json").read_text())
    b = json.loads((merged / "manifest.json").read_text())
    assert len(a.pop("shards")) >= 1 and len(b.pop("shards")) >= 1
    assert b == a


@pytest.fixture
def hostile_dir(odd_dir):
    """odd_dir plus entries every part's listing rejects (a link, a fifo): shared rejects; and, sorted last,
    a bad file and a name whose escaped id is another file's name (a listing reject of the last part only)."""
    os.symlink("good/color.jpg", odd_dir / "link.jpg")
    os.mkfifo(odd_dir / "good" / "pipe.jpg")
    (odd_dir / "zz").mkdir()
    (odd_dir / "zz" / "empty.png").write_bytes(b"")
    png = (odd_dir / "good" / "color.png").read_bytes()
    (odd_dir / "zz" / "caf\\xe9.png").write_bytes(png)  # a literal backslash: the id of the next one too
    with open(os.fsencode(odd_dir / "zz") + b"/caf\xe9.png", "wb") as f:
        f.write(png)
    return odd_dir


def test_part_ranges_tile_the_listing():
    for n_items in (0, 1, 2, 7, 31):
        for n in (1, 2, 3, 8):
            ranges = [part_range(n_items, i, n) for i in range(n)]
            assert [x for r in ranges for x in r] == list(range(n_items))
    assert parse_part("3/3") == (2, 3)
    for bad in ("0/3", "4/3", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match="part must be"):
            parse_part(bad)


def test_three_parts_merge_to_the_single_run(sample_dir, tmp_path, capsys):
    single = tmp_path / "single"
    prepare(str(sample_dir), single, **PARAMS)
    parts = [tmp_path / f"p{i}" for i in range(1, N + 1)]
    for i, p in enumerate(parts, 1):  # through the CLI, as a pipeline task runs it
        argv = ["prepare", "--source", str(sample_dir), "--out", str(p), "--max-side", "64", "--val-fraction", "0.4"]
        assert cli_main([*argv, "--workers", "1", "--part", f"{i}/{N}"]) == 0
    sizes = [len(split_rows(p, "train")) + len(split_rows(p, "val")) for p in parts]
    assert all(s > 0 for s in sizes) and sum(sizes) == 30  # each part ingested a real share, none twice
    merged = tmp_path / "merged"
    assert cli_main(["prepare-merge", "--parts", *map(str, parts[::-1]), "--out", str(merged)]) == 0
    assert_same_dataset(single, merged)
    assert "30 images" in capsys.readouterr().out

    # stats: parts of the rows of the merged dataset, added, equal the single run byte for byte
    whole = tmp_path / "stats"
    stats(merged, whole, workers=1)
    sparts = [tmp_path / f"s{i}" for i in range(N)]
    images = [stats(merged, sp, workers=1, part=(i, N))["images"] for i, sp in enumerate(sparts)]
    assert all(n > 0 for n in images)
    stats_merge(sparts[::-1], tmp_path / "stats_merged")
    assert digests(tmp_path / "stats_merged") == digests(whole)
    assert set(digests(whole)) >= set(OUTPUTS) | {"stats.json", "prior.png"}

    # and the stats of the merged dataset equal those of the single run's (only the --data spelling differs)
    stats(single, tmp_path / "stats_single", workers=1)
    a, b = digests(whole), digests(tmp_path / "stats_single")
    assert {k: v for k, v in a.items() if k != "stats.json"} == {k: v for k, v in b.items() if k != "stats.json"}


def test_bad_records_are_listed_per_part_and_merged_in_order(hostile_dir, tmp_path):
    single = tmp_path / "single"
    m1 = prepare(str(hostile_dir), single, **PARAMS)
    parts = [tmp_path / f"p{i}" for i in range(N)]
    ms = [prepare(str(hostile_dir), p, part=(i, N), **PARAMS) for i, p in enumerate(parts)]
    shared = {"link.jpg", "good/pipe.jpg"}
    assert shared <= {r["path"] for r in m1["rejected"]}
    assert [r["path"] for r in m1["rejected"]][2] == "zz/caf\\xe9.png"  # the listing's rejects come first
    own = [{r["path"] for r in m["rejected"]} - shared for m in ms]
    for m in ms:  # the listing's rejects in every part, each decode reject in exactly one part
        assert shared <= {r["path"] for r in m["rejected"]}
    assert sum(len(o) for o in own) == len(set().union(*own)) == len(m1["rejected"]) - len(shared)
    assert own[0] and own[-1]  # the bad files really are spread over parts
    merged = prepare_merge(parts, tmp_path / "merged")
    assert merged["rejected"] == m1["rejected"]
    assert_same_dataset(single, tmp_path / "merged")


def test_a_retried_part_gives_the_same_bytes(sample_dir, tmp_path):
    first = tmp_path / "try1"
    prepare(str(sample_dir), first, part=(1, N), **PARAMS)
    again = tmp_path / "try2"
    prepare(str(sample_dir), again, part=(1, N), **PARAMS)
    assert digests(again) == digests(first)
    shutil.rmtree(again / "shards")  # a task killed half-way and retried in the same folder
    prepare(str(sample_dir), again, part=(1, N), **PARAMS)
    assert digests(again) == digests(first)
    s1 = stats(first, tmp_path / "s1", workers=1, part=(0, 2))
    s2 = stats(first, tmp_path / "s2", workers=1, part=(0, 2))
    assert s1 == s2 and digests(tmp_path / "s1") == digests(tmp_path / "s2")


def test_merge_refuses_missing_repeated_or_foreign_parts(sample_dir, tmp_path):
    parts = [tmp_path / f"p{i}" for i in range(N)]
    for i, p in enumerate(parts):
        prepare(str(sample_dir), p, part=(i, N), **PARAMS)
    with pytest.raises(ValueError, match=r"missing \[2\]"):
        prepare_merge([parts[0], parts[2]], tmp_path / "m")
    with pytest.raises(ValueError, match="need parts"):
        prepare_merge([parts[0], parts[1], parts[1], parts[2]], tmp_path / "m")
    other = tmp_path / "other"
    prepare(str(sample_dir), other, part=(1, N), **{**PARAMS, "max_side": 32})
    with pytest.raises(ValueError, match="another 'params'"):
        prepare_merge([parts[0], other, parts[2]], tmp_path / "m")
    whole = tmp_path / "whole"
    prepare(str(sample_dir), whole, **PARAMS)
    with pytest.raises(ValueError, match="not a part"):
        prepare_merge([whole], tmp_path / "m")
    assert not (tmp_path / "m" / "manifest.json").exists()
    s = [tmp_path / f"s{i}" for i in range(2)]
    stats(whole, s[0], workers=1, part=(0, 2))
    stats(whole, s[1], workers=1, part=(1, 2), l_bands=5)
    with pytest.raises(ValueError, match="another"):
        stats_merge(s, tmp_path / "sm")
    with pytest.raises(ValueError, match=r"missing \[2\]"):
        stats_merge(s[:1], tmp_path / "sm")


@pytest.fixture
def http_listing(sample_dir, tmp_path):
    """A real HTTP server on 127.0.0.1 (a thread) serving ``list.txt`` (one relative path a line) and the
    files it names; yields (list URL, {path: GET body bytes served}, {path: size})."""
    root = tmp_path / "www"
    (root / "imgs").mkdir(parents=True)
    for p in sorted(sample_dir.glob("kodim0*.jpg")):
        shutil.copy(p, root / "imgs" / p.name)
    (root / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    names = sorted(p.name for p in (root / "imgs").iterdir())
    (root / "list.txt").write_text("".join(f"imgs/{n}\n" for n in names))
    served: collections.Counter = collections.Counter()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def copyfile(self, source, outputfile):  # the body of a GET (HEAD sends none)
            data = source.read()
            served[self.path] += len(data)
            outputfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sizes = {f"/imgs/{n}": (root / "imgs" / n).stat().st_size for n in names}
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/list.txt", served, sizes
    finally:
        server.shutdown()
        thread.join()


def test_each_http_part_fetches_only_its_share(http_listing, tmp_path):
    url, served, sizes = http_listing
    fetched = []
    for i in range(N):
        served.clear()
        prepare(url, tmp_path / f"p{i}", part=(i, N), **PARAMS)
        files = {p: n for p, n in served.items() if p.startswith("/imgs/")}
        assert files and all(n == sizes[p] for p, n in files.items())  # whole files, its own only
        fetched.append(set(files))
    assert sum(len(f) for f in fetched) == len(set().union(*fetched)) == len(sizes)  # each file by one part
    assert max(sum(sizes[p] for p in f) for f in fetched) < 0.6 * sum(sizes.values())
    served.clear()
    single = prepare(url, tmp_path / "single", **PARAMS)
    assert set(served) - {"/list.txt"} == set(sizes)
    merged = prepare_merge([tmp_path / f"p{i}" for i in range(N)], tmp_path / "merged")
    assert [r["path"] for r in merged["rejected"]] == ["broken.jpg"]
    assert_same_dataset(tmp_path / "single", tmp_path / "merged")
    assert merged["fingerprint"] == single["fingerprint"]


def test_a_local_part_opens_only_its_share(sample_dir, tmp_path, monkeypatch):
    import chromaflow.data.prepare as prepare_mod
    import chromaflow.data.sources as sources_mod

    opened = []
    for mod, name in ((sources_mod, "open_regular"), (prepare_mod, "read_regular"), (sources_mod, "read_regular")):
        real = getattr(mod, name)
        monkeypatch.setattr(
            mod, name, lambda path, *a, _real=real, **k: opened.append(os.fspath(path)) or _real(path, *a, **k)
        )
    m = prepare(str(sample_dir), tmp_path / "p", part=(1, N), **PARAMS)
    ids = {r["id"] for r in split_rows(tmp_path / "p", "train") + split_rows(tmp_path / "p", "val")}
    ids |= {r["path"] for r in m["rejected"]}
    assert 5 <= len(ids) <= 15
    assert {os.path.relpath(p, sample_dir) for p in opened} == ids  # its md5s and its reads, nothing else


def test_more_parts_than_files_leaves_some_empty_and_still_merges(odd_dir, tmp_path):
    n = 25  # odd_dir has fewer candidates: some parts have nothing to ingest
    single = tmp_path / "single"
    prepare(str(odd_dir), single, **PARAMS)
    parts = [tmp_path / f"p{i}" for i in range(n)]
    ms = [prepare(str(odd_dir), p, part=(i, n), **PARAMS) for i, p in enumerate(parts)]
    assert any(not m["shards"] and not m["rejected"] for m in ms)
    prepare_merge(parts, tmp_path / "merged")
    assert_same_dataset(single, tmp_path / "merged")
    whole = tmp_path / "stats"
    stats(single, whole, workers=1)
    sparts = [tmp_path / f"s{i}" for i in range(n)]  # more parts than train rows: some count nothing
    assert 0 in [stats(single, sp, workers=1, part=(i, n))["images"] for i, sp in enumerate(sparts)]
    stats_merge(sparts, tmp_path / "stats_merged")
    assert digests(tmp_path / "stats_merged") == digests(whole)
