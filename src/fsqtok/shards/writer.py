"""Writing one index shard: Parquet rows + a JSON sidecar, each to a temporary name, then renamed.

Layout under ``OUT``::

    OUT/run.json                       the run's identity (written first; checked on every re-run)
    OUT/manifest.json                  written last, by rank 0, once every shard is complete
    OUT/data/train-00000.parquet       shard 0: rows (key, tokens, shape, label[, sample_rate|fps, duration])
    OUT/meta/shard-00000.json          shard 0's sidecar: rows, sha256, failures

Shards are named ``train-*`` and sidecars live outside ``data/`` so that
``datasets.load_dataset("parquet", data_dir=OUT)`` finds exactly the shards (as its train
split; it matches split names in file names). Temporary files are hidden
(``data/.train-00000.parquet.tmp``), which ``datasets`` also ignores.

A shard is complete only when both its Parquet file and its sidecar exist under their final
names (the Parquet file is renamed first). Bytes are deterministic: fixed writer options, no
timestamps, one row group, so a resumed run is byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..files import atomic_path, atomic_write_bytes, sha256_file

DATA_DIR = "data"
META_DIR = "meta"
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, use_dictionary=["key", "label"],
                       write_statistics=["key"], version="2.6", data_page_version="1.0")


def token_dtype(codebook_size: int) -> np.dtype:
    """The smallest unsigned dtype holding indices ``0 .. codebook_size - 1``."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if codebook_size - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def shard_paths(out: Path, i: int) -> tuple[Path, Path]:
    """``(OUT/data/train-{i:05d}.parquet, OUT/meta/shard-{i:05d}.json)``."""
    return Path(out) / DATA_DIR / f"train-{i:05d}.parquet", Path(out) / META_DIR / f"shard-{i:05d}.json"


def shard_complete(out: Path, i: int) -> bool:
    """Shard ``i``'s Parquet file and sidecar are both in place (see :func:`shard_intact` for their bytes)."""
    pq_path, js_path = shard_paths(out, i)
    return pq_path.is_file() and js_path.is_file()


def shard_intact(out: Path, i: int) -> bool:
    """Complete, and the Parquet file still has the sha256 its sidecar recorded when it was written."""
    if not shard_complete(out, i):
        return False
    try:
        recorded = read_sidecar(out, i)["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return sha256_file(shard_paths(out, i)[0]) == recorded


def complete_shards(out: Path) -> set[int]:
    """Indices of the shards of ``out`` that are intact (:func:`shard_intact`); a resume rewrites the others."""
    meta = Path(out) / META_DIR
    found = set()
    for p in meta.glob("shard-*.json") if meta.is_dir() else []:
        stem = p.stem.removeprefix("shard-")
        if stem.isdigit() and shard_intact(out, int(stem)):
            found.add(int(stem))
    return found


def schema(dtype: np.dtype, modality: str) -> pa.Schema:
    fields = [
        pa.field("key", pa.string(), nullable=False),
        pa.field("tokens", pa.list_(pa.from_numpy_dtype(dtype)), nullable=False),
        pa.field("shape", pa.list_(pa.int32()), nullable=False),
        pa.field("label", pa.string()),
    ]
    if modality == "audio":
        fields += [pa.field("sample_rate", pa.int32()), pa.field("duration", pa.float64())]
    elif modality == "video":
        fields += [pa.field("fps", pa.float64()), pa.field("duration", pa.float64())]
    return pa.schema(fields)


def build_table(rows: list[dict[str, Any]], dtype: np.dtype, modality: str) -> pa.Table:
    """Rows ``{"key", "tokens" (numpy int array, any shape), "label", meta...}`` -> a Table."""
    sch = schema(dtype, modality)
    flat = [np.ascontiguousarray(r["tokens"]).reshape(-1) for r in rows]
    lengths = np.array([len(f) for f in flat], dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(flat) if flat else np.zeros(0, dtype)
    if values.size and (int(values.min()) < 0 or int(values.max()) > np.iinfo(dtype).max):
        raise ValueError(f"tokens {int(values.min())}..{int(values.max())} do not fit {dtype.name}; "
                         "refusing to write wrapped-around tokens")
    values = values.astype(dtype)
    tokens = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values))
    cols = {
        "key": pa.array([r["key"] for r in rows], pa.string()),
        "tokens": tokens,
        "shape": pa.array([list(np.shape(r["tokens"])) for r in rows], pa.list_(pa.int32())),
        "label": pa.array([r.get("label") for r in rows], pa.string()),
    }
    for name in sch.names[4:]:
        cols[name] = pa.array([r.get(name) for r in rows], sch.field(name).type)
    return pa.table([cols[n] for n in sch.names], schema=sch)


def atomic_write_json(path: Path, obj: Any) -> None:
    """``obj`` as sorted, indented JSON, flushed to disk and renamed into place."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), fsync=True)


def write_shard(out: Path, i: int, rows: list[dict[str, Any]], failures: list[dict[str, str]],
                dtype: np.dtype, modality: str) -> dict[str, Any]:
    """Write shard ``i`` (Parquet tmp -> rename, then sidecar tmp -> rename); returns the sidecar record."""
    pq_path, js_path = shard_paths(out, i)
    pq_path.parent.mkdir(parents=True, exist_ok=True)
    table = build_table(rows, dtype, modality)
    with atomic_path(pq_path, fsync=True) as tmp:
        pq.write_table(table, tmp, row_group_size=max(1, len(rows)), **PARQUET_OPTIONS)
        digest = sha256_file(tmp)
    record = {
        "name": f"{DATA_DIR}/{pq_path.name}",
        "index": i,
        "rows": len(rows),
        "tokens": int(sum(int(np.size(r["tokens"])) for r in rows)),
        "sha256": digest,
        "first_key": rows[0]["key"] if rows else None,
        "last_key": rows[-1]["key"] if rows else None,
        "failures": failures,
    }
    atomic_write_json(js_path, record)
    return record


def read_sidecar(out: Path, i: int) -> dict[str, Any]:
    return json.loads(shard_paths(out, i)[1].read_text())
