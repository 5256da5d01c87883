"""File helpers every layer shares: the sha256 of a file, and writing a file whole or not at all.

An atomic write goes into a temporary name beside the file, then one rename (``os.replace``).
A reader (or a resumed run) never sees half a file, and an error leaves the old file as it was.
The temporary name is ``.NAME.tmp`` (hidden, so dataset globs skip it; :mod:`fsqtok.shards` cleans
leftovers by that pattern), or ``.NAME.PID.tmp`` for processes that may fill the same file at once.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def temporary_path(path: str | Path, unique: bool = False) -> Path:
    """The temporary name beside ``path``: ``.NAME.tmp``, or ``.NAME.PID.tmp`` when ``unique``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp" if unique else f".{path.name}.tmp")


@contextmanager
def atomic_path(path: str | Path, *, unique: bool = False, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; after the block it replaces ``path`` in one rename.

    ``fsync`` flushes the file to disk before the rename; ``unique`` gives the temporary name the process
    id. On an error the temporary file is removed and ``path`` keeps what it held.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path, unique)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` through :func:`atomic_path`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()
