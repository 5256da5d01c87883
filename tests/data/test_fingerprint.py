"""fsqtok.data.data_fingerprint: what the data is, by content; the path that names it does not count."""

from __future__ import annotations

import shutil

import pytest

from fsqtok.data import DataError, data_fingerprint, dataset_fingerprint


def tree(root, files: dict[str, bytes]):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_a_folder_is_named_by_its_files_names_and_bytes_not_its_path(tmp_path):
    a = tree(tmp_path / "a", {"x/1.png": b"one", "2.png": b"two", ".DS_Store": b"junk"})
    fp = data_fingerprint(a)
    assert len(fp) == 64 and fp == data_fingerprint(shutil.copytree(a, tmp_path / "moved"))
    (a / ".DS_Store").write_bytes(b"other junk")  # hidden files are not data
    assert data_fingerprint(a) == fp
    (a / "2.png").write_bytes(b"twO")  # same size, other bytes
    assert data_fingerprint(a) != fp
    b = tree(tmp_path / "b", {"x/1.png": b"one", "3.png": b"two"})  # same bytes, another name
    assert data_fingerprint(b) != fp
    c = tree(tmp_path / "c", {"x/1.png": b"onet", "2.png": b"wo"})  # bytes moved across a file boundary
    assert data_fingerprint(c) != data_fingerprint(tree(tmp_path / "d", {"x/1.png": b"one", "2.png": b"two"}))
    assert data_fingerprint(a / "2.png") != data_fingerprint(a)


def test_parameters_and_parts(tmp_path):
    assert data_fingerprint({"n": 1, "seed": 0}) == data_fingerprint({"seed": 0, "n": 1})
    assert data_fingerprint({"n": 1}) != data_fingerprint({"n": 2})
    f = tree(tmp_path, {"f": b"x"}) / "f"
    assert data_fingerprint(f, {"n": 1}) != data_fingerprint({"n": 1}, f)  # parts in order
    with pytest.raises(DataError, match="missing: no such file or folder"):
        data_fingerprint(tmp_path / "missing")


def test_dataset_fingerprint_of_samples_and_folders(tmp_path):
    data = {"source": "samples", "num_train": 4, "num_val": 4, "sample_seed": 0, "size": 32, "frames": 9,
            "seconds": 1.0, "path": None, "val_path": None}
    train = dataset_fingerprint("image", data, "train")
    assert train != dataset_fingerprint("image", data, "val")  # the same count of other photos
    assert train != dataset_fingerprint("image", {**data, "sample_seed": 1}, "train")
    assert train == dataset_fingerprint("image", {**data, "frames": 5}, "train")  # not a parameter of images
    folder = tree(tmp_path / "f", {"a.png": b"a"})
    assert dataset_fingerprint("image", {**data, "source": "folder", "path": str(folder)}, "val") == \
        data_fingerprint(folder)  # no val_path: the val split is the training folder (metrics_kind: train_set)
