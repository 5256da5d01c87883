"""``fsqtok tokenize`` / ``scripts/tokenize_dataset.py``: a dataset -> index shards.

    fsqtok tokenize --tokenizer T --data SOURCE --output OUT [--batch-size 32] [--shard-size 1000]
                    [--num-workers 2] [--size S] [--clip-seconds S] [--num-frames N] [--fps F]
                    [--labels folder|FILE] [--column C] [--label-column C] [--split S]
                    [--device D] [--overwrite] [--quiet]

    accelerate launch scripts/tokenize_dataset.py ...same flags...

Shard ``i`` holds ``keys[i*shard_size:(i+1)*shard_size]`` of the sorted key list; rank ``r`` of
``N`` writes the shards with ``i % N == r``; rank 0 writes ``manifest.json`` after a barrier.
Batches never cross a shard boundary, so a shard's bytes do not depend on which rank wrote it
or on whether the run was resumed. Re-running the same command resumes (complete shards are
skipped); a different tokenizer, source or selection is refused unless ``--overwrite``.

Environment: ``FSQTOK_SHARDS_CRASH_AFTER=k`` makes each process exit abruptly (``os._exit``)
after writing ``k`` shards, leaving a partial temporary file behind; tests use it to simulate a crash.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .manifest import (OutputMismatch, build_manifest, check_output, differences, prepare_output, run_record,
                       tokenizer_identity, write_manifest, RUN_FILE)
from .sources import FolderSource, HFSource, Preprocess, SampleDataset, SourceError, collate_keep, worker_init
from .writer import shard_complete, shard_paths, tmp_path, token_dtype, write_shard

EXIT_USAGE, EXIT_INPUT = 2, 1


class UsageError(Exception):
    """Bad command-line arguments (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fsqtok tokenize", description="Tokenize a dataset into Parquet index shards.")
    p.add_argument("--tokenizer", "-t", required=True, help="saved tokenizer folder or Hub repo id")
    p.add_argument("--data", required=True,
                   help="a folder of media files, or a dataset folder written by datasets' save_to_disk")
    p.add_argument("--output", "-o", required=True, help="output folder (manifest.json, data/train-*.parquet, meta/shard-*.json)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per encoder call (default 32)")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader decode workers (default 2; 0 = in-process)")
    p.add_argument("--device", default=None, help="torch device (default: accelerate's device for this process)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    g = p.add_argument_group("source selection")
    g.add_argument("--labels", default=None,
                   help="folder source: 'folder' (first sub-folder name) or a CSV/JSONL file with key,label")
    g.add_argument("--column", default=None, help="dataset source: the media column (default: first Image/Audio column)")
    g.add_argument("--label-column", default=None, help="dataset source: the label column")
    g.add_argument("--split", default=None, help="dataset source: split of a DatasetDict (default train)")
    g = p.add_argument_group("fixed-size inputs")
    g.add_argument("--size", type=int, default=None,
                   help="image/depth/video: resize short side and center-crop to SIZE x SIZE "
                        "(default: keep each sample's size; equal sizes are batched together)")
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
    data = Path(args.data)
    if not data.exists():
        raise UsageError(f"--data {args.data}: no such folder")
    if (data / "dataset_info.json").is_file() or (data / "dataset_dict.json").is_file():
        if args.labels is not None:
            raise UsageError("--labels is for folder sources; use --label-column with a dataset")
        return HFSource(data, modality, column=args.column, label_column=args.label_column, split=args.split)
    if args.column or args.label_column or args.split:
        raise UsageError("--column/--label-column/--split are for datasets saved with save_to_disk")
    return FolderSource(data, modality, labels=args.labels, exclude=args.output)


def _encode_batch(tok, items: list[dict[str, Any]], device: torch.device, dtype: np.dtype,
                  stats: dict[str, float]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Encode the decoded items of one batch, grouped by shape; returns rows and failures."""
    rows, failures = [], []
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for it in items:
        if it["x"] is None:
            failures.append({"key": it["key"], "reason": it["error"]})
        else:
            groups[tuple(it["x"].shape)].append(it)
    for group in groups.values():
        try:
            idx = _encode(tok, torch.stack([it["x"] for it in group]), device, stats)
            encoded = list(zip(group, idx))
        except (RuntimeError, ValueError) as e:  # fall back to one sample at a time to isolate the bad one
            encoded = []
            for it in group:
                try:
                    encoded.append((it, _encode(tok, it["x"][None], device, stats)[0]))
                except (RuntimeError, ValueError) as e1:
                    failures.append({"key": it["key"], "reason": f"{it['key']}: encode failed: "
                                     f"{' '.join(str(e1).split()) or type(e).__name__}"})
        for it, tokens in encoded:
            rows.append({"key": it["key"], "tokens": tokens.astype(dtype), "label": it.get("label"), **it["meta"]})
    return rows, failures


def _encode(tok, x: torch.Tensor, device: torch.device, stats: dict[str, float]) -> np.ndarray:
    t0 = time.perf_counter()
    with torch.inference_mode():
        idx = tok.encode(x.to(device, non_blocking=True))
    out = idx.cpu().numpy()
    stats["encode_s"] += time.perf_counter() - t0
    stats["encoded"] += x.shape[0]
    return out


def tokenize(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) one tokenization; returns a summary dict. Raises on bad input."""
    from accelerate import PartialState

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
        import json
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

    keys = source.keys
    n, size = len(keys), args.shard_size
    num_shards = math.ceil(n / size)
    mine = [i for i in range(num_shards) if i % world == rank]
    todo = [i for i in mine if not shard_complete(out, i)]
    for i in todo:  # leftovers of an interrupted run
        for p in shard_paths(out, i):
            for q in (p, tmp_path(p)):
                if q.exists():
                    q.unlink()

    batches, batch_shard, last_batch = [], [], set()
    for i in todo:
        lo, hi = i * size, min(n, (i + 1) * size)
        for b in range(lo, hi, args.batch_size):
            batches.append(list(range(b, min(hi, b + args.batch_size))))
            batch_shard.append(i)
        last_batch.add(len(batches) - 1)

    stats: dict[str, float] = {"encode_s": 0.0, "encoded": 0}
    crash_after = int(os.environ.get("FSQTOK_SHARDS_CRASH_AFTER", "0") or 0)
    t_start = time.perf_counter()
    if batches:
        dataset = SampleDataset(source, prep)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, collate_fn=collate_keep, num_workers=args.num_workers,
            worker_init_fn=worker_init if args.num_workers else None,
            prefetch_factor=4 if args.num_workers else None,
            pin_memory=device.type == "cuda",
        )
        labels = source.label
        pool = ThreadPoolExecutor(1)  # Parquet writing overlaps the next shard's encoding
        futures = []
        rows: list[dict[str, Any]] = []
        failures: list[dict[str, str]] = []
        written = 0
        for bi, items in enumerate(loader):
            for it in items:
                it["label"] = labels(it["key"])
            r, f = _encode_batch(tok, items, device, dtype, stats)
            rows += r
            failures += f
            if bi in last_batch:
                rows.sort(key=lambda row: row["key"])
                failures.sort(key=lambda row: row["key"])
                futures.append(pool.submit(write_shard, out, batch_shard[bi], rows, failures, dtype, tok.modality))
                rows, failures = [], []
                written += 1
                if crash_after and written >= crash_after:
                    for fut in futures:
                        fut.result()
                    nxt = shard_paths(out, batch_shard[bi] + world)[0]
                    if nxt.parent.is_dir():  # a half-written shard, as a kill -9 would leave
                        tmp_path(nxt).write_bytes(b"PAR1 partial")
                    sys.stdout.flush()
                    os._exit(3)
        for fut in futures:
            fut.result()
        pool.shutdown()
    elapsed = time.perf_counter() - t_start
    state.wait_for_everyone()

    summary: dict[str, Any] = {"rank": rank, "world_size": world, "shards_written": len(todo),
                               "elapsed_s": elapsed, **stats}
    if state.is_main_process:
        manifest = build_manifest(out, record, num_shards, n, dtype.name)
        write_manifest(out, manifest)
        summary.update(manifest["totals"])
    state.wait_for_everyone()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        summary = tokenize(args)
        if "rows" in summary and not args.quiet:
            print(f"tokenized {summary['rows']} of {summary['samples']} samples into {summary['shards']} shard(s) "
                  f"({summary['failed']} failed, {summary['shards_written']} written now) -> {args.output}")
        return 0
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except UsageError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line, no traceback
        if debug:
            raise
        print(f"error: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
