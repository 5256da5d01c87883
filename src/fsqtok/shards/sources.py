"""Where samples come from: a folder tree of media files, or a saved Hugging Face dataset.

A source is a sorted list of stable string keys plus a way to load one key into a tensor in
the tokenizer's convention. Keys are relative POSIX paths (folders) or zero-padded row indices
(datasets). Shard assignment depends only on that sorted key list.

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
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


class SourceError(ValueError):
    """A source that cannot be used at all (missing folder, no files, bad label sidecar)."""


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
        duration = wav.shape[-1] / sr
        if self.clip_seconds:
            n = int(round(self.clip_seconds * sr))
            duration = min(duration, n / sr)
            wav = wav[..., :n]
            if wav.shape[-1] < n:
                wav = F.pad(wav, (0, n - wav.shape[-1]))
        return wav, {"sample_rate": int(sr), "duration": float(duration)}

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


def read_label_sidecar(path: str | Path) -> dict[str, str]:
    """``key -> label`` from a CSV (header ``key,label``) or JSONL (``{"key": ..., "label": ...}``) file."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"--labels {path}: no such file")
    labels: dict[str, str] = {}
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    rec = json.loads(line)
                    labels[str(rec["key"])] = None if rec.get("label") is None else str(rec["label"])
        else:
            with path.open(newline="") as f:
                for rec in csv.DictReader(f):
                    labels[str(rec["key"])] = rec["label"]
    except (KeyError, TypeError, json.JSONDecodeError, csv.Error) as e:
        raise SourceError(f"--labels {path}: expected a CSV with columns key,label or JSONL with "
                          f"'key' and 'label' ({type(e).__name__}: {e})") from None
    return labels


# --------------------------------------------------------------------------- sources


class FolderSource:
    """Media files of one modality under ``root`` (recursive, by extension; hidden files skipped).

    ``labels``: ``None``, ``"folder"`` (the first path component under ``root``) or a CSV/JSONL file.
    """

    kind = "folder"

    def __init__(self, root: str | Path, modality: str, labels: str | None = None,
                 exclude: str | Path | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SourceError(f"--data {root}: no such folder")
        exts = EXTENSIONS_BY_MODALITY[modality]
        skip = Path(exclude).resolve() if exclude else None
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            d = Path(dirpath)
            dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and (skip is None or d / n != skip))
            for name in filenames:
                if not name.startswith(".") and Path(name).suffix.lower() in exts:
                    keys.append((d / name).relative_to(self.root).as_posix())
        if not keys:
            raise SourceError(f"--data {root}: no {modality} files ({', '.join(sorted(exts))})")
        self.keys: list[str] = sorted(keys)
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

    def label(self, key: str) -> str | None:
        return self.labels.get(key)

    def load(self, index: int, prep: Preprocess) -> tuple[Tensor, dict[str, Any]]:
        path = self.root / self.keys[index]
        m = self.modality
        if m == "image":
            return prep.image(media.read_image(path)), {}
        if m == "depth":
            return prep.depth(media.read_depth(path)), {}
        if m == "audio":
            wav, sr = media.read_audio(path, sample_rate=prep.sample_rate)
            return prep.audio(wav, sr)
        v, fps = media.read_video(path, fps=prep.fps, num_frames=prep.num_frames)
        return prep.video(v, fps)


class HFSource:
    """A dataset saved with ``datasets.Dataset.save_to_disk``; key = zero-padded row index.

    ``column``: the media column (default: the first Image/Audio column, else the first column
    holding arrays). Image cells may be PIL images; audio cells dicts with ``array`` and
    ``sampling_rate``; other cells nested lists / arrays in the tokenizer's convention.
    """

    kind = "hf_dataset"

    def __init__(self, path: str | Path, modality: str, column: str | None = None,
                 label_column: str | None = None, split: str | None = None) -> None:
        import datasets

        self.path = Path(path).resolve()
        try:
            ds = datasets.load_from_disk(str(self.path))
        except Exception as e:  # noqa: BLE001 - datasets raises many types here
            raise SourceError(f"--data {path}: not a dataset saved with save_to_disk ({' '.join(str(e).split())})") from None
        if isinstance(ds, datasets.DatasetDict):
            if split is None:
                split = "train" if "train" in ds else None
            if split not in ds:
                raise SourceError(f"--data {path}: a DatasetDict with splits {', '.join(ds)}; pick one with --split")
            ds = ds[split]
        self.split = split
        if column is None:
            column = next((c for c, f in ds.features.items()
                           if type(f).__name__ in ("Image", "Audio", "Video")), None)
            column = column or next((c for c, f in ds.features.items() if type(f).__name__ in
                                     ("Sequence", "List", "Array2D", "Array3D", "Array4D")), None)
        if column not in ds.column_names:
            raise SourceError(f"--column {column}: no such column; columns: {', '.join(ds.column_names)}")
        if label_column is not None and label_column not in ds.column_names:
            raise SourceError(f"--label-column {label_column}: no such column; columns: {', '.join(ds.column_names)}")
        self.ds, self.column, self.label_column, self.modality = ds, column, label_column, modality
        width = max(8, len(str(len(ds))))
        self.keys = [f"{i:0{width}d}" for i in range(len(ds))]
        self._labels: list[str | None] | None = None
        if label_column is not None:
            feat = ds.features[label_column]
            names = getattr(feat, "names", None)
            self._labels = [None if v is None else str(names[v] if names else v) for v in ds[label_column]]
        if self.ds.num_rows == 0:
            raise SourceError(f"--data {path}: the dataset has no rows")
        self._fingerprint = getattr(ds, "_fingerprint", None)

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "path": str(self.path), "split": self.split, "column": self.column,
                "label_column": self.label_column, "num_keys": len(self.keys),
                "keys_sha256": keys_hash(self.keys), "fingerprint": self._fingerprint}

    def label(self, key: str) -> str | None:
        return None if self._labels is None else self._labels[int(key)]

    def load(self, index: int, prep: Preprocess) -> tuple[Tensor, dict[str, Any]]:
        key = self.keys[index]
        try:
            cell = self.ds[index][self.column]
        except Exception as e:  # noqa: BLE001 - a cell that does not decode is a per-sample failure
            raise MediaError(f"row {key}: cannot decode column {self.column!r} ({' '.join(str(e).split())})") from None
        m = self.modality
        try:
            if m == "audio":
                if isinstance(cell, dict):
                    wav, sr = torch.as_tensor(np.asarray(cell["array"]), dtype=torch.float32), int(cell["sampling_rate"])
                else:  # torchcodec AudioDecoder or similar
                    samples = cell.get_all_samples()
                    wav, sr = samples.data.float(), int(samples.sample_rate)
                if wav.dim() == 1:
                    wav = wav[None]
                if prep.sample_rate and sr != prep.sample_rate:
                    import torchaudio.functional as AF
                    wav, sr = AF.resample(wav, sr, prep.sample_rate), prep.sample_rate
                return prep.audio(wav, sr)
            if m == "image" and hasattr(cell, "convert"):
                arr = np.asarray(cell.convert("RGB"), dtype=np.float32)
                x = torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1
                return prep.image(x.contiguous()), {}
            x = torch.as_tensor(np.asarray(cell), dtype=torch.float32)
            if m == "depth" and hasattr(cell, "convert"):
                x = torch.as_tensor(np.asarray(cell), dtype=torch.float32) / 1000.0
            if m in ("image", "depth") and x.dim() == 2:
                x = x[None]
            if m == "image":
                return prep.image(x), {}
            if m == "depth":
                return prep.depth(x), {}
            return prep.video(x, float(prep.fps or 1.0))
        except MediaError:
            raise
        except Exception as e:  # noqa: BLE001
            raise MediaError(f"row {key}: cannot use column {self.column!r} as {m} ({' '.join(str(e).split())})") from None


def keys_hash(keys: list[str]) -> str:
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode())
        h.update(b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------- torch dataset


class SampleDataset(torch.utils.data.Dataset):
    """Index -> ``{"index", "key", "x" or None, "meta", "error"}``; decode failures are returned, not raised."""

    def __init__(self, source: FolderSource | HFSource, prep: Preprocess) -> None:
        self.source, self.prep = source, prep

    def __len__(self) -> int:
        return len(self.source.keys)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key = self.source.keys[index]
        try:
            x, meta = self.source.load(index, self.prep)
            if not torch.isfinite(x).any() and self.prep.modality != "depth":
                raise MediaError(f"{key}: no finite values")
            return {"index": index, "key": key, "x": x, "meta": meta, "error": None}
        except MediaError as e:
            return {"index": index, "key": key, "x": None, "meta": {}, "error": " ".join(str(e).split())}
        except (OSError, ValueError, RuntimeError) as e:
            return {"index": index, "key": key, "x": None, "meta": {},
                    "error": f"{key}: {type(e).__name__}: {' '.join(str(e).split())}"}


def collate_keep(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Collate that keeps the list: failed samples stay in it (with ``x=None``), shapes may differ."""
    return items


def worker_init(_: int) -> None:
    torch.set_num_threads(1)

