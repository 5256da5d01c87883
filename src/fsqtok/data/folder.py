"""Folder sources: a tree of media files of one modality, with labels from sub-folders or a sidecar.

Keys are the files' paths relative to the root, in POSIX form, sorted; hidden files and folders
(a leading ``.``) are skipped. A file name that is not valid UTF-8 keeps its place in the key list
under an escaped key (``caf\\xe9.png``) and fails to load with a one-line error naming it, so one
such name never aborts a run.

Labels: ``labels="folder"`` takes the first path component (``cat/001.png`` -> ``cat``); a CSV or
JSONL sidecar gives ``key -> label`` with a key column ``key``, ``file_name`` (as ImageFolder's
``metadata.csv``) or ``path`` and a ``label`` column.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from torch import Tensor

from ..media import MediaError
from .preprocess import DataError, Preprocess, extensions

SIDECAR_KEY_COLUMNS = ("key", "file_name", "path")


def safe_key(rel: str) -> tuple[str, bool]:
    """``(key, ok)``: ``rel`` itself when it is valid UTF-8, else an escaped form and ``False``."""
    try:
        rel.encode("utf-8")
        return rel, True
    except UnicodeEncodeError:  # os.walk keeps undecodable bytes as lone surrogates
        raw = rel.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace"), False


def keys_hash(keys: list[str]) -> str:
    """sha256 of the key list (one key per line): a source's identity without reading its files."""
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()


def list_files(root: Path, suffixes: tuple[str, ...], exclude: str | Path | None = None) -> list[str]:
    """Sorted relative POSIX paths of the files under ``root`` whose extension is in ``suffixes``.

    Hidden entries are skipped, and so is the folder ``exclude`` (e.g. an output inside the data).
    """
    skip = Path(exclude).resolve() if exclude else None
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and (skip is None or d / n != skip))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in suffixes:
                found.append((d / name).relative_to(root).as_posix())
    return sorted(found)


def list_media(root: Path, modality: str, exclude: str | Path | None = None) -> list[str]:
    """:func:`list_files` for the extensions :mod:`fsqtok.media` reads for ``modality``."""
    return list_files(root, extensions(modality), exclude)


def read_label_sidecar(path: str | Path) -> dict[str, str | None]:
    """``key -> label`` from a CSV or JSONL file (see the module docstring)."""
    return {key: (None if rec["label"] in (None, "") else str(rec["label"]))
            for key, rec in read_sidecar(path, ("label",)).items()}


def read_records(path: str | Path, what: str) -> list[dict[str, Any]]:
    """The records of a CSV file (a header row) or a JSONL file (one object a line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path}: no such file")
    if path.suffix.lower() in (".jsonl", ".json"):
        try:
            recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{what} {path}: not JSON lines ({e})") from None
    else:
        try:
            with path.open(newline="") as f:
                recs = list(csv.DictReader(f))
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataError(f"{what} {path}: not a CSV file ({e})") from None
    for n, rec in enumerate(recs, 1):
        if not isinstance(rec, dict):
            raise DataError(f"{what} {path}: record {n} is not an object")
    return recs


def clean_key(value: Any) -> str:
    """A sidecar path as a key: POSIX form, no leading ``./``."""
    return Path(str(value)).as_posix().removeprefix("./")


def read_sidecar(path: str | Path, columns: tuple[str, ...], what: str = "--labels") -> dict[str, dict[str, Any]]:
    """``key -> record`` from a CSV or JSONL file whose records hold a key column and ``columns``."""
    out: dict[str, dict[str, Any]] = {}
    for n, rec in enumerate(read_records(path, what), 1):
        kcol = next((c for c in SIDECAR_KEY_COLUMNS if c in rec), None)
        missing = [c for c in columns if c not in rec]
        if kcol is None or missing:
            raise DataError(f"{what} {path}: record {n} lacks a key column ({'/'.join(SIDECAR_KEY_COLUMNS)}) "
                            f"or {', '.join(repr(c) for c in missing) or 'nothing'}; "
                            f"has {', '.join(map(str, rec)) or 'nothing'}")
        out[clean_key(rec[kcol])] = rec
    return out


class FolderSource:
    """Media files of one modality under ``root``; ``load(i, prep)`` -> ``(x, meta, label)``.

    ``labels``: ``None``, ``"folder"`` or a CSV/JSONL sidecar (module docstring).
    """

    kind = "files"

    def __init__(self, root: str | Path, modality: str, labels: str | None = None,
                 exclude: str | Path | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise DataError(f"--data {root}: no such folder")
        rels = list_media(self.root, modality, exclude)
        if not rels:
            raise DataError(f"--data {root}: no {modality} files ({', '.join(extensions(modality))})")
        safe = [safe_key(r) for r in rels]
        order = sorted(range(len(rels)), key=lambda i: safe[i][0])
        self.keys: list[str] = [safe[i][0] for i in order]
        self._paths = [rels[i] if safe[i][1] else None for i in order]  # None: not valid UTF-8
        self.labels_arg, self.modality = labels, modality
        if labels is None:
            self.labels: dict[str, str | None] = {}
        elif labels == "folder":
            self.labels = {k: (k.split("/")[0] if "/" in k else None) for k in self.keys}
        else:
            self.labels = read_label_sidecar(labels)

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self) -> dict[str, Any]:
        """The source's identity: path, kind, labels and a hash of the sorted key list."""
        return {"type": self.kind, "path": str(self.root), "labels": self.labels_arg,
                "num_keys": len(self.keys), "keys_sha256": keys_hash(self.keys)}

    def path(self, index: int) -> Path:
        """The file of key ``index``; a :class:`MediaError` naming it when its name is not valid UTF-8."""
        rel = self._paths[index]
        if rel is None:
            raise MediaError(f"{self.keys[index]}: file name is not valid UTF-8; rename the file")
        return self.root / rel

    def load(self, index: int, prep: Preprocess) -> tuple[Tensor, dict[str, Any], str | None]:
        x, meta = prep.load(self.path(index))
        return x, meta, self.labels.get(self.keys[index])
