"""fsqtok.files: a file is written whole or not at all, under the temporary names the shards cleaner expects."""

import hashlib

import pytest

from fsqtok import files
from fsqtok.files import atomic_path, atomic_write_bytes, atomic_write_text, sha256_file, temporary_path


def test_a_write_replaces_the_file_in_one_rename(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_text(path, "old")
    with atomic_path(path) as tmp:
        assert tmp == tmp_path / "sub" / ".a.json.tmp"
        tmp.write_text("new")
        assert path.read_text() == "old"  # nothing visible until the block ends
    assert path.read_text() == "new" and sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_an_error_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "a.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    def no_rename(source, target):
        raise OSError("no space left")

    monkeypatch.setattr(files.os, "replace", no_rename)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new", fsync=True)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_unique_names_carry_the_process_id_and_sha256_reads_the_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(files.os, "getpid", lambda: 4242)
    assert temporary_path(tmp_path / "x.pt", unique=True).name == ".x.pt.4242.tmp"
    atomic_write_bytes(tmp_path / "x.pt", b"abc" * 1000)
    assert sha256_file(tmp_path / "x.pt", chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
