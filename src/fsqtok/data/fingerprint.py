"""What a run's data is, by content: one sha256 that changes when the data does, whatever its path.

:func:`data_fingerprint` hashes files and folders byte for byte (every file's path relative to the
folder, its size and its bytes, in sorted order), and generated data by the parameters that make it
(a mapping, as canonical JSON: e.g. the synthetic UViM pairs' task, split, length, seed, size and the
generators' source hash). Recipes record it in the saved config and the model folder
(``trained_on``) and compare it on resume, so a re-made folder at the same path is seen as other data.

    data_fingerprint("data/pairs")                      # a folder: names + bytes of every file
    data_fingerprint({"synthetic": "depth", "n": 64})   # generated data: its parameters
    data_fingerprint("a/train", {"size": 64})           # several parts, hashed in order
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .preprocess import DataError

CHUNK = 1 << 20


def _hash_file(h: "hashlib._Hash", path: Path) -> None:
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)


def _hash_path(h: "hashlib._Hash", root: Path) -> None:
    if root.is_file():
        h.update(b"file\0%d\0" % root.stat().st_size)
        _hash_file(h, root)
        return
    if not root.is_dir():
        raise DataError(f"{root}: no such file or folder (cannot fingerprint the data)")
    files = sorted((p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: p.relative_to(root).as_posix())
    h.update(b"folder\0%d\0" % len(files))
    for p in files:
        h.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\0".encode())
        _hash_file(h, p)


def data_fingerprint(*parts: str | Path | Mapping[str, Any]) -> str:
    """sha256 (hex) of the data named by ``parts``, hashed in order.

    Args:
        parts: a file (its bytes), a folder (every non-hidden file under it: relative path, size and
            bytes, sorted by path) or a mapping (canonical JSON: generated data named by its parameters).
            The path of a file or folder itself is not hashed: moving the data keeps its fingerprint.

    Raises :class:`~fsqtok.data.DataError` (one line) for a path that does not exist.
    """
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Mapping):
            h.update(b"params\0" + json.dumps(part, sort_keys=True, default=str).encode() + b"\0")
        else:
            _hash_path(h, Path(part))
    return h.hexdigest()
