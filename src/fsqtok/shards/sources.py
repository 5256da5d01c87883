"""Where samples come from: a folder tree of media files, or a Hugging Face ``datasets`` dataset.

A source is an ordered list of stable string keys plus a way to load one key into a tensor in
the tokenizer's convention. Keys are relative POSIX paths (folders, sorted) or row indices
zero-padded to 10 digits (datasets, in the dataset's own order). Shard assignment depends
only on that key list, so it is the same for every run, rank and resume.

Sources (``--data SOURCE`` with ``--data-format``, default ``auto``):

* ``files``: a folder tree of media files of the tokenizer's modality, found by extension
  (hidden files and folders skipped). Labels from the first sub-folder name
  (``--labels folder``) or a CSV/JSONL sidecar (``--labels FILE``, columns ``key`` (or
  ``file_name``/``path``) and ``label``).
* ``disk``: a folder written by ``Dataset.save_to_disk`` (memory-mapped, random access).
* ``parquet`` / ``arrow`` / ``imagefolder`` / ``audiofolder``: a local folder or file read
  with ``datasets.load_dataset(FORMAT, ...)``.
* ``hub``: a Hub dataset name (``org/name``; ``--dataset-config``), where a network exists.

``auto`` picks ``disk`` for a ``save_to_disk`` folder, ``files`` for a folder holding media
files, ``parquet``/``arrow`` for a folder or file of those, and ``hub`` for an ``org/name``
that is not a local path. ``--streaming`` reads ``load_dataset`` sources as a stream
(:class:`StreamSource`) instead of converting them to a local Arrow cache first.

Dataset media columns are read undecoded (bytes or path) and decoded here, the same way for
random-access and streamed datasets: images with Pillow (RGB), depth from 16-bit PNGs in
millimetres or float arrays in metres, audio with soundfile (other codecs via
:func:`fsqtok.media.read_audio`), video via :func:`fsqtok.media.read_video`. Columns of plain
arrays (``List``/``ArrayND``) are taken as tensors in the tokenizer's convention.

Fixed-size inputs (so batches stack) are chosen by :class:`Preprocess`:

* image / depth: ``size`` resizes the short side and center-crops to ``size x size``
  (bilinear + antialias for images, nearest for depth so invalid NaN pixels stay invalid);
  without ``size`` samples keep their own size.
* audio: ``clip_seconds`` keeps the first ``clip_seconds`` and zero-pads shorter files;
  without it the whole file is tokenized.
* video: ``num_frames`` / ``fps`` are passed to :func:`fsqtok.media.read_video`; ``size`` as images.

Samples of different shapes are never stacked: a batch is split into groups of equal shape
and each group is encoded on its own, so mixed sizes work (just slower).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import media
from ..media import MediaError

EXTENSIONS_BY_MODALITY = {
    "image": set(media.image.IMAGE_EXTENSIONS),
    "depth": set(media.DEPTH_EXTENSIONS),
    "audio": set(media.audio.AUDIO_EXTENSIONS),
    "video": set(media.video.VIDEO_EXTENSIONS),
}
DATA_FORMATS = ("auto", "files", "disk", "parquet", "arrow", "imagefolder", "audiofolder", "hub")
KEY_WIDTH = 10  # dataset keys: row index zero-padded, so string order == row order (up to 10^10 rows)


class SourceError(ValueError):
    """A source that cannot be used at all (missing folder, no files, bad label sidecar)."""


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


@dataclass(frozen=True)
class Preprocess:
    """How each sample is made fixed-size; part of the run's identity (see module docstring)."""

    modality: str
    size: int | None = None
    clip_seconds: float | None = None
    num_frames: int | None = None
    fps: float | None = None
    sample_rate: int | None = None  # audio: the tokenizer's rate (files are resampled to it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def image(self, x: Tensor) -> Tensor:
        return _resize_crop(x, self.size, "bilinear") if self.size else x

    def depth(self, x: Tensor) -> Tensor:
        return _resize_crop(x, self.size, "nearest") if self.size else x

    def audio(self, wav: Tensor, sr: int) -> tuple[Tensor, dict[str, Any]]:
        if self.sample_rate and sr != self.sample_rate:
            import torchaudio.functional as AF

            wav, sr = AF.resample(wav, sr, self.sample_rate), self.sample_rate
        duration = wav.shape[-1] / sr
        if self.clip_seconds:
            n = int(round(self.clip_seconds * sr))
            duration = min(duration, n / sr)
            wav = wav[..., :n]
            if wav.shape[-1] < n:
                wav = F.pad(wav, (0, n - wav.shape[-1]))
        return wav.contiguous(), {"sample_rate": int(sr), "duration": float(duration)}

    def video(self, v: Tensor, fps: float) -> tuple[Tensor, dict[str, Any]]:
        if self.size:
            v = _resize_crop(v.permute(1, 0, 2, 3), self.size, "bilinear").permute(1, 0, 2, 3)
        return v.contiguous(), {"fps": float(fps), "duration": float(v.shape[1] / fps)}


def _resize_crop(x: Tensor, size: int, mode: str) -> Tensor:
    """``(..., C, H, W)`` -> short side resized to ``size``, then center-cropped to ``size x size``."""
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        batched = x if x.dim() == 4 else x[None]
        kw = {"antialias": True, "align_corners": False} if mode == "bilinear" else {}
        batched = F.interpolate(batched, size=(nh, nw), mode=mode, **kw)
        x = batched if x.dim() == 4 else batched[0]
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[..., top:top + size, left:left + size]
    if x.is_floating_point() and mode == "bilinear":
        x = x.clamp(-1, 1)
    return x.contiguous()


# --------------------------------------------------------------------------- labels

SIDECAR_KEY_COLUMNS = ("key", "file_name", "path")


def read_label_sidecar(path: str | Path) -> dict[str, str | None]:
    """``key -> label`` from a CSV or JSONL file.

    The key column is ``key``, ``file_name`` (as in ImageFolder's ``metadata.csv``) or ``path``:
    the file's path relative to ``--data``; the label column is ``label``.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"--labels {path}: no such file")
    if path.suffix.lower() in (".jsonl", ".json"):
        try:
            recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise SourceError(f"--labels {path}: not JSON lines ({e})") from None
    else:
        try:
            with path.open(newline="") as f:
                recs = list(csv.DictReader(f))
        except (csv.Error, UnicodeDecodeError) as e:
            raise SourceError(f"--labels {path}: not a CSV file ({e})") from None
    labels: dict[str, str | None] = {}
    for n, rec in enumerate(recs, 1):
        if not isinstance(rec, dict):
            raise SourceError(f"--labels {path}: record {n} is not an object")
        kcol = next((c for c in SIDECAR_KEY_COLUMNS if c in rec), None)
        if kcol is None or "label" not in rec:
            raise SourceError(f"--labels {path}: record {n} lacks a key column ({'/'.join(SIDECAR_KEY_COLUMNS)}) "
                              f"or 'label'; has {', '.join(map(str, rec)) or 'nothing'}")
        key = Path(str(rec[kcol])).as_posix().removeprefix("./")
        labels[key] = None if rec["label"] in (None, "") else str(rec["label"])
    return labels


# --------------------------------------------------------------------------- decoding


def _decode_image_bytes(data: bytes) -> Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(rgb).permute(2, 0, 1).div(127.5).sub(1.0).contiguous()


def _depth_from_array(d: np.ndarray) -> Tensor:
    d = np.squeeze(np.asarray(d, dtype=np.float32)).copy()
    if d.ndim != 2:
        raise ValueError(f"expected a 2-D depth map, got shape {d.shape}")
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return torch.from_numpy(d)[None]


def _decode_depth_bytes(data: bytes) -> Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            return _depth_from_array(np.asarray(im, dtype=np.float32) / 1000.0)  # millimetres
        if im.mode == "F":
            return _depth_from_array(np.asarray(im, dtype=np.float32))  # metres
        raise ValueError(f"not a 16-bit or float depth image (mode {im.mode})")


def _with_temp_file(data: bytes, suffix: str, reader):
    """Run a path-based media reader on in-memory bytes (codecs that need a seekable file)."""
    fd, name = tempfile.mkstemp(suffix=suffix or ".bin", prefix="fsqtok-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return reader(name)
    finally:
        os.unlink(name)


def decode_cell(cell: Any, modality: str, prep: Preprocess, key: str) -> tuple[Tensor, dict[str, Any]]:
    """One dataset cell (undecoded ``{"bytes", "path"}`` media, or an array) -> ``(x, meta)``.

    Raises :class:`MediaError` (one line naming ``key``) for anything that does not decode.
    """
    try:
        if isinstance(cell, dict) and ("bytes" in cell or "path" in cell):
            data, path = cell.get("bytes"), cell.get("path")
            suffix = Path(path).suffix.lower() if path else ""
            if data is None:  # a file referenced by path
                if not path:
                    raise ValueError("empty cell (no bytes, no path)")
                return _load_file(Path(path), modality, prep)
            if modality == "image":
                return prep.image(_decode_image_bytes(data)), {}
            if modality == "depth":
                if suffix == ".npy":
                    return prep.depth(_depth_from_array(np.load(io.BytesIO(data), allow_pickle=False))), {}
                return prep.depth(_decode_depth_bytes(data)), {}
            if modality == "audio":
                try:
                    import soundfile as sf

                    arr, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
                    wav = torch.from_numpy(np.ascontiguousarray(arr.T))
                except Exception:  # noqa: BLE001 - not a soundfile format: let PyAV try
                    wav, sr = _with_temp_file(data, suffix or ".mp3", media.read_audio)
                if wav.shape[-1] == 0:
                    raise ValueError("audio holds no samples")
                return prep.audio(wav, int(sr))
            v, fps = _with_temp_file(data, suffix or ".mp4",
                                     lambda p: media.read_video(p, fps=prep.fps, num_frames=prep.num_frames))
            return prep.video(v, fps)
        if modality == "audio" and isinstance(cell, dict) and "array" in cell:  # decoded Audio cells
            wav = torch.as_tensor(np.asarray(cell["array"], dtype=np.float32))
            return prep.audio(wav[None] if wav.dim() == 1 else wav, int(cell["sampling_rate"]))
        if hasattr(cell, "convert"):  # a PIL image
            buf = io.BytesIO()
            cell.save(buf, format="PNG")
            return decode_cell({"bytes": buf.getvalue(), "path": None}, modality, prep, key)
        x = torch.as_tensor(np.asarray(cell, dtype=np.float32))
        if modality == "image":
            return prep.image(x[None] if x.dim() == 2 else x), {}
        if modality == "depth":
            return prep.depth(_depth_from_array(x.numpy())), {}
        if modality == "audio":
            raise ValueError("an array column has no sample rate; store audio in an Audio column")
        return prep.video(x, float(prep.fps or 1.0))
    except MediaError as e:
        raise MediaError(f"{key}: {_one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - decoders raise anything; one line per failed sample
        raise MediaError(f"{key}: cannot decode as {modality} ({_one_line(e)})") from None


def _load_file(path: Path, modality: str, prep: Preprocess) -> tuple[Tensor, dict[str, Any]]:
    if modality == "image":
        return prep.image(media.read_image(path)), {}
    if modality == "depth":
        return prep.depth(media.read_depth(path)), {}
    if modality == "audio":
        wav, sr = media.read_audio(path, sample_rate=prep.sample_rate)
        return prep.audio(wav, sr)
    v, fps = media.read_video(path, fps=prep.fps, num_frames=prep.num_frames)
    return prep.video(v, fps)


# --------------------------------------------------------------------------- sources


def keys_hash(keys: list[str]) -> str:
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode())
        h.update(b"\n")
    return h.hexdigest()


def row_key(index: int) -> str:
    return f"{index:0{KEY_WIDTH}d}"


class FolderSource:
    """Media files of one modality under ``root`` (recursive, by extension; hidden files skipped).

    ``labels``: ``None``, ``"folder"`` (the first path component under ``root``) or a CSV/JSONL file.
    """

    kind = "files"

    def __init__(self, root: str | Path, modality: str, labels: str | None = None,
                 exclude: str | Path | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SourceError(f"--data {root}: no such folder")
        self.keys: list[str] = list_media(self.root, modality, exclude)
        if not self.keys:
            raise SourceError(f"--data {root}: no {modality} files "
                              f"({', '.join(sorted(EXTENSIONS_BY_MODALITY[modality]))})")
        self.labels_arg = labels
        if labels is None:
            self.labels: dict[str, str | None] = {}
        elif labels == "folder":
            self.labels = {k: (k.split("/")[0] if "/" in k else None) for k in self.keys}
        else:
            self.labels = read_label_sidecar(labels)
        self.modality = modality

    def describe(self) -> dict[str, Any]:
        """The source's identity: path, kind, labels and a hash of the sorted key list."""
        return {"type": self.kind, "path": str(self.root), "labels": self.labels_arg,
                "num_keys": len(self.keys), "keys_sha256": keys_hash(self.keys)}

    def load(self, index: int, prep: Preprocess) -> tuple[Tensor, dict[str, Any], str | None]:
        key = self.keys[index]
        x, meta = _load_file(self.root / key, self.modality, prep)
        return x, meta, self.labels.get(key)


def list_media(root: Path, modality: str, exclude: str | Path | None = None) -> list[str]:
    """Sorted relative POSIX paths of ``modality`` files under ``root`` (hidden entries and ``exclude`` skipped)."""
    exts = EXTENSIONS_BY_MODALITY[modality]
    skip = Path(exclude).resolve() if exclude else None
    keys = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and (skip is None or d / n != skip))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in exts:
                keys.append((d / name).relative_to(root).as_posix())
    return sorted(keys)


def _pick_column(features: Any, column_names: list[str], column: str | None, where: str) -> str:
    if column is None and features is not None:
        column = next((c for c, f in features.items() if type(f).__name__ in ("Image", "Audio", "Video")), None)
        column = column or next((c for c, f in features.items() if type(f).__name__ in
                                 ("Sequence", "List", "LargeList", "Array2D", "Array3D", "Array4D", "Array5D")), None)
    if column is None:
        raise SourceError(f"--data {where}: no Image/Audio/Video or array column found; "
                          f"name the media column with --column (columns: {', '.join(column_names)})")
    if column not in column_names:
        raise SourceError(f"--column {column}: no such column; columns: {', '.join(column_names)}")
    return column


def _undecoded(ds: Any, column: str) -> Any:
    """The dataset with ``column`` cast to its undecoded form (``{"bytes", "path"}``) where it is media."""
    feat = (ds.features or {}).get(column)
    if feat is not None and getattr(feat, "decode", False) and dataclasses.is_dataclass(feat):
        return ds.cast_column(column, dataclasses.replace(feat, decode=False))
    return ds


def _label_names(features: Any, label_column: str | None) -> list[str] | None:
    feat = (features or {}).get(label_column) if label_column else None
    return list(feat.names) if getattr(feat, "names", None) else None


def _label_value(v: Any, names: list[str] | None) -> str | None:
    if v is None:
        return None
    if names is not None and isinstance(v, (int, np.integer)) and 0 <= int(v) < len(names):
        return names[int(v)]
    return str(v)


def load_hf(spec: dict[str, Any], streaming: bool, cache_dir: str | None = None) -> Any:
    """``datasets`` object for a source spec (``format``, ``path``, ``config``, ``split``)."""
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
    except SourceError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets raises many types here
        raise SourceError(f"--data {path}: cannot load as {fmt} dataset ({_one_line(e)})") from None
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split is None:
            split = "train" if "train" in ds else (next(iter(ds)) if len(ds) == 1 else None)
        if split not in ds:
            raise SourceError(f"--data {path}: splits {', '.join(ds)}; pick one with --split")
        ds = ds[split]
    elif split not in (None, "train"):
        raise SourceError(f"--split {split}: the dataset at {path} has a single split")
    return ds, split


class HFSource:
    """A random-access ``datasets.Dataset`` (``save_to_disk`` folder or ``load_dataset``); key = row index.

    ``column``: the media column (default: the first Image/Audio/Video column, else the first
    array column); ``label_column``: a label column (ClassLabel ids become their names).
    """

    kind = "dataset"

    def __init__(self, spec: dict[str, Any], modality: str, column: str | None = None,
                 label_column: str | None = None, cache_dir: str | None = None) -> None:
        ds, split = load_hf(spec, streaming=False, cache_dir=cache_dir)
        self.spec = {**spec, "split": split}
        self.column = _pick_column(ds.features, ds.column_names, column, spec["path"])
        if label_column is not None and label_column not in ds.column_names:
            raise SourceError(f"--label-column {label_column}: no such column; columns: {', '.join(ds.column_names)}")
        if ds.num_rows == 0:
            raise SourceError(f"--data {spec['path']}: the dataset has no rows")
        self.label_column, self.modality = label_column, modality
        self._fingerprint = getattr(ds, "_fingerprint", None)
        self.keys = [row_key(i) for i in range(ds.num_rows)]
        self._labels: list[str | None] | None = None
        if label_column is not None:
            names = _label_names(ds.features, label_column)
            self._labels = [_label_value(v, names) for v in ds[label_column]]
        self.ds = _undecoded(ds.select_columns([self.column]), self.column)

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, **self.spec, "column": self.column, "label_column": self.label_column,
                "num_keys": len(self.keys), "keys_sha256": keys_hash(self.keys), "fingerprint": self._fingerprint}

    def load(self, index: int, prep: Preprocess) -> tuple[Tensor, dict[str, Any], str | None]:
        key = self.keys[index]
        try:
            cell = self.ds[index][self.column]
        except Exception as e:  # noqa: BLE001 - a row that does not read is a per-sample failure
            raise MediaError(f"{key}: cannot read column {self.column!r} ({_one_line(e)})") from None
        x, meta = decode_cell(cell, self.modality, prep, key)
        return x, meta, None if self._labels is None else self._labels[index]


class StreamSource:
    """A ``datasets.IterableDataset`` (``--streaming``): rows in stream order, keys = row index.

    The number of rows is known only once the stream ends. Every DataLoader worker and every
    rank reads the whole stream (media undecoded, so skipping costs only the bytes read) and
    decodes just the batches it owns, so the rows are cut into shards exactly as a
    random-access run would.
    """

    kind = "stream"
    keys = None

    def __init__(self, spec: dict[str, Any], modality: str, column: str | None = None,
                 label_column: str | None = None, cache_dir: str | None = None) -> None:
        ds, split = load_hf(spec, streaming=True, cache_dir=cache_dir)
        self.spec = {**spec, "split": split}
        names = list(ds.features) if ds.features is not None else (ds.column_names or [])
        self.column = _pick_column(ds.features, names, column, spec["path"])
        if label_column is not None and names and label_column not in names:
            raise SourceError(f"--label-column {label_column}: no such column; columns: {', '.join(names)}")
        self.label_column, self.modality = label_column, modality
        self._names = _label_names(ds.features, label_column)
        cols = [self.column] + ([label_column] if label_column else [])
        self.ds = _undecoded(ds.select_columns(cols), self.column)
        self._files = _local_files(spec)

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
        x, meta = decode_cell(row[self.column], self.modality, prep, row_key(index))
        label = _label_value(row.get(self.label_column), self._names) if self.label_column else None
        return x, meta, label


def _local_files(spec: dict[str, Any]) -> list[list[Any]] | None:
    """``[[relative path, size], ...]`` of a local source's data files: its identity without reading it."""
    p = Path(spec["path"])
    if spec["format"] == "hub" or not p.exists():
        return None
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
    return [[q.relative_to(p).as_posix() if p.is_dir() else q.name, q.stat().st_size] for q in files]


def detect_format(data: str, modality: str, exclude: str | Path | None = None) -> str:
    """``--data-format auto``: see the module docstring."""
    p = Path(data)
    if not p.exists():
        if data.count("/") == 1 and not data.startswith((".", "/", "~")):
            return "hub"
        raise SourceError(f"--data {data}: no such file or folder")
    if p.is_file():
        for fmt in ("parquet", "arrow"):
            if p.suffix.lower() == f".{fmt}":
                return fmt
        raise SourceError(f"--data {data}: a file; give a folder, or a .parquet / .arrow file")
    if any((p / n).is_file() for n in ("dataset_info.json", "dataset_dict.json", "state.json")):
        return "disk"
    if list_media(p, modality, exclude):
        return "files"
    for fmt in ("parquet", "arrow"):
        if next(p.rglob(f"*.{fmt}"), None) is not None:
            return fmt
    raise SourceError(f"--data {data}: no {modality} files "
                      f"({', '.join(sorted(EXTENSIONS_BY_MODALITY[modality]))}) and no dataset found")


# --------------------------------------------------------------------------- torch datasets


def _failed(index: int, key: str, e: BaseException) -> dict[str, Any]:
    msg = _one_line(e)
    if not isinstance(e, MediaError):
        msg = f"{key}: {type(e).__name__}: {msg}"
    return {"index": index, "key": key, "x": None, "meta": {}, "label": None, "error": msg}


def _checked(index: int, key: str, x: Tensor, meta: dict[str, Any], label: str | None,
             modality: str) -> dict[str, Any]:
    if modality != "depth" and not torch.isfinite(x).all():
        raise MediaError(f"{key}: NaN or inf values")
    return {"index": index, "key": key, "x": x, "meta": meta, "label": label, "error": None}


class SampleDataset(torch.utils.data.Dataset):
    """Index -> ``{"index", "key", "x" or None, "meta", "label", "error"}``; failures are returned, not raised."""

    def __init__(self, source: FolderSource | HFSource, prep: Preprocess) -> None:
        self.source, self.prep = source, prep

    def __len__(self) -> int:
        return len(self.source.keys)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key = self.source.keys[index]
        try:
            x, meta, label = self.source.load(index, self.prep)
            return _checked(index, key, x, meta, label, self.prep.modality)
        except (MediaError, OSError, ValueError, RuntimeError) as e:
            return _failed(index, key, e)


class StreamBatches(torch.utils.data.IterableDataset):
    """Batches of a :class:`StreamSource` cut exactly as a random-access run would cut them.

    Yields ``{"shard": i, **group_batch(items)}`` for the shards ``wanted(i)`` accepts, in stream
    order, then one ``{"end": number_of_rows}``. Batches are numbered in that order and
    DataLoader worker ``w`` of ``k`` decodes batch ``b`` when ``b % k == w``; the DataLoader's
    round-robin over workers hands them back in order.
    """

    def __init__(self, source: StreamSource, prep: Preprocess, shard_size: int, batch_size: int, wanted) -> None:
        self.source, self.prep = source, prep
        self.shard_size, self.batch_size, self.wanted = shard_size, batch_size, wanted

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        S, B = self.shard_size, self.batch_size
        current, items, mine, b = None, [], False, -1
        n = 0
        for index, row in self.source.rows():
            n = index + 1
            shard = index // S
            if not self.wanted(shard):
                continue
            batch_id = (shard, (index - shard * S) // B)
            if batch_id != current:
                if mine:
                    yield {"shard": current[0], **group_batch(items)}
                current, items, b = batch_id, [], b + 1
                mine = b % nw == wid
            if mine:
                key = row_key(index)
                try:
                    x, meta, label = self.source.load_row(index, row, self.prep)
                    items.append(_checked(index, key, x, meta, label, self.prep.modality))
                except (MediaError, OSError, ValueError, RuntimeError) as e:
                    items.append(_failed(index, key, e))
        if mine:
            yield {"shard": current[0], **group_batch(items)}
        yield {"end": n}


def group_batch(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate (in the worker): stack samples of equal shape, keep the rest of each item.

    Returns ``{"items": [item without "x"], "groups": [(positions, stacked x)]}``; failed items
    (``x=None``) are in no group. One stacked tensor per shape crosses to the main process
    instead of one per sample.
    """
    by_shape: dict[tuple, list[int]] = {}
    for pos, it in enumerate(items):
        if it["x"] is not None:
            by_shape.setdefault(tuple(it["x"].shape), []).append(pos)
    groups = [(pos, torch.stack([items[i]["x"] for i in pos])) for pos in by_shape.values()]
    return {"items": [{k: v for k, v in it.items() if k != "x"} for it in items], "groups": groups}


def collate_keep(batch: Any) -> Any:
    """Collate that passes a batch already built by the dataset (streams) through."""
    return batch


def worker_init(_: int, niceness: int = 0) -> None:
    """DataLoader worker set-up: one torch thread; ``niceness`` > 0 lowers the worker's CPU priority.

    On a CPU-only run the encoder's threads and the decode workers share the cores; an encoder
    thread preempted by a worker stalls the others at the next barrier, so there workers run
    niced and decode in the time the encoder leaves.
    """
    torch.set_num_threads(1)
    if niceness:
        try:
            os.nice(niceness)
        except OSError:  # not permitted: keep the default priority
            pass
