"""A tokenization's settings (:class:`TokenizeJob`) and what follows from them: the source, the tokenizer
and the :class:`~fsqtok.data.Preprocess` (the tokenizer's modality, sample rate and input channels)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.folder import FolderSource
from ..data.hf import DATA_FORMATS, HFSource, StreamSource, detect_format
from ..data.preprocess import DataError, Preprocess


class JobError(ValueError):
    """A :class:`TokenizeJob` whose settings cannot work (the CLI exits 2 on it)."""


@dataclass(frozen=True)
class TokenizeJob:
    """One tokenization; the fields are ``fsqtok tokenize``'s flags (see ``fsqtok tokenize --help``)."""

    tokenizer: str  # saved tokenizer folder or Hub repo id
    data: str  # media folder, dataset folder or file, or Hub dataset name
    output: str | Path
    batch_size: int = 32
    shard_size: int = 1000
    num_workers: int = 2
    encoders: int | None = None  # CPU: batches encoded at once (default: one per torch thread)
    device: str | None = None  # default: accelerate's device for this process
    overwrite: bool = False
    data_format: str = "auto"
    labels: str | None = None  # files: "folder" or a CSV/JSONL sidecar
    column: str | None = None
    label_column: str | None = None
    split: str | None = None
    dataset_config: str | None = None
    streaming: bool = False
    cache_dir: str | None = None
    size: int | None = None
    clip_seconds: float | None = None
    num_frames: int | None = None
    fps: float | None = None

    def check(self) -> None:
        """Raise :class:`JobError` naming the first bad setting."""
        def flag(name: str) -> str:
            return "--" + name.replace("_", "-")

        for name in ("batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise JobError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise JobError(f"--num-workers must be >= 0, got {self.num_workers}")
        if self.encoders is not None and self.encoders < 1:
            raise JobError(f"--encoders must be >= 1, got {self.encoders}")
        for name in ("size", "num_frames"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise JobError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("clip_seconds", "fps"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise JobError(f"{flag(name)} must be > 0, got {v}")
        if self.data_format not in DATA_FORMATS:
            raise JobError(f"--data-format must be one of {', '.join(DATA_FORMATS)}, got {self.data_format!r}")
        if self.device is not None:
            try:
                torch.device(self.device)
            except RuntimeError:
                raise JobError(f"--device {self.device}: not a torch device (cpu, cuda, cuda:1, mps ...)") from None


def load_tokenizer(source: str):
    """The tokenizer of ``--tokenizer``; a path that looks local and does not exist is a :class:`JobError`."""
    from ..tokenizers import load_tokenizer

    if not Path(source).exists() and (source.startswith((".", "/", "~")) or source.count("/") != 1):
        raise JobError(f"--tokenizer {source}: no such folder, and not a Hub repo id of the form org/name")
    return load_tokenizer(source)


def open_source(job: TokenizeJob, modality: str) -> FolderSource | HFSource | StreamSource:
    """The job's source; settings that do not fit it are a :class:`JobError`."""
    fmt = job.data_format
    if fmt == "auto":
        try:
            fmt = detect_format(job.data, modality, exclude=job.output)
        except DataError as e:
            raise JobError(str(e)) from None
    elif fmt != "hub" and not Path(job.data).exists():
        raise JobError(f"--data {job.data}: no such file or folder")
    if fmt == "files":
        for name in ("column", "label_column", "split", "dataset_config"):
            if getattr(job, name) is not None:
                raise JobError(f"--{name.replace('_', '-')} is for datasets; {job.data} is read as media files")
        if job.streaming:
            raise JobError("--streaming is for datasets; a folder of media files is always read file by file")
        return FolderSource(job.data, modality, labels=job.labels, exclude=job.output)
    if job.labels is not None:
        raise JobError("--labels is for folders of media files; use --label-column with a dataset")
    if job.streaming and fmt == "disk":
        raise JobError("--streaming: a save_to_disk folder is memory-mapped already; drop --streaming")
    if job.dataset_config is not None and fmt != "hub":
        raise JobError("--dataset-config is for Hub datasets")
    path = job.data if fmt == "hub" else str(Path(job.data).resolve())
    spec = {"format": fmt, "path": path, "config": job.dataset_config, "split": job.split}
    cls = StreamSource if job.streaming else HFSource
    return cls(spec, modality, column=job.column, label_column=job.label_column, cache_dir=job.cache_dir)


def preprocess_for(tok: Any, job: TokenizeJob) -> Preprocess:
    """The job's :class:`Preprocess` for ``tok``: its modality, sample rate and input channels."""
    channels = None
    if tok.modality in ("image", "video"):
        channels = int(tok.config.in_channels)
        if channels not in (1, 3):
            raise JobError(f"--tokenizer {job.tokenizer}: takes {channels}-channel input; "
                           "media files give 1 (grey) or 3 (RGB) channels")
    return Preprocess(tok.modality, size=job.size, clip_seconds=job.clip_seconds, num_frames=job.num_frames,
                      fps=job.fps, sample_rate=tok.config.sample_rate if tok.modality == "audio" else None,
                      channels=channels)
