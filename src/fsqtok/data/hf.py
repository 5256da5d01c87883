"""Hugging Face ``datasets`` sources: local (``save_to_disk``, Parquet, Arrow, imagefolder,
audiofolder), Hub datasets, and streams.

A dataset's keys are row indices zero-padded to :data:`KEY_WIDTH` digits, in the dataset's own
order. Formats (``format`` of a source spec; ``auto`` picks one with :func:`detect_format`):

* ``disk``: a folder written by ``Dataset.save_to_disk`` (memory-mapped, random access);
* ``parquet`` / ``arrow`` / ``imagefolder`` / ``audiofolder``: a local folder or file read with
  ``datasets.load_dataset(FORMAT, ...)``;
* ``hub``: a Hub dataset name (``org/name``, with ``config``), where a network exists.

Media columns are read undecoded and decoded by :func:`fsqtok.data.cells.decode_cell`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from torch import Tensor

from ..media import MediaError
from .cells import decode_cell, one_line
from .folder import keys_hash, list_media
from .preprocess import DataError, Preprocess, extensions

DATA_FORMATS = ("auto", "files", "disk", "parquet", "arrow", "imagefolder", "audiofolder", "hub")
KEY_WIDTH = 10  # row index zero-padded, so string order == row order (up to 10^10 rows)
MEDIA_FEATURES = ("Image", "Audio", "Video")
ARRAY_FEATURES = ("Sequence", "List", "LargeList", "Array2D", "Array3D", "Array4D", "Array5D")


def row_key(index: int) -> str:
    return f"{index:0{KEY_WIDTH}d}"


def pick_column(features: Any, column_names: list[str], column: str | None, where: str) -> str:
    """``column`` checked against the dataset, or the first media column, else the first array column."""
    if column is None and features is not None:
        column = next((c for c, f in features.items() if type(f).__name__ in MEDIA_FEATURES), None)
        column = column or next((c for c, f in features.items() if type(f).__name__ in ARRAY_FEATURES), None)
    if column is None:
        raise DataError(f"--data {where}: no Image/Audio/Video or array column found; "
                        f"name the media column with --column (columns: {', '.join(column_names)})")
    if column not in column_names:
        raise DataError(f"--column {column}: no such column; columns: {', '.join(column_names)}")
    return column


def undecoded(ds: Any, columns: list[str]) -> Any:
    """The dataset with each media column of ``columns`` cast to its undecoded form (``{"bytes", "path"}``)."""
    for column in columns:
        feat = (ds.features or {}).get(column)
        if feat is not None and getattr(feat, "decode", False) and dataclasses.is_dataclass(feat):
            ds = ds.cast_column(column, dataclasses.replace(feat, decode=False))
    return ds


def label_names(features: Any, label_column: str | None) -> list[str] | None:
    feat = (features or {}).get(label_column) if label_column else None
    return list(feat.names) if getattr(feat, "names", None) else None


def label_value(v: Any, names: list[str] | None) -> str | None:
    """A label cell as a string; ClassLabel ids become their names."""
    if v is None:
        return None
    if names is not None and isinstance(v, (int, np.integer)) and 0 <= int(v) < len(names):
        return names[int(v)]
    return str(v)


def load_hf(spec: dict[str, Any], streaming: bool, cache_dir: str | None = None) -> tuple[Any, str | None]:
    """``(dataset, split)`` for a source spec (``format``, ``path``, ``config``, ``split``).

    A dataset with several splits needs ``split``: none is taken silently (not even ``train``)."""
    import datasets

    fmt, path, split = spec["format"], spec["path"], spec.get("split")
    try:
        if fmt == "disk":
            ds = datasets.load_from_disk(path)
        elif fmt == "hub":
            ds = datasets.load_dataset(path, spec.get("config"), streaming=streaming, cache_dir=cache_dir)
        else:
            p = Path(path)
            where = {"data_dir": str(p)} if p.is_dir() else {"data_files": {"train": str(p)}}
            ds = datasets.load_dataset(fmt, **where, streaming=streaming, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001 - datasets raises many types here
        raise DataError(f"--data {path}: cannot load as {fmt} dataset ({one_line(e)})") from None
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split is None and len(ds) == 1:
            split = next(iter(ds))  # the only split; several are never picked silently
        if split not in ds:
            asked = f"no split {split!r}" if split is not None else "no --split given"
            raise DataError(f"--data {path}: {asked}; it has {len(ds)} split(s) ({', '.join(ds)}): "
                            "pick one with --split")
        ds = ds[split]
    elif split not in (None, "train"):
        raise DataError(f"--split {split}: the dataset at {path} has a single split")
    return ds, split


def check_column(name: str | None, names: list[str], flag: str) -> None:
    if name is not None and names and name not in names:
        raise DataError(f"{flag} {name}: no such column; columns: {', '.join(names)}")


class HFSource:
    """A random-access ``datasets.Dataset``; key = row index; ``load(i, prep)`` -> ``(x, meta, label)``.

    ``column``: the media column (default: the first Image/Audio/Video column, else the first
    array column); ``label_column``: a label column (ClassLabel ids become their names).
    """

    kind = "dataset"

    def __init__(self, spec: dict[str, Any], modality: str, column: str | None = None,
                 label_column: str | None = None, cache_dir: str | None = None) -> None:
        ds, split = load_hf(spec, streaming=False, cache_dir=cache_dir)
        self.spec = {**spec, "split": split}
        self.column = pick_column(ds.features, ds.column_names, column, spec["path"])
        check_column(label_column, ds.column_names, "--label-column")
        if ds.num_rows == 0:
            raise DataError(f"--data {spec['path']}: the dataset has no rows")
        self.label_column, self.modality = label_column, modality
        self._fingerprint = getattr(ds, "_fingerprint", None)
        self.keys = [row_key(i) for i in range(ds.num_rows)]
        self._labels: list[str | None] | None = None
        if label_column is not None:
            names = label_names(ds.features, label_column)
            self._labels = [label_value(v, names) for v in ds[label_column]]
        self.ds = undecoded(ds.select_columns([self.column]), [self.column])

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, **self.spec, "column": self.column, "label_column": self.label_column,
                "num_keys": len(self.keys), "keys_sha256": keys_hash(self.keys), "fingerprint": self._fingerprint}

    def load(self, index: int, prep: Preprocess) -> tuple[Tensor, dict[str, Any], str | None]:
        key = self.keys[index]
        try:
            cell = self.ds[index][self.column]
        except Exception as e:  # noqa: BLE001 - a row that does not read is a per-sample failure
            raise MediaError(f"{key}: cannot read column {self.column!r} ({one_line(e)})") from None
        x, meta = decode_cell(cell, prep, key)
        return x, meta, None if self._labels is None else self._labels[index]


class StreamSource:
    """A ``datasets.IterableDataset`` (streaming): rows in stream order, keys = row index.

    The number of rows is known only once the stream ends (``keys`` is ``None``).
    """

    kind = "stream"
    keys = None

    def __init__(self, spec: dict[str, Any], modality: str, column: str | None = None,
                 label_column: str | None = None, cache_dir: str | None = None) -> None:
        ds, split = load_hf(spec, streaming=True, cache_dir=cache_dir)
        self.spec = {**spec, "split": split}
        names = list(ds.features) if ds.features is not None else (ds.column_names or [])
        self.column = pick_column(ds.features, names, column, spec["path"])
        check_column(label_column, names, "--label-column")
        self.label_column, self.modality = label_column, modality
        self._names = label_names(ds.features, label_column)
        cols = [self.column] + ([label_column] if label_column else [])
        self.ds = undecoded(ds.select_columns(cols), [self.column])
        self._files = local_files(spec)

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, **self.spec, "column": self.column, "label_column": self.label_column,
                "files": self._files}

    def rows(self, chunk: int = 64) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(index, row)`` in stream order; ``row`` holds the media and label columns."""
        index = 0
        for batch in self.ds.iter(batch_size=chunk):  # .iter: not split per DataLoader worker by datasets
            cols = list(batch)
            for values in zip(*(batch[c] for c in cols)):
                yield index, dict(zip(cols, values))
                index += 1

    def load_row(self, index: int, row: dict[str, Any], prep: Preprocess) -> tuple[Tensor, dict[str, Any], str | None]:
        x, meta = decode_cell(row[self.column], prep, row_key(index))
        label = label_value(row.get(self.label_column), self._names) if self.label_column else None
        return x, meta, label


def local_files(spec: dict[str, Any]) -> list[list[Any]] | None:
    """``[[relative path, size], ...]`` of a local source's data files: its identity without reading it."""
    p = Path(spec["path"])
    if spec["format"] == "hub" or not p.exists():
        return None
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
    return [[q.relative_to(p).as_posix() if p.is_dir() else q.name, q.stat().st_size] for q in files]


def detect_format(data: str, modality: str, exclude: str | Path | None = None) -> str:
    """``auto``: ``disk`` for a ``save_to_disk`` folder, ``files`` for a folder of ``modality`` media,
    ``parquet``/``arrow`` for a folder or file of those, ``hub`` for an ``org/name`` that is not a local path."""
    p = Path(data)
    if not p.exists():
        if data.count("/") == 1 and not data.startswith((".", "/", "~")):
            return "hub"
        raise DataError(f"--data {data}: no such file or folder")
    if p.is_file():
        for fmt in ("parquet", "arrow"):
            if p.suffix.lower() == f".{fmt}":
                return fmt
        raise DataError(f"--data {data}: a file; give a folder, or a .parquet / .arrow file")
    if any((p / n).is_file() for n in ("dataset_info.json", "dataset_dict.json", "state.json")):
        return "disk"
    if list_media(p, modality, exclude):
        return "files"
    for fmt in ("parquet", "arrow"):
        if next(p.rglob(f"*.{fmt}"), None) is not None:
            return fmt
    raise DataError(f"--data {data}: no {modality} files ({', '.join(extensions(modality))}) and no dataset found")
