"""``tokenize(job)``: a dataset -> index shards, as a library function over a :class:`TokenizeJob`.

    from fsqtok.shards import TokenizeJob, tokenize
    summary = tokenize(TokenizeJob(tokenizer="runs/tok", data="photos/", output="shards/", size=256))

Shard ``i`` holds ``keys[i*shard_size:(i+1)*shard_size]`` of the source's key list (sorted
paths, or dataset row order); rank ``r`` of ``N`` writes the shards with ``i % N == r``; rank 0
writes ``manifest.json`` after a barrier. Batches never cross a shard boundary and rows are
sorted by key, so a shard's bytes do not depend on which rank wrote it, on the number of
decode workers or encoders or on whether the run was resumed. Running the same job again resumes: shards
whose Parquet file matches its sidecar's sha256 are kept, any other (partial, or changed since
it was written) is written again. A different tokenizer, source or selection (preprocessing,
shard size, batch size) is refused unless ``overwrite``; ``overwrite`` checks everything before
it deletes anything.

Sources and preprocessing: :mod:`fsqtok.data` (the same :class:`~fsqtok.data.Preprocess` as
training). Images and videos are read with the tokenizer's input channels (1 or 3). A token
outside ``[0, codebook_size)`` is never written: that sample is listed as failed. Decoding runs
in ``num_workers`` DataLoader worker processes (or, with none, in the calling thread); the encoders
run in threads of the main process (:mod:`fsqtok.shards.encoders`: on a CPU one single-threaded
encoder per torch thread unless ``encoders`` says otherwise), with denormal floats flushed to zero
on a CPU (silence and zero padding otherwise slow the audio encoder ~50x); Parquet writing and
checksums run in a background thread.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.preprocess import DataError
from .batches import map_batches, stream_batches
from .encoders import encode_in_order
from .job import JobError, TokenizeJob, load_tokenizer, open_source, preprocess_for
from .manifest import (build_manifest, check_output, check_reusable, prepare_output, run_record, tokenizer_identity,
                       write_manifest)
from ..files import temporary_path
from .writer import DATA_DIR, META_DIR, complete_shards, shard_paths, token_dtype, write_shard


class _Wanted:
    """Picklable predicate: is shard ``i`` this rank's, and not complete when the run started?"""

    def __init__(self, rank: int, world: int, complete: set[int]) -> None:
        self.rank, self.world, self.complete = rank, world, frozenset(complete)

    def __call__(self, i: int) -> bool:
        return i % self.world == self.rank and i not in self.complete


def _clear_partial(out: Path, i: int) -> None:
    """Leftovers of shard ``i`` (a Parquet file without a matching sidecar, temporary files)."""
    for p in shard_paths(out, i):
        for q in (p, temporary_path(p)):
            if q.exists():
                q.unlink()


def _process_state(job: TokenizeJob) -> Any:
    """accelerate's ``PartialState`` for this run; a CPU run asks for the CPU explicitly (else accelerate
    sets up one process), and a launch it did not set up is refused."""
    from accelerate import PartialState

    cpu = (os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
           or (job.device or "").startswith("cpu") or not torch.cuda.is_available())
    state = PartialState(cpu=cpu)
    if state.num_processes == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError(f"launched as {os.environ['WORLD_SIZE']} processes but accelerate set up 1; "
                           "for CPU runs set ACCELERATE_USE_CPU=true")
    return state


def _write_batches(batches: Any, tok: Any, out: Path, dtype: np.dtype, device: torch.device,
                   encoders: int | None, stats: dict[str, float]) -> dict[str, int]:
    """Encode ``(shard, batch)`` pairs (in shard order, :func:`encode_in_order`) and write each shard
    once its last batch is in; Parquet writing overlaps the encoding of the next shards. Returns the
    shards, rows and tokens written; adds the encoders' time and samples to ``stats``."""
    pool = ThreadPoolExecutor(1)
    futures = []
    counts = {"shards_written": 0, "rows_written": 0, "tokens_written": 0}

    def flush(shard: int, rows: list[dict[str, Any]], failures: list[dict[str, str]]) -> None:
        counts["rows_written"] += len(rows)
        counts["tokens_written"] += sum(int(r["tokens"].size) for r in rows)
        rows.sort(key=lambda row: row["key"])
        failures.sort(key=lambda row: row["key"])
        _clear_partial(out, shard)
        futures.append(pool.submit(write_shard, out, shard, rows, failures, dtype, tok.modality))
        counts["shards_written"] += 1

    current, rows, failures = None, [], []
    encoded = encode_in_order(batches, tok, device, dtype, encoders)
    try:
        for shard, r, f, batch_stats in encoded:
            if current is not None and shard != current:
                if shard < current:
                    raise RuntimeError(f"internal: batches out of order (shard {shard} after {current})")
                flush(current, rows, failures)
                rows, failures = [], []
            current = shard
            rows += r
            failures += f
            for k, v in batch_stats.items():
                stats[k] += v
        if current is not None:
            flush(current, rows, failures)
        for fut in futures:
            fut.result()
    finally:
        encoded.close()
        pool.shutdown(wait=True)
    return counts


def _finish(state: Any, out: Path, record: dict[str, Any], n: int, size: int, dtype: np.dtype,
            local: dict[str, float], elapsed: float) -> dict[str, Any]:
    """Sum every rank's counts; rank 0 clears leftovers and writes the manifest; every rank gets the totals."""
    from accelerate.utils import gather_object

    rank, world = state.process_index, state.num_processes
    per_rank = gather_object([local]) if world > 1 else [local]
    summary: dict[str, Any] = {"rank": rank, "world_size": world, "elapsed_s": elapsed,
                               **{k: sum(r[k] for r in per_rank) for k in local}}
    totals = None
    if state.is_main_process:
        for leftover in [*out.glob(f"{DATA_DIR}/.*.tmp"), *out.glob(f"{META_DIR}/.*.tmp")]:
            leftover.unlink()  # temp files of shards past the end (a crash at the very end)
        manifest = build_manifest(out, record, math.ceil(n / size), n, dtype.name)
        write_manifest(out, manifest)
        totals = {**manifest["totals"],
                  "first_failure": manifest["failures"][0]["reason"] if manifest["failures"] else None}
    summary.update(gather_object([totals])[0] if world > 1 else totals)  # every rank gets rank 0's totals
    state.wait_for_everyone()
    return summary


def tokenize(job: TokenizeJob) -> dict[str, Any]:
    """Run (or resume) one tokenization; returns the summary (rows, failed, shards, throughput...).

    Raises :class:`JobError` for settings that cannot work, :class:`~fsqtok.data.DataError` for a
    source that cannot be used, and :class:`~fsqtok.shards.manifest.OutputMismatch` for an output
    folder that holds something else.
    """
    job.check()
    state = _process_state(job)
    rank, world = state.process_index, state.num_processes
    device = torch.device(job.device) if job.device else state.device
    if device.type != "cpu" and (job.encoders or 1) > 1:
        raise JobError(f"--encoders {job.encoders}: only CPU runs encode several batches at once; this one runs on "
                       f"{device}; leave --encoders out")
    tok = load_tokenizer(job.tokenizer).to(device).eval()
    prep = preprocess_for(tok, job)
    source = open_source(job, tok.modality)
    dtype = token_dtype(tok.codebook_size)
    selection = {"preprocess": prep.to_dict(), "shard_size": job.shard_size, "batch_size": job.batch_size}
    record = run_record(tokenizer_identity(tok, job.tokenizer), source.describe(), selection)
    out = Path(job.output)

    check_reusable(out, record, job.overwrite)  # every rank, read-only: a refusal never leaves a rank waiting
    state.wait_for_everyone()
    if state.is_main_process:
        prepare_output(out, record, job.overwrite)
    state.wait_for_everyone()
    check_output(out, record)

    size = job.shard_size
    wanted = _Wanted(rank, world, complete_shards(out))
    stats: dict[str, float] = {"encode_s": 0.0, "encoded": 0}
    seen: dict[str, int] = {}
    if source.keys is not None:
        n = len(source.keys)
        todo = [i for i in range(math.ceil(n / size)) if wanted(i)]
        batches = map_batches(source, prep, todo, size, job.batch_size, job.num_workers, device)
    else:
        batches = stream_batches(source, prep, wanted, size, job.batch_size, job.num_workers, device, seen)
    state.wait_for_everyone()
    t_start = time.perf_counter()
    counts = _write_batches(batches, tok, out, dtype, device, job.encoders, stats)
    if source.keys is None:
        n = seen.get("rows", 0)
        if n == 0:
            raise DataError(f"--data {job.data}: the stream has no rows")
    state.wait_for_everyone()
    elapsed = time.perf_counter() - t_start
    mine = sum(1 for i in range(math.ceil(n / size)) if i % world == rank)
    local = {"shards_written": counts["shards_written"], "shards_skipped": mine - counts["shards_written"],
             "rows_written": counts["rows_written"], "tokens_written": counts["tokens_written"], **stats}
    return _finish(state, out, record, n, size, dtype, local, elapsed)


def write_token_shards(out: str | Path, tokens: torch.Tensor, labels: Sequence[str], tokenizer: dict[str, Any],
                       source: dict[str, Any], shard_size: int = 1000) -> dict[str, Any]:
    """Write given tokens (e.g. a generative model's samples) as a shards output (manifest.json, data/*.parquet).

    Args:
        out: a new or empty folder. tokens: int64 ``(B, h, w)``. labels: a label string per row.
        tokenizer: the tokenizer identity (:func:`fsqtok.shards.manifest.tokenizer_identity`).
        source: what made the tokens (model path and sampling settings), recorded in run.json.
    Returns:
        the manifest.
    """
    out = Path(out)
    dtype = token_dtype(tokenizer["codebook_size"])
    record = run_record(tokenizer, source, {"shard_size": shard_size})
    prepare_output(out, record, overwrite=False)
    array = tokens.cpu().numpy()
    width = len(str(max(0, len(array) - 1)))
    rows = [{"key": f"sample-{i:0{width}d}", "tokens": array[i].astype(dtype), "label": labels[i]}
            for i in range(len(array))]
    num_shards = max(1, -(-len(rows) // shard_size))
    for s in range(num_shards):
        write_shard(out, s, rows[s * shard_size:(s + 1) * shard_size], [], dtype, tokenizer["modality"])
    manifest = build_manifest(out, record, num_shards, len(rows), dtype.name)
    write_manifest(out, manifest)
    return manifest
