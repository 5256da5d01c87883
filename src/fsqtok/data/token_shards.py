"""Token shards as a source: reading the index shards that ``fsqtok tokenize`` writes, for training.

* :class:`ShardDataset`: map-style, random access. Columns are loaded once through pyarrow
  into numpy (the tokens stay in their small unsigned dtype: a million 16x16 grids at uint16
  are 512 MB); when every row has the same grid shape they form one ``(N, *shape)`` array
  (:meth:`ShardDataset.array`) and ``ds[i]`` is one row of it, else a slice of the flat values.
* :class:`ShardStream`: iterable, for distributed training. Each epoch the shard order is
  shuffled with ``(seed, epoch)``; the resulting global row stream is split across ranks (and
  DataLoader workers) by position, so every row is seen exactly once per epoch across all
  ranks and ranks differ by at most one row; each rank then shuffles within a buffer seeded by
  ``(seed, epoch, rank, worker)``.

Rows are ``{"key": str, "tokens": int64 tensor of the row's shape, "label": str | None}``, plus
``sample_rate`` / ``fps`` and ``duration`` for audio and video.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow.parquet as pq
import torch

MANIFEST_FILE = "manifest.json"


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of a finished shards output (a ``FileNotFoundError`` naming the folder otherwise)."""
    path = Path(out) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{out}: no {MANIFEST_FILE} (not a finished fsqtok shards output)")
    return json.loads(path.read_text())


def shard_files(out_dir: str | Path) -> list[Path]:
    """The shard files in manifest order."""
    out = Path(out_dir)
    return [out / s["name"] for s in read_manifest(out)["shards"]]


META_COLUMNS = ("sample_rate", "fps", "duration")


class _Shard:
    """One shard's columns as numpy: flat tokens, row offsets, shapes, keys, labels, rate/duration."""

    def __init__(self, path: Path) -> None:
        t = pq.read_table(path)
        tokens = t.column("tokens").combine_chunks()
        self.values = tokens.values.to_numpy(zero_copy_only=False)
        self.offsets = tokens.offsets.to_numpy().astype(np.int64)
        shape = t.column("shape").combine_chunks()
        sv, so = shape.values.to_numpy(zero_copy_only=False), shape.offsets.to_numpy()
        self.shapes = [tuple(int(v) for v in sv[so[i]:so[i + 1]]) for i in range(len(t))]
        self.keys = t.column("key").to_pylist()
        self.labels = t.column("label").to_pylist()
        self.meta = {c: t.column(c).to_pylist() for c in META_COLUMNS if c in t.column_names}

    def __len__(self) -> int:
        return len(self.keys)

    def row(self, i: int) -> dict[str, Any]:
        toks = torch.from_numpy(self.values[self.offsets[i]:self.offsets[i + 1]].astype(np.int64))
        row = {"key": self.keys[i], "tokens": toks.reshape(self.shapes[i]), "label": self.labels[i]}
        for c, v in self.meta.items():
            row[c] = v[i]
        return row


class ShardDataset(torch.utils.data.Dataset):
    """Random access to every row of an output folder, in sorted key order."""

    def __init__(self, out_dir: str | Path) -> None:
        self.manifest = read_manifest(out_dir)
        shards = [_Shard(p) for p in shard_files(out_dir)]
        self.values = np.concatenate([s.values for s in shards]) if shards else np.zeros(0, np.uint16)
        offsets, base = [np.zeros(1, np.int64)], 0
        for s in shards:
            offsets.append(s.offsets[1:] + base)
            base += int(s.offsets[-1])
        self.offsets = np.concatenate(offsets)
        self.shapes = [sh for s in shards for sh in s.shapes]
        self.keys: list[str] = [k for s in shards for k in s.keys]
        self.labels: list[str | None] = [lb for s in shards for lb in s.labels]
        self.meta = {c: [v for s in shards for v in s.meta.get(c, [])] for c in META_COLUMNS
                     if shards and c in shards[0].meta}
        self.codebook_size = int(self.manifest["tokenizer"]["codebook_size"])
        shapes = set(self.shapes)
        self._grid = self.values.reshape(len(self.keys), *shapes.pop()) if len(shapes) == 1 else None

    def __len__(self) -> int:
        return len(self.keys)

    def array(self) -> np.ndarray:
        """All tokens as one ``(N, *shape)`` array in the shards' unsigned dtype (rows must share one shape)."""
        if self._grid is None:
            raise ValueError(f"rows have {len(set(self.shapes))} different token shapes; index rows one by one")
        return self._grid

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} rows")
        if self._grid is not None:
            toks = torch.from_numpy(self._grid[i].astype(np.int64))
        else:
            toks = torch.from_numpy(self.values[self.offsets[i]:self.offsets[i + 1]].astype(np.int64))
            toks = toks.reshape(self.shapes[i])
        row = {"key": self.keys[i], "tokens": toks, "label": self.labels[i]}
        for c, v in self.meta.items():
            row[c] = v[i]
        return row


class ShardStream(torch.utils.data.IterableDataset):
    """Streams rows with deterministic shuffling per ``(seed, epoch, rank)``; call :meth:`set_epoch` each epoch.

    ``rank``/``world_size`` default to torch.distributed's when it is initialized, else 0/1.
    ``buffer_size`` rows are shuffled together (shards are read one at a time).
    """

    def __init__(self, out_dir: str | Path, seed: int = 0, shuffle: bool = True, rank: int | None = None,
                 world_size: int | None = None, buffer_size: int = 4096) -> None:
        self.files = shard_files(out_dir)
        self.rows_per_shard = [s["rows"] for s in read_manifest(out_dir)["shards"]]
        self.seed, self.shuffle, self.buffer_size = seed, shuffle, buffer_size
        self._rank, self._world = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rank_world(self) -> tuple[int, int]:
        rank, world = self._rank, self._world
        if rank is None or world is None:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            else:
                rank, world = 0, 1
        return rank, world

    def __len__(self) -> int:
        rank, world = self._rank_world()
        total = sum(self.rows_per_shard)
        return total // world + (1 if rank < total % world else 0)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world = self._rank_world()
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        slot, stride = rank * nw + wid, world * nw
        order = np.arange(len(self.files))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.files))
        rng = np.random.default_rng([self.seed, self.epoch, rank, wid, 1])
        buffer: list[dict[str, Any]] = []
        pos = 0  # global position of a shard's first row in this epoch's stream
        for s in order:
            n = self.rows_per_shard[s]
            first = (slot - pos) % stride  # first local row whose global position belongs to this slot
            pos += n
            if first >= n:
                continue
            shard = _Shard(self.files[s])
            for i in range(first, n, stride):
                row = shard.row(i)
                if not self.shuffle:
                    yield row
                    continue
                buffer.append(row)
                if len(buffer) >= self.buffer_size:
                    j = int(rng.integers(len(buffer)))
                    buffer[j], buffer[-1] = buffer[-1], buffer[j]
                    yield buffer.pop()
        if buffer:
            for j in rng.permutation(len(buffer)):
                yield buffer[j]
