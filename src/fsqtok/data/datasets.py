"""Datasets for the training recipe and scripts/evaluate.py: built-in samples or a folder of files.

Every item is one tensor in its tokenizer's convention (image ``(3, S, S)`` in [-1, 1], depth
``(1, S, S)`` in metres, audio ``(1, N)`` at the tokenizer's rate, video ``(3, T, S, S)`` in [-1, 1]).

A folder file that fails to decode gives ``None`` instead of raising; :func:`collate` drops it
and counts it, so a run can skip broken files up to a limit (:class:`DecodeFailures`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Sampler, TensorDataset

EXTENSIONS = {
    "image": (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"),
    "depth": (".npy", ".png"),  # .npy metres, 16-bit PNG millimetres
    "audio": (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus"),
    "video": (".mp4", ".webm", ".avi", ".mkv", ".mov"),
}


class DataError(RuntimeError):
    """A data source that cannot be used at all (missing folder, no files, too many broken files)."""


class SampleTensors(TensorDataset):
    """Built-in sample tensors; items are single tensors rather than 1-tuples."""

    def __getitem__(self, i: int) -> Tensor:
        return self.tensors[0][i]


def sample_dataset(modality: str, split: str, n: int, data: Mapping[str, Any], sample_rate: int) -> SampleTensors:
    """``n`` built-in real samples (see :mod:`fsqtok.data.samples`); ``split`` is "train" or "val"."""
    from ..data import samples

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
    return SampleTensors(torch.as_tensor(x).float())


def _fit_spatial(x: Tensor, size: int) -> Tensor:
    """Resize the short side to ``size`` and center-crop to ``size x size`` (last two axes)."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    lead = x.shape[:-2]
    y = x.reshape(-1, 1, h, w)
    y = F.interpolate(y, size=(nh, nw), mode="area" if scale < 1 else "bilinear", align_corners=None if scale < 1 else False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return y[..., top : top + size, left : left + size].reshape(*lead, size, size)


class FolderDataset(Dataset):
    """Media files under ``root`` (recursively), decoded with :mod:`fsqtok.media` and fitted to a fixed size.

    ``__getitem__`` returns ``None`` for a file that fails to decode (the recipe counts these).
    """

    def __init__(self, modality: str, root: str | Path, data: Mapping[str, Any], sample_rate: int) -> None:
        self.modality, self.root = modality, Path(root)
        if not self.root.is_dir():
            raise DataError(f"data folder not found: {self.root}")
        exts = EXTENSIONS[modality]
        self.files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        if not self.files:
            raise DataError(f"{self.root}: no {modality} files ({', '.join(exts)})")
        self.size = int(data["size"])
        self.frames = int(data["frames"])
        self.num_samples = int(round(float(data["seconds"]) * sample_rate))
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor | None:
        path = self.files[i]
        try:
            return self._load(path)
        except Exception as e:  # noqa: BLE001 - any decode failure is skipped and counted
            warnings.warn(f"skipping undecodable file {path}: {type(e).__name__}: {e}", stacklevel=2)
            return None

    def _load(self, path: Path) -> Tensor:
        from .. import media

        if self.modality == "image":
            x = torch.as_tensor(media.read_image(path)).float()  # (3, H, W) in [-1, 1]
            return _fit_spatial(x, self.size).clamp(-1, 1)
        if self.modality == "depth":
            d = media.read_depth(path)  # (1, H, W) metres, NaN where invalid
            return F.interpolate(d[None], size=(self.size, self.size), mode="nearest")[0]
        if self.modality == "audio":
            wav = media.read_audio(path, sample_rate=self.sample_rate)
            wav = torch.as_tensor(wav[0] if isinstance(wav, tuple) else wav).float()
            wav = wav.reshape(-1, wav.shape[-1]).mean(0, keepdim=True)  # mono
            n = self.num_samples
            return F.pad(wav, (0, max(0, n - wav.shape[-1])))[:, :n]
        if self.modality == "video":
            v = media.read_video(path, num_frames=self.frames)
            v = torch.as_tensor(v[0] if isinstance(v, tuple) else v).float()  # (3, T, H, W)
            if v.shape[1] < self.frames:
                v = torch.cat([v, v[:, -1:].expand(-1, self.frames - v.shape[1], -1, -1)], 1)
            return _fit_spatial(v[:, : self.frames], self.size).clamp(-1, 1)
        raise DataError(f"unknown modality {self.modality!r}")


def build_dataset(modality: str, data: Mapping[str, Any], split: str, sample_rate: int = 16000) -> Dataset:
    """The recipe's ``data`` section -> the dataset of ``split`` ("train" or "val")."""
    source = data["source"]
    if source == "samples":
        n = int(data["num_train"] if split == "train" else data["num_val"])
        return sample_dataset(modality, split, n, data, sample_rate)
    if source == "folder":
        root = data["path"] if split == "train" else (data["val_path"] or data["path"])
        if not root:
            raise DataError("data.source=folder needs data.path (and optionally data.val_path)")
        return FolderDataset(modality, root, data, sample_rate)
    raise DataError(f"data.source must be 'samples' or 'folder', got {source!r}")


def collate(items: Sequence[Tensor | None]) -> dict[str, Any]:
    """Stack the decodable items; ``failed`` counts the ones that were skipped."""
    good = [x for x in items if x is not None]
    return {"x": torch.stack(good) if good else None, "failed": len(items) - len(good)}


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
