"""Paired sources: samples with several aligned fields (``image`` + ``depth``, ``image`` + ``semantic``
+ ``instance``, ...), with one spatial preprocessing applied identically to every field.

Fields
    ``Field(name, kind, channels=3, folder=None)``; ``kind`` is

    * ``"image"``: float32 ``(channels, S, S)`` in [-1, 1] (``channels`` 1 or 3), read by
      :func:`fsqtok.media.read_image` / :func:`~fsqtok.media.decode_image_bytes`; bilinear, antialiased;
    * ``"depth"``: float32 ``(1, S, S)`` metres, NaN where invalid (:func:`fsqtok.media.read_depth`:
      16-bit PNG millimetres or ``.npy`` metres); nearest neighbour, so no value is ever
      interpolated across an invalid pixel;
    * ``"label"``: int64 ``(S, S)`` ids (:func:`fsqtok.data.label_maps.read_label_map`: 8/16-bit or palette PNG ids, integer
      ``.npy``, or an RGB PNG as ``R + 256 G + 256^2 B`` in the COCO panoptic convention);
      nearest neighbour, so ids are never mixed.

    ``fields`` may also be a mapping ``{name: kind}``.

Sources (``keys`` sorted; ``load(i)`` -> ``({name: tensor at full size}, label or None)``)
    * ``PairedFolderSource(root, fields)``: one sub-folder per field (``root/<folder or name>/``)
      holding files with matching relative stems: ``image/a/001.jpg`` pairs with
      ``depth/a/001.png``; the key is the stem ``a/001``. A stem missing from any field, or present
      twice in one (``001.png`` and ``001.jpg``), is a :class:`DataError` naming it.
      ``labels="folder"`` takes the stem's first path component as the label.
    * ``PairedFolderSource(root, fields, sidecar=FILE)``: a CSV/JSONL file with one column per
      field (paths relative to ``root``), an optional ``key`` column (default: the first field's
      path without extension) and an optional ``label`` column.
    * ``PairedHFSource(dataset, fields, columns=None, label_column=None)``: a ``datasets.Dataset``,
      or a spec ``{"format", "path", "split", "config"}`` as :func:`fsqtok.data.hf.load_hf` takes;
      ``columns`` maps a field to its column (default: the field's name). Cells may be Image
      columns, file paths, PIL images or arrays (image ``(C, H, W)`` in [-1, 1], depth metres,
      label ids). Keys are row indices.

Dataset
    ``PairedDataset(source, size=None, crop="center", min_scale=1.0, flip=False, seed=0)``:
    ``ds[i]`` is ``{"key": str, "label": str | None, <field>: tensor, ...}``, or ``None`` when a field
    fails to decode (a warning names the key; :func:`fsqtok.data.collate` counts it). Every field
    must have the same height and width. With ``size``, one crop :class:`~fsqtok.data.Box` is chosen
    per sample (the centred square, or with ``crop="random"`` a square of ``min_scale``..100% of the
    short side at a random place, mirrored half the time when ``flip``; seeded by
    ``(seed, epoch, index)``, see ``set_epoch``) and every field is cropped by that same box and
    resized to ``size x size`` as its kind says (:func:`fsqtok.data.fit_spatial`).
    ``collate`` stacks each field: ``{"key": [...], "label": [...], <field>: (B, ...), "failed": n}``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import media
from ..media import MediaError
from .cells import one_line
from .folder import clean_key, keys_hash, list_files, read_records
from .hf import label_names, label_value, load_hf, row_key, undecoded
from .label_maps import LABEL_EXTENSIONS, label_map_from_array, read_label_map
from .preprocess import Box, DataError, fit_spatial, match_channels

FIELD_KINDS = ("image", "depth", "label")


@dataclass(frozen=True)
class Field:
    """One aligned field of a paired sample (module docstring)."""

    name: str
    kind: str
    channels: int = 3  # image fields: 1 (grey) or 3 (RGB)
    folder: str | None = None  # PairedFolderSource: the sub-folder (default: ``name``)

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise DataError(f"field {self.name!r}: kind must be one of {', '.join(FIELD_KINDS)}, got {self.kind!r}")
        if self.kind == "image" and self.channels not in (1, 3):
            raise DataError(f"field {self.name!r}: channels must be 1 or 3, got {self.channels}")

    @property
    def extensions(self) -> tuple[str, ...]:
        if self.kind == "image":
            return tuple(sorted(media.IMAGE_EXTENSIONS))
        return tuple(sorted(media.DEPTH_EXTENSIONS)) if self.kind == "depth" else LABEL_EXTENSIONS


def as_fields(fields: Sequence[Field] | Mapping[str, str]) -> tuple[Field, ...]:
    out = tuple(Field(n, k) for n, k in fields.items()) if isinstance(fields, Mapping) else tuple(fields)
    if not out:
        raise DataError("a paired source needs at least one field")
    names = [f.name for f in out]
    if len(set(names)) != len(names) or {"key", "label", "failed"} & set(names):
        raise DataError(f"field names must be unique and not key/label/failed, got {names}")
    return out


def read_field(path: str | Path, field: Field) -> Tensor:
    """One field's file at full size."""
    if field.kind == "image":
        return media.read_image(path, channels=field.channels)
    if field.kind == "depth":
        return media.read_depth(path)
    return read_label_map(path)


def decode_field_cell(cell: Any, field: Field, key: str) -> Tensor:
    """One dataset cell of a field: undecoded ``{"bytes", "path"}`` media, a file path, a PIL image or an array."""
    if isinstance(cell, str):
        return read_field(cell, field)
    if isinstance(cell, dict) and ("bytes" in cell or "path" in cell):
        data, path = cell.get("bytes"), cell.get("path")
        if data is None:
            if not path:
                raise MediaError(f"{key}: empty {field.name} cell (no bytes, no path)")
            return read_field(path, field)
        if field.kind == "image":
            return media.decode_image_bytes(data, channels=field.channels, name=f"{key} {field.name}")
        if field.kind == "depth":
            return media.decode_depth_bytes(data, name=f"{key} {field.name}")
        return read_label_map(data, f"{key} {field.name}")
    if hasattr(cell, "convert"):  # a decoded PIL image
        if field.kind == "label":
            return label_map_from_array(np.asarray(cell), f"{key} {field.name}")
        buf = io.BytesIO()
        cell.save(buf, format="PNG")
        return decode_field_cell({"bytes": buf.getvalue(), "path": None}, field, key)
    if field.kind == "label":
        return label_map_from_array(np.asarray(cell), f"{key} {field.name}")
    x = torch.as_tensor(np.asarray(cell, dtype=np.float32))
    if field.kind == "depth":
        return media.depth_from_array(x.numpy(), name=f"{key} {field.name}")
    return match_channels(x[None] if x.dim() == 2 else x, field.channels, f"{key} {field.name}")


class PairedFolderSource:
    """Aligned files per field under ``root``: matching stems in sub-folders, or a sidecar (module docstring)."""

    def __init__(self, root: str | Path, fields: Sequence[Field] | Mapping[str, str],
                 sidecar: str | Path | None = None, labels: str | None = None) -> None:
        self.root, self.fields = Path(root).resolve(), as_fields(fields)
        if not self.root.is_dir():
            raise DataError(f"{root}: no such folder")
        self.files: dict[str, dict[str, str]] = {}  # key -> field name -> path relative to root
        self.labels: dict[str, str | None] = {}
        if sidecar is not None:
            self._from_sidecar(Path(sidecar))
        else:
            self._from_folders(labels)
        if not self.files:
            raise DataError(f"{root}: no paired samples found for fields {', '.join(f.name for f in self.fields)}")
        self.keys = sorted(self.files)

    def _from_folders(self, labels: str | None) -> None:
        stems: dict[str, dict[str, str]] = {}
        for f in self.fields:
            folder = self.root / (f.folder or f.name)
            if not folder.is_dir():
                raise DataError(f"{folder}: no such folder (field {f.name!r}: one sub-folder per field)")
            seen: dict[str, str] = {}
            for rel in list_files(folder, f.extensions):
                stem = rel.rsplit(".", 1)[0]
                if stem in seen:
                    raise DataError(f"{folder}: {seen[stem]} and {rel} have the same stem; keep one")
                seen[stem] = f"{f.folder or f.name}/{rel}"
            stems[f.name] = seen
        all_stems = sorted(set().union(*(set(s) for s in stems.values())))
        for stem in all_stems:
            lacking = [name for name, s in stems.items() if stem not in s]
            if lacking:
                raise DataError(f"{self.root}: sample {stem!r} has no {', '.join(lacking)} file "
                                f"({sum(1 for st in all_stems if any(st not in s for s in stems.values()))} "
                                "incomplete sample(s)); add or remove files so every field has every stem")
            self.files[stem] = {name: s[stem] for name, s in stems.items()}
            if labels == "folder":
                self.labels[stem] = stem.split("/")[0] if "/" in stem else None
        if labels not in (None, "folder"):
            raise DataError(f"labels must be None or 'folder' without a sidecar, got {labels!r}")

    def _from_sidecar(self, sidecar: Path) -> None:
        for n, rec in enumerate(read_records(sidecar, "sidecar"), 1):
            missing = [f.name for f in self.fields if not rec.get(f.name)]
            if missing:
                raise DataError(f"sidecar {sidecar}: record {n} has no {', '.join(missing)} column value")
            paths = {f.name: clean_key(rec[f.name]) for f in self.fields}
            key = clean_key(rec["key"]) if rec.get("key") else paths[self.fields[0].name].rsplit(".", 1)[0]
            if key in self.files:
                raise DataError(f"sidecar {sidecar}: key {key!r} appears twice (record {n})")
            self.files[key] = paths
            self.labels[key] = None if rec.get("label") in (None, "") else str(rec["label"])

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self) -> dict[str, Any]:
        return {"type": "paired-files", "path": str(self.root), "fields": [f.name for f in self.fields],
                "num_keys": len(self.keys), "keys_sha256": keys_hash(self.keys)}

    def load(self, index: int) -> tuple[dict[str, Tensor], str | None]:
        key = self.keys[index]
        return ({f.name: read_field(self.root / self.files[key][f.name], f) for f in self.fields},
                self.labels.get(key))


class PairedHFSource:
    """Aligned columns of a ``datasets.Dataset`` (or a source spec); keys are row indices."""

    def __init__(self, dataset: Any, fields: Sequence[Field] | Mapping[str, str],
                 columns: Mapping[str, str] | None = None, label_column: str | None = None) -> None:
        self.fields = as_fields(fields)
        ds = load_hf(dataset, streaming=False)[0] if isinstance(dataset, Mapping) else dataset
        self.columns = {f.name: (columns or {}).get(f.name, f.name) for f in self.fields}
        wanted = list(self.columns.values()) + ([label_column] if label_column else [])
        missing = [c for c in wanted if c not in ds.column_names]
        if missing:
            raise DataError(f"dataset has no column {', '.join(missing)}; columns: {', '.join(ds.column_names)}")
        self.keys = [row_key(i) for i in range(ds.num_rows)]
        names = label_names(ds.features, label_column)
        self.labels = [label_value(v, names) for v in ds[label_column]] if label_column else None
        self.ds = undecoded(ds.select_columns(list(self.columns.values())), list(self.columns.values()))

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self) -> dict[str, Any]:
        return {"type": "paired-dataset", "columns": self.columns, "num_keys": len(self.keys),
                "fingerprint": getattr(self.ds, "_fingerprint", None)}

    def load(self, index: int) -> tuple[dict[str, Tensor], str | None]:
        row, key = self.ds[index], self.keys[index]
        out = {}
        for f in self.fields:
            try:
                out[f.name] = decode_field_cell(row[self.columns[f.name]], f, key)
            except MediaError:
                raise
            except Exception as e:  # noqa: BLE001 - decoders raise anything; one line naming the row and field
                raise MediaError(f"{key}: cannot decode field {f.name!r} as {f.kind} ({one_line(e)})") from None
        return out, None if self.labels is None else self.labels[index]


class PairedDataset(torch.utils.data.Dataset):
    """Fitted paired samples; one crop box per sample, shared by every field (module docstring)."""

    def __init__(self, source: PairedFolderSource | PairedHFSource, size: int | None = None, crop: str = "center",
                 min_scale: float = 1.0, flip: bool = False, seed: int = 0) -> None:
        if crop not in ("center", "random"):
            raise DataError(f"crop must be 'center' or 'random', got {crop!r}")
        if (crop == "random" or flip or min_scale != 1.0) and size is None:
            raise DataError("random crops and flips need a size")
        if not 0.0 < min_scale <= 1.0:
            raise DataError(f"min_scale must be in (0, 1], got {min_scale}")
        self.source, self.size, self.crop, self.min_scale, self.flip, self.seed = source, size, crop, min_scale, flip, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Random crops depend on ``(seed, epoch, index)`` only: the same on every rank, worker and resume."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source.keys)

    def box(self, index: int, h: int, w: int) -> Box:
        if self.crop == "center" and not self.flip:
            return Box.center(h, w)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        if self.crop == "center":
            c = Box.center(h, w)
            return Box(c.top, c.left, c.side, flip=bool(torch.rand((), generator=g) < 0.5))
        return Box.random(h, w, g, self.min_scale, self.flip)

    def fit(self, index: int, fields: dict[str, Tensor]) -> dict[str, Tensor]:
        """Crop every field by one box and resize it by its kind; the fields must share ``(H, W)``."""
        sizes = {name: tuple(x.shape[-2:]) for name, x in fields.items()}
        if len(set(sizes.values())) != 1:
            raise MediaError(f"{self.source.keys[index]}: fields differ in size "
                             f"({', '.join(f'{n} {h}x{w}' for n, (h, w) in sizes.items())}); they must be aligned")
        if self.size is None:
            return fields
        box = self.box(index, *next(iter(sizes.values())))
        kinds = {f.name: f.kind for f in self.source.fields}
        return {name: fit_spatial(x, self.size, kinds[name], box) for name, x in fields.items()}

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        key = self.source.keys[index]
        try:
            fields, label = self.source.load(index)
            return {"key": key, "label": label, **self.fit(index, fields)}
        except (MediaError, OSError, ValueError, RuntimeError) as e:
            warnings.warn(f"skipping sample {key}: {one_line(e)}", stacklevel=2)
            return None
