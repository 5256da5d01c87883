"""Datasets for the training recipe and scripts/evaluate.py: built-in samples or a folder of files.

Every item is one tensor in its tokenizer's convention (image ``(C, S, S)`` in [-1, 1], depth
``(1, S, S)`` in metres, audio ``(1, N)`` at the tokenizer's rate, video ``(C, T, S, S)`` in [-1, 1],
with ``C`` the tokenizer's input channels, 1 or 3). Folder files go through the same
:class:`~fsqtok.data.Preprocess` as ``fsqtok tokenize --size`` (see :func:`training_preprocess`).

A folder file that fails to decode gives ``None`` instead of raising; :func:`collate` drops it
and counts it, so a run can skip broken files up to a limit (:class:`DecodeFailures`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler, TensorDataset

from .fingerprint import data_fingerprint
from .folder import FolderSource
from .loading import load_item
from .preprocess import DataError, Preprocess, match_channels

class SampleTensors(TensorDataset):
    """Built-in sample tensors; items are single tensors rather than 1-tuples."""

    def __getitem__(self, i: int) -> Tensor:
        return self.tensors[0][i]


def sample_dataset(modality: str, split: str, n: int, data: Mapping[str, Any], sample_rate: int,
                   channels: int | None = None) -> SampleTensors:
    """``n`` built-in real samples (see :mod:`fsqtok.datasets.samples`); ``split`` is "train" or "val".

    ``channels=1`` turns colour images and videos grey (ITU-R 601, as grey files are read).
    """
    from ..datasets import samples

    seed = int(data.get("sample_seed", 0)) + (0 if split == "train" else 1000)
    size = int(data["size"])
    if modality == "image":
        x = samples.sample_images(n, size=size, split=split, seed=seed)
    elif modality == "depth":
        x = samples.sample_depth(n, size=size, split=split, seed=seed)
    elif modality == "audio":
        x = samples.sample_audio(n, seconds=float(data["seconds"]), sample_rate=sample_rate, split=split, seed=seed)
    elif modality == "video":
        x = samples.sample_videos(n, frames=int(data["frames"]), size=size, split=split, seed=seed)
    else:
        raise DataError(f"unknown modality {modality!r}")
    x = torch.as_tensor(x).float()
    if modality in ("image", "video"):
        x = match_channels(x, channels, f"{modality} samples", dim=1)
    return SampleTensors(x)


class FolderDataset(Dataset):
    """Media files under ``root`` (:class:`~fsqtok.data.FolderSource`), fitted by the shared
    :class:`~fsqtok.data.Preprocess`: the pixels ``fsqtok tokenize --size S`` sees for the same file.

    ``__getitem__`` returns ``None`` for a file that fails to decode (the recipe counts these).
    """

    def __init__(self, modality: str, root: str | Path, prep: Preprocess) -> None:
        self.source, self.prep = FolderSource(root, modality), prep

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Tensor | None:
        item = load_item(self.source, i, self.prep)
        if item["error"] is not None:
            warnings.warn(f"skipping undecodable file: {item['error']}", stacklevel=2)
        return item["x"]


def training_preprocess(modality: str, data: Mapping[str, Any], sample_rate: int,
                        channels: int | None = None) -> Preprocess:
    """The recipe's ``data`` section -> the fixed-size :class:`Preprocess` of a training item.

    Audio is mixed down to mono; ``channels`` (1 or 3) is the image/video tokenizer's input channels.
    """
    return Preprocess(modality, size=int(data["size"]) if modality != "audio" else None,
                      clip_seconds=float(data["seconds"]) if modality == "audio" else None,
                      num_frames=int(data["frames"]) if modality == "video" else None,
                      sample_rate=sample_rate if modality == "audio" else None,
                      channels=1 if modality == "audio" else channels)


def build_dataset(modality: str, data: Mapping[str, Any], split: str, sample_rate: int = 16000,
                  channels: int | None = None) -> Dataset:
    """The recipe's ``data`` section -> the dataset of ``split`` ("train" or "val").

    ``channels``: the image/video tokenizer's input channels (1 or 3; ``None`` gives RGB).
    """
    source = data["source"]
    if source == "samples":
        n = int(data["num_train"] if split == "train" else data["num_val"])
        return sample_dataset(modality, split, n, data, sample_rate, channels)
    if source == "folder":
        return FolderDataset(modality, _folder(data, split), training_preprocess(modality, data, sample_rate, channels))
    raise DataError(f"data.source must be 'samples' or 'folder', got {source!r}")


def _folder(data: Mapping[str, Any], split: str) -> str:
    """The folder of ``split``; without ``data.val_path`` the "val" split is the training folder (see metrics_kind)."""
    root = data["path"] if split == "train" else (data["val_path"] or data["path"])
    if not root:
        raise DataError("data.source=folder needs data.path (and optionally data.val_path)")
    return root


def dataset_fingerprint(modality: str, data: Mapping[str, Any], split: str, sample_rate: int = 16000,
                        channels: int | None = None) -> str:
    """The content hash (:func:`~fsqtok.data.data_fingerprint`) of :func:`build_dataset`'s data: a folder
    source's files, or the parameters that draw the built-in samples (and their module's source)."""
    if data["source"] == "folder":
        return data_fingerprint(_folder(data, split))
    from ..datasets import samples

    keys = ("sample_seed", "size") + {"audio": ("seconds",), "video": ("frames",)}.get(modality, ())
    params = {"samples": modality, "split": split, "n": data["num_train" if split == "train" else "num_val"],
              "sample_rate": sample_rate, "channels": channels, **{k: data[k] for k in keys}}
    return data_fingerprint(params, samples.__file__)


def metrics_kind(data: Mapping[str, Any]) -> str:
    """What a recipe's evaluation measures, as its metrics are labelled: ``"eval"`` on held-out items
    (a synthetic or sample source's val split, or ``data.val_path``); ``"train_set"`` for a folder
    source without ``data.val_path``, whose evaluation runs on the training items: never called eval."""
    return "train_set" if data["source"] == "folder" and not data.get("val_path") else "eval"


def split_sizes(data: Mapping[str, Any], n_train: int, n_val: int) -> str:
    """``"N train / M val"``, or ``"N train / no held-out"`` when the val split is the training items."""
    return f"{n_train} train / " + (f"{n_val} val" if metrics_kind(data) == "eval" else "no held-out")


def metrics_note(data: Mapping[str, Any]) -> str:
    """The log line that says a run has no held-out data (empty when it has)."""
    if metrics_kind(data) == "eval":
        return ""
    return ("no held-out data (data.val_path is not set): metrics are measured on the training items and "
            "logged as train_set, not eval; set data.val_path=FOLDER for held-out metrics")


def collate(items: Sequence[Tensor | dict[str, Any] | None]) -> dict[str, Any]:
    """Stack the decodable items; ``failed`` counts the ones that were skipped (``None``).

    Tensor items give ``{"x": (B, ...) or None, "failed"}``. Dict items (paired samples) give one
    entry per key: tensors stacked, anything else (keys, labels) as a list; plus ``failed``.
    """
    good = [x for x in items if x is not None]
    failed = len(items) - len(good)
    if not good or isinstance(good[0], Tensor):
        return {"x": torch.stack(good) if good else None, "failed": failed}
    out = {k: torch.stack([g[k] for g in good]) if isinstance(v, Tensor) else [g[k] for g in good]
           for k, v in good[0].items()}
    return {**out, "failed": failed}


class EpochSampler(Sampler[int]):
    """A seeded shuffle that depends only on ``(seed, epoch)``, so a resumed run sees the same order."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


class DecodeFailures:
    """Counts skipped files and raises :class:`DataError` once more than ``limit`` were skipped."""

    def __init__(self, limit: int) -> None:
        self.limit, self.count = limit, 0

    def add(self, n: int) -> None:
        self.count += n
        if self.count > self.limit:
            raise DataError(
                f"{self.count} data files failed to decode (limit data.max_decode_failures={self.limit}); "
                "fix or remove them, or raise the limit"
            )
