"""``fsqtok tokenize`` / ``scripts/tokenize_dataset.py``: a dataset -> index shards.

    fsqtok tokenize --tokenizer T --data SOURCE --output OUT [--batch-size 32] [--shard-size 1000]
                    [--num-workers 2] [--size S] [--clip-seconds S] [--num-frames N] [--fps F]
                    [--labels folder|FILE] [--data-format auto|files|disk|parquet|arrow|imagefolder|
                    audiofolder|hub] [--streaming] [--column C] [--label-column C] [--split S]
                    [--dataset-config NAME] [--cache-dir DIR] [--device D] [--overwrite] [--quiet]

    accelerate launch scripts/tokenize_dataset.py ...same flags...

Shard ``i`` holds ``keys[i*shard_size:(i+1)*shard_size]`` of the source's key list (sorted
paths, or dataset row order); rank ``r`` of ``N`` writes the shards with ``i % N == r``; rank 0
writes ``manifest.json`` after a barrier. Batches never cross a shard boundary and rows are
sorted by key, so a shard's bytes do not depend on which rank wrote it, on the number of
decode workers or on whether the run was resumed. Re-running the same command resumes
(complete shards are skipped); a different tokenizer, source or selection (preprocessing,
shard size, batch size) is refused unless ``--overwrite``.

Sources and input sizes: see :mod:`fsqtok.shards.sources`. Decoding runs in ``--num-workers``
DataLoader worker processes, which stack equal-shaped samples before handing a batch over;
Parquet writing and checksums run in a background thread; the encoder runs in the main
process. On CPU the workers run niced (they must not preempt the encoder's threads) and
denormal floats are flushed to zero while encoding (silence and zero padding otherwise slow
the audio encoder ~50x). The summary line reports rows, failures and throughput.

Environment: ``FSQTOK_SHARDS_CRASH_AFTER=k`` makes each process exit abruptly (``os._exit``)
after writing ``k`` shards, leaving a partial temporary file behind; tests use it to simulate a crash.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..cli_support import OneLineParser, UsageError, exit_process, run_command
from .manifest import (OutputMismatch, build_manifest, check_output, differences, prepare_output, run_record,
                       tokenizer_identity, write_manifest, RUN_FILE)
from .sources import (DATA_FORMATS, FolderSource, HFSource, Preprocess, SampleDataset, SourceError, StreamBatches,
                      StreamSource, collate_keep, detect_format, group_batch, worker_init)
from .writer import DATA_DIR, META_DIR, complete_shards, shard_paths, tmp_path, token_dtype, write_shard

CRASH_ENV = "FSQTOK_SHARDS_CRASH_AFTER"


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``fsqtok tokenize`` and ``scripts/tokenize_dataset.py`` (one parser for both)."""
    p = OneLineParser(prog="fsqtok tokenize", description="Tokenize a dataset into Parquet index shards "
                "(resumable: re-run the same command to continue).")
    p.add_argument("--tokenizer", "-t", required=True, help="saved tokenizer folder or Hub repo id")
    p.add_argument("--data", required=True,
                   help="a folder of media files, a dataset folder (save_to_disk, Parquet, Arrow), "
                        "a .parquet/.arrow file, or a Hub dataset name (see --data-format)")
    p.add_argument("--output", "-o", required=True,
                   help="output folder (manifest.json, run.json, data/train-*.parquet, meta/shard-*.json)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per encoder call (default 32)")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader decode workers (default 2; 0 = in-process)")
    p.add_argument("--device", default=None, help="torch device (default: accelerate's device for this process)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    g = p.add_argument_group("source selection")
    g.add_argument("--data-format", choices=DATA_FORMATS, default="auto",
                   help="how to read --data (default auto: save_to_disk folder -> disk, folder of media -> files, "
                        "folder/file of .parquet/.arrow -> parquet/arrow, org/name -> hub)")
    g.add_argument("--labels", default=None,
                   help="files: 'folder' (first sub-folder name) or a CSV/JSONL file with key (or file_name) and label")
    g.add_argument("--column", default=None,
                   help="dataset: the media column (default: the first Image/Audio/Video column, else array column)")
    g.add_argument("--label-column", default=None, help="dataset: the label column (ClassLabel ids become names)")
    g.add_argument("--split", default=None, help="dataset: the split (default train, or the only one)")
    g.add_argument("--dataset-config", default=None, help="hub: the dataset's configuration name")
    g.add_argument("--streaming", action="store_true",
                   help="dataset read with load_dataset (parquet/arrow/imagefolder/audiofolder/hub): stream it "
                        "instead of building a local Arrow cache first")
    g.add_argument("--cache-dir", default=None, help="dataset: datasets' cache folder (default: HF_DATASETS_CACHE)")
    g = p.add_argument_group("fixed-size inputs (equal shapes are batched together; others one shape at a time)")
    g.add_argument("--size", type=int, default=None,
                   help="image/depth/video: resize short side and center-crop to SIZE x SIZE "
                        "(default: keep each sample's size)")
    g.add_argument("--clip-seconds", type=float, default=None,
                   help="audio: keep the first S seconds, zero-pad shorter files (default: whole file)")
    g.add_argument("--num-frames", type=int, default=None, help="video: read at most N frames")
    g.add_argument("--fps", type=float, default=None, help="video: sample frames at this rate")
    return p


def _check_args(args: argparse.Namespace) -> None:
    for name in ("batch_size", "shard_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_workers < 0:
        raise UsageError(f"--num-workers must be >= 0, got {args.num_workers}")
    for name in ("size", "num_frames"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    for name in ("clip_seconds", "fps"):
        v = getattr(args, name)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UsageError(f"--{name.replace('_', '-')} must be > 0, got {v}")


def _load_tokenizer(source: str):
    from ..tokenizers import load_tokenizer

    if not Path(source).exists() and (source.startswith((".", "/", "~")) or source.count("/") != 1):
        raise UsageError(f"--tokenizer {source}: no such folder, and not a Hub repo id of the form org/name")
    return load_tokenizer(source)


def _open_source(args: argparse.Namespace, modality: str):
    fmt = args.data_format
    if fmt == "auto":
        try:
            fmt = detect_format(args.data, modality, exclude=args.output)
        except SourceError as e:
            raise UsageError(str(e)) from None
    elif fmt != "hub" and not Path(args.data).exists():
        raise UsageError(f"--data {args.data}: no such file or folder")
    if fmt == "files":
        for flag in ("column", "label_column", "split", "dataset_config"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag.replace('_', '-')} is for datasets; {args.data} is read as media files")
        if args.streaming:
            raise UsageError("--streaming is for datasets; a folder of media files is always read file by file")
        return FolderSource(args.data, modality, labels=args.labels, exclude=args.output)
    if args.labels is not None:
        raise UsageError("--labels is for folders of media files; use --label-column with a dataset")
    if args.streaming and fmt == "disk":
        raise UsageError("--streaming: a save_to_disk folder is memory-mapped already; drop --streaming")
    if args.dataset_config is not None and fmt != "hub":
        raise UsageError("--dataset-config is for Hub datasets")
    path = args.data if fmt == "hub" else str(Path(args.data).resolve())
    spec = {"format": fmt, "path": path, "config": args.dataset_config, "split": args.split}
    cls = StreamSource if args.streaming else HFSource
    return cls(spec, modality, column=args.column, label_column=args.label_column, cache_dir=args.cache_dir)


def _encode_batch(tok, batch: dict[str, Any], device: torch.device, dtype: np.dtype,
                  stats: dict[str, float]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Encode one batch (:func:`group_batch`: stacked groups of equal shape); returns rows and failures."""
    items = batch["items"]
    rows, failures = [], []
    for it in items:
        if it["error"] is not None:
            failures.append({"key": it["key"], "reason": it["error"]})
    for positions, x in batch["groups"]:
        try:
            encoded = list(zip(positions, _encode(tok, x, device, stats)))
        except (RuntimeError, ValueError) as e:  # fall back to one sample at a time to isolate the bad one
            encoded = []
            for j, pos in enumerate(positions):
                try:
                    encoded.append((pos, _encode(tok, x[j:j + 1], device, stats)[0]))
                except (RuntimeError, ValueError) as e1:
                    key = items[pos]["key"]
                    failures.append({"key": key, "reason": f"{key}: encode failed: "
                                     f"{' '.join(str(e1).split()) or type(e).__name__}"})
        for pos, tokens in encoded:
            it = items[pos]
            rows.append({"key": it["key"], "tokens": tokens.astype(dtype), "label": it["label"], **it["meta"]})
    return rows, failures


def _encode(tok, x: torch.Tensor, device: torch.device, stats: dict[str, float]) -> np.ndarray:
    t0 = time.perf_counter()
    with torch.inference_mode():
        idx = tok.encode(x.to(device, non_blocking=True))
    out = idx.cpu().numpy()
    stats["encode_s"] += time.perf_counter() - t0
    stats["encoded"] += x.shape[0]
    return out


def _loader_kwargs(args: argparse.Namespace, device: torch.device, collate) -> dict[str, Any]:
    kw: dict[str, Any] = {"collate_fn": collate, "num_workers": args.num_workers,
                          "pin_memory": device.type == "cuda"}
    if args.num_workers:
        # CPU: workers run niced so they never preempt the encoder's threads (see worker_init);
        # CUDA: spawned workers, since a forked process must not touch the parent's CUDA context
        cpu = device.type == "cpu"
        kw.update(worker_init_fn=functools.partial(worker_init, niceness=10 if cpu else 0), prefetch_factor=4,
                  multiprocessing_context=None if cpu else "spawn")
    return kw


def _map_batches(source, prep: Preprocess, todo: list[int], n: int, args: argparse.Namespace,
                 device: torch.device) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """``(shard, items)`` for the shards in ``todo``; batches never cross a shard boundary."""
    size = args.shard_size
    batches, batch_shard = [], []
    for i in todo:
        lo, hi = i * size, min(n, (i + 1) * size)
        for b in range(lo, hi, args.batch_size):
            batches.append(list(range(b, min(hi, b + args.batch_size))))
            batch_shard.append(i)
    if not batches:
        return
    loader = torch.utils.data.DataLoader(SampleDataset(source, prep), batch_sampler=batches,
                                         **_loader_kwargs(args, device, group_batch))
    yield from zip(batch_shard, loader)


def _stream_batches(source: StreamSource, prep: Preprocess, wanted, args: argparse.Namespace,
                    device: torch.device, seen: dict[str, int]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """``(shard, items)`` from a stream; ``seen["rows"]`` holds the stream's length once it ended."""
    ds = StreamBatches(source, prep, args.shard_size, args.batch_size, wanted)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, **_loader_kwargs(args, device, collate_keep))
    for msg in loader:
        if "end" in msg:
            seen["rows"] = max(seen.get("rows", 0), int(msg["end"]))
        else:
            yield msg["shard"], msg


def _clear_partial(out: Path, i: int) -> None:
    """Leftovers of an interrupted run for shard ``i`` (a Parquet file without its sidecar, temp files)."""
    for p in shard_paths(out, i):
        for q in (p, tmp_path(p)):
            if q.exists():
                q.unlink()


def tokenize(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) one tokenization; returns a summary dict. Raises on bad input."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    _check_args(args)
    # accelerate only sets up multi-process CPU runs when asked for the CPU explicitly
    cpu = (os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
           or (args.device or "").startswith("cpu") or not torch.cuda.is_available())
    state = PartialState(cpu=cpu)
    rank, world = state.process_index, state.num_processes
    if world == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError(f"launched as {os.environ['WORLD_SIZE']} processes but accelerate set up 1; "
                           "for CPU runs set ACCELERATE_USE_CPU=true")
    tok = _load_tokenizer(args.tokenizer)
    device = torch.device(args.device) if args.device else state.device
    tok = tok.to(device).eval()
    source = _open_source(args, tok.modality)
    prep = Preprocess(tok.modality, size=args.size, clip_seconds=args.clip_seconds, num_frames=args.num_frames,
                      fps=args.fps, sample_rate=getattr(tok.config, "sample_rate", None) if tok.modality == "audio" else None)
    dtype = token_dtype(tok.codebook_size)
    selection = {"preprocess": prep.to_dict(), "shard_size": args.shard_size, "batch_size": args.batch_size}
    record = run_record(tokenizer_identity(tok, args.tokenizer), source.describe(), selection)
    out = Path(args.output)

    # every rank checks (read-only) before anyone writes, so a refusal never leaves a rank waiting
    if not args.overwrite:
        run_path = out / RUN_FILE
        if run_path.is_file():
            diffs = differences(json.loads(run_path.read_text()), record)
            if diffs:
                raise OutputMismatch(f"--output {out}: holds shards made with a different {'; '.join(diffs)}; "
                                     "use another --output or --overwrite to replace them")
        elif out.is_dir() and any(out.iterdir()):
            raise OutputMismatch(f"--output {out}: not empty and not an fsqtok shards output; "
                                 "use another --output or --overwrite")
    state.wait_for_everyone()
    if state.is_main_process:
        prepare_output(out, record, args.overwrite)
    state.wait_for_everyone()
    check_output(out, record)

    # shard i = keys [i*size, (i+1)*size); rank r writes shards i % world == r not complete at the start
    size = args.shard_size
    wanted = _Wanted(rank, world, complete_shards(out))
    stats: dict[str, float] = {"encode_s": 0.0, "encoded": 0}
    seen: dict[str, int] = {}
    if source.keys is not None:
        n = len(source.keys)
        todo = [i for i in range(math.ceil(n / size)) if wanted(i)]
        batches = _map_batches(source, prep, todo, n, args, device)
    else:
        batches = _stream_batches(source, prep, wanted, args, device, seen)

    crash_after = int(os.environ.get(CRASH_ENV, "0") or 0)
    pool = ThreadPoolExecutor(1)  # Parquet writing overlaps the next shard's encoding
    futures = []
    written, rows_written, tokens_written = 0, 0, 0
    state.wait_for_everyone()
    t_start = time.perf_counter()

    def flush(shard: int, rows: list[dict[str, Any]], failures: list[dict[str, str]]) -> None:
        nonlocal written, rows_written, tokens_written
        rows_written += len(rows)
        tokens_written += sum(int(r["tokens"].size) for r in rows)
        rows.sort(key=lambda row: row["key"])
        failures.sort(key=lambda row: row["key"])
        _clear_partial(out, shard)
        futures.append(pool.submit(write_shard, out, shard, rows, failures, dtype, tok.modality))
        written += 1
        if crash_after and written >= crash_after:  # simulated kill -9 (tests)
            for fut in futures:
                fut.result()
            nxt = shard_paths(out, shard + world)[0]
            if nxt.parent.is_dir():  # a half-written shard, as a kill -9 would leave
                tmp_path(nxt).write_bytes(b"PAR1 partial")
            sys.stdout.flush()
            os._exit(3)

    current, rows, failures = None, [], []
    # CPU: flush denormal floats to zero while encoding; silence and zero padding otherwise
    # produce denormals deep in the conv stacks and run ~50x slower (tokens are unaffected
    # unless a value sits within 1e-38 of a rounding boundary)
    flush_denormal = device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        for shard, batch in batches:
            if current is not None and shard != current:
                if shard < current:
                    raise RuntimeError(f"internal: batches out of order (shard {shard} after {current})")
                flush(current, rows, failures)
                rows, failures = [], []
            current = shard
            r, f = _encode_batch(tok, batch, device, dtype, stats)
            rows += r
            failures += f
        if current is not None:
            flush(current, rows, failures)
        for fut in futures:
            fut.result()
    finally:
        pool.shutdown(wait=True)
        if flush_denormal:
            torch.set_flush_denormal(False)
    if source.keys is None:
        n = seen.get("rows", 0)
        if n == 0:
            raise SourceError(f"--data {args.data}: the stream has no rows")
    state.wait_for_everyone()
    elapsed = time.perf_counter() - t_start
    mine = sum(1 for i in range(math.ceil(n / size)) if i % world == rank)
    local = {"shards_written": written, "shards_skipped": mine - written, "rows_written": rows_written,
             "tokens_written": tokens_written, **stats}
    per_rank = gather_object([local]) if world > 1 else [local]
    summary: dict[str, Any] = {"world_size": world, "elapsed_s": elapsed,
                               **{k: sum(r[k] for r in per_rank) for k in local}}
    if state.is_main_process:
        for leftover in [*out.glob(f"{DATA_DIR}/.*.tmp"), *out.glob(f"{META_DIR}/.*.tmp")]:
            leftover.unlink()  # temp files of shards past the end (a crash at the very end)
        manifest = build_manifest(out, record, math.ceil(n / size), n, dtype.name)
        write_manifest(out, manifest)
        summary.update(manifest["totals"])
    state.wait_for_everyone()
    return summary


class _Wanted:
    """Picklable predicate: is shard ``i`` this rank's, and not complete when the run started?"""

    def __init__(self, rank: int, world: int, complete: set[int]) -> None:
        self.rank, self.world, self.complete = rank, world, frozenset(complete)

    def __call__(self, i: int) -> bool:
        return i % self.world == self.rank and i not in self.complete


def _summary_line(s: dict[str, Any], output: str) -> str:
    """One line: rows, failures, shards, and this run's throughput (all ranks together)."""
    line = (f"tokenized {s['rows']} of {s['samples']} samples into {s['shards']} shard(s) -> {output}; "
            f"{s['failed']} failed (listed in manifest.json); {s['shards_written']} shard(s) written now, "
            f"{s['shards_skipped']} already complete")
    if s["rows_written"] and s["elapsed_s"] > 0:
        line += (f"; {s['rows_written'] / s['elapsed_s']:.1f} samples/s, "
                 f"{s['tokens_written'] / s['elapsed_s']:.0f} tokens/s over {s['world_size']} process(es)")
    return line


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    summary = tokenize(args)
    if "rows" in summary and not args.quiet:
        print(_summary_line(summary, args.output))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``fsqtok tokenize`` / ``scripts/tokenize_dataset.py``: exit status 0, 1 (input) or 2 (arguments)."""
    return run_command(_run, argv, interrupted="interrupted; re-run the same command to resume")


if __name__ == "__main__":
    exit_process(main())
