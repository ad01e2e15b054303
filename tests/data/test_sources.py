"""Source listing: ids, labels and splits of the layouts prepare must read (real archives where available)."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile

import fsspec
import pytest

from chromaflow.data.sources import infer_split_label, list_source


@pytest.mark.parametrize(
    "rel, split, label",
    [
        ("tiny-imagenet-200/train/n01443537/images/n01443537_0.JPEG", "train", "n01443537"),
        ("tiny-imagenet-200/train/n01443537/n01443537_0.JPEG", "train", "n01443537"),
        ("cifar10/test/airplane/0000.jpg", "val", "airplane"),
        ("valid/cat/x.png", "val", "cat"),
        ("n01440764_tench.jpg", None, "n01440764"),
        ("kodim01.jpg", None, None),
        ("dogs/a.jpg", None, "dogs"),
        ("train/x.jpg", "train", None),
    ],
)
def test_infer_split_label(rel, split, label):
    assert infer_split_label(rel) == (split, label)


def _tiny_layout() -> dict[str, bytes]:
    return {
        "tiny/wnids.txt": b"n01\nn02\n",
        "tiny/train/n01/images/n01_0.JPEG": b"a",
        "tiny/train/n02/images/n02_0.JPEG": b"b",
        "tiny/val/images/val_0.JPEG": b"c",
        "tiny/val/images/val_1.JPEG": b"d",
        "tiny/val/val_annotations.txt": b"val_0.JPEG\tn02\t0\t0\t10\t10\nval_1.JPEG\tn01\t1\t1\t5\t5\n",
    }


def _check_tiny(listing):
    got = {e.id: (e.split, e.label) for e in listing.entries}
    assert got == {
        "tiny/train/n01/images/n01_0.JPEG": ("train", "n01"),
        "tiny/train/n02/images/n02_0.JPEG": ("train", "n02"),
        "tiny/val/images/val_0.JPEG": ("val", "n02"),  # from val_annotations.txt, not the folder
        "tiny/val/images/val_1.JPEG": ("val", "n01"),
    }
    assert sorted(listing.metadata) == ["tiny/val/val_annotations.txt", "tiny/wnids.txt"]


def test_zip_archive_bare_path_and_chained_url(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in _tiny_layout().items():
            zf.writestr(name, data)
    _check_tiny(list_source(str(path)))
    sub = list_source(f"zip://tiny/train::{path}")
    assert sorted(e.id for e in sub.entries) == ["n01/images/n01_0.JPEG", "n02/images/n02_0.JPEG"]
    assert {e.label for e in sub.entries} == {"n01", "n02"} and {e.split for e in sub.entries} == {None}


def test_tar_archive(tmp_path):
    path = tmp_path / "x.tar"
    with tarfile.open(path, "w") as tf:
        for name, data in _tiny_layout().items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    _check_tiny(list_source(f"tar://::{path}"))


def test_memory_fs_and_fingerprint_changes_with_content():
    fs = fsspec.filesystem("memory")
    fs.pipe("/cf_src/a/1.jpg", b"12")
    fs.pipe("/cf_src/b/2.jpg", b"34")
    one = list_source("memory://cf_src")
    assert [(e.id, e.label) for e in one.entries] == [("a/1.jpg", "a"), ("b/2.jpg", "b")]
    fp = one.fingerprint({"p": 1})
    assert list_source("memory://cf_src").fingerprint({"p": 1}) == fp
    assert one.fingerprint({"p": 2}) != fp
    fs.pipe("/cf_src/c/3.jpg", b"5")
    assert list_source("memory://cf_src").fingerprint({"p": 1}) != fp
    fs.rm("/cf_src", recursive=True)


def test_fingerprint_names_the_content_not_the_spelling_of_its_location(tmp_path, monkeypatch):
    """The same files reached by a relative path, an absolute one, a copy elsewhere or inside a zip at another
    path fingerprint alike (the card's data hash reproduces from its command); one changed byte does not."""
    src = tmp_path / "shared" / "photos"
    (src / "cats").mkdir(parents=True)
    (src / "cats" / "1.jpg").write_bytes(b"12")
    (src / "2.jpg").write_bytes(b"34")
    monkeypatch.chdir(tmp_path / "shared")
    fp = list_source(str(src)).fingerprint({"p": 1})
    assert list_source("photos").fingerprint({"p": 1}) == fp
    assert list_source("./photos/").fingerprint({"p": 1}) == fp
    shutil.copytree(src, tmp_path / "elsewhere")
    assert list_source(str(tmp_path / "elsewhere")).fingerprint({"p": 1}) == fp
    for where in (tmp_path / "a.zip", tmp_path / "shared" / "b.zip"):
        with zipfile.ZipFile(where, "w") as zf:
            for f in sorted(src.rglob("*.jpg")):
                zf.write(f, f.relative_to(src).as_posix())
    zipped = list_source(f"zip://::{tmp_path / 'a.zip'}").fingerprint({"p": 1})
    assert list_source("zip://::b.zip").fingerprint({"p": 1}) == zipped
    (tmp_path / "elsewhere" / "2.jpg").write_bytes(b"35")
    assert list_source(str(tmp_path / "elsewhere")).fingerprint({"p": 1}) != fp


def test_file_list_with_missing_entry(tmp_path):
    (tmp_path / "imgs" / "cats").mkdir(parents=True)
    (tmp_path / "imgs" / "cats" / "a.jpg").write_bytes(b"x")
    (tmp_path / "imgs" / "n01440764_tench.jpg").write_bytes(b"y")
    lst = tmp_path / "list.txt"
    lst.write_text(
        "# images\nimgs/cats/a.jpg\n\n" + str(tmp_path / "imgs/n01440764_tench.jpg") + "\nimgs/missing.jpg\n"
    )
    listing = list_source(str(lst))
    assert [(e.id, e.label) for e in listing.entries] == [("cats/a.jpg", "cats"), ("n01440764_tench.jpg", "n01440764")]
    assert len(listing.unreadable) == 1 and listing.unreadable[0]["path"] == "imgs/missing.jpg"
    assert "unreadable" in listing.unreadable[0]["reason"]


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_source(str(tmp_path / "nope"))


def test_real_tiny_imagenet_val_labels(shared_datasets):
    listing = list_source(f"zip://tiny-imagenet-200/val::{shared_datasets / 'tiny-imagenet-200-subset.zip'}")
    assert len(listing.entries) == 10_000
    ann = {}
    for line in (
        zipfile.ZipFile(shared_datasets / "tiny-imagenet-200-subset.zip")
        .read("tiny-imagenet-200/val/val_annotations.txt")
        .decode()
        .splitlines()
    ):
        f, w = line.split("\t")[:2]
        ann[f] = w
    assert all(e.label == ann[e.id.rsplit("/", 1)[-1]] for e in listing.entries)
    assert {e.split for e in listing.entries} == {None}  # the root is the split folder itself


def test_real_cifar10_layout(shared_datasets):
    listing = list_source(str(shared_datasets / "cifar10-subset.zip"))
    splits = {}
    for e in listing.entries:
        splits[e.split] = splits.get(e.split, 0) + 1
        assert e.label == e.id.split("/")[2]
    assert splits == {"train": 20_000, "val": 5_000}
