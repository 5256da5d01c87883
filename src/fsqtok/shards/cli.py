"""``fsqtok tokenize`` / ``scripts/tokenize_dataset.py``: a thin command line over :func:`~fsqtok.shards.tokenize`.

    fsqtok tokenize --tokenizer T --data SOURCE --output OUT [--batch-size 32] [--shard-size 1000]
                    [--num-workers 2] [--encoders N] [--size S] [--clip-seconds S] [--num-frames N] [--fps F]
                    [--labels folder|FILE] [--data-format auto|files|disk|parquet|arrow|imagefolder|
                    audiofolder|hub] [--streaming] [--column C] [--label-column C] [--split S]
                    [--dataset-config NAME] [--cache-dir DIR] [--device D] [--overwrite] [--quiet] [--debug]

    accelerate launch scripts/tokenize_dataset.py ...same flags...

Every flag works in any position. Exit status 0 on success; 2 for bad arguments; 1 for bad
input, including a run in which every sample failed (the manifest lists why).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Sequence

from ..cli_support import OneLineParser, UsageError, exit_process, run_command
from ..data.hf import DATA_FORMATS
from ..data.preprocess import DataError
from .job import JobError, TokenizeJob
from .pipeline import tokenize


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
    p.add_argument("--encoders", type=int, default=None,
                   help="CPU: batches encoded at once, each in its own thread with an equal share of the torch "
                        "threads (default: one per torch thread, the fastest; 1 holds one batch's activations)")
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
    g.add_argument("--split", default=None,
                   help="dataset: the split (required when it has several; default: the only one)")
    g.add_argument("--dataset-config", default=None, help="hub: the dataset's configuration name")
    g.add_argument("--streaming", action="store_true",
                   help="dataset read with load_dataset (parquet/arrow/imagefolder/audiofolder/hub): stream it "
                        "instead of building a local Arrow cache first")
    g.add_argument("--cache-dir", default=None, help="dataset: datasets' cache folder (default: HF_DATASETS_CACHE)")
    g = p.add_argument_group("fixed-size inputs (equal shapes are batched together; others one shape at a time)")
    g.add_argument("--size", type=int, default=None,
                   help="image/depth/video: take the centred square and resize it to SIZE x SIZE, as training "
                        "does (default: keep each sample's size)")
    g.add_argument("--clip-seconds", type=float, default=None,
                   help="audio: keep the first S seconds, zero-pad shorter files (default: whole file)")
    g.add_argument("--num-frames", type=int, default=None, help="video: N frames (a shorter clip repeats its last frame)")
    g.add_argument("--fps", type=float, default=None, help="video: sample frames at this rate")
    return p


def job_from_args(args: argparse.Namespace) -> TokenizeJob:
    """The :class:`TokenizeJob` the parsed flags describe."""
    return TokenizeJob(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TokenizeJob)})


def summary_line(s: dict[str, Any], output: str) -> str:
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
    try:
        summary = tokenize(job_from_args(args))
    except JobError as e:
        raise UsageError(str(e)) from None
    if not args.quiet and summary["rank"] == 0:
        print(summary_line(summary, args.output))
    if summary["rows"] == 0 and summary["failed"]:
        raise DataError(f"every one of the {summary['failed']} samples failed (listed in "
                        f"{args.output}/manifest.json); the first: {summary['first_failure']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``fsqtok tokenize`` / ``scripts/tokenize_dataset.py``: exit status 0, 1 (input) or 2 (arguments)."""
    return run_command(_run, argv, interrupted="interrupted; re-run the same command to resume")


if __name__ == "__main__":
    exit_process(main())
