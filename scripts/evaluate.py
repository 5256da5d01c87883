"""Evaluate saved tokenizers on held-out data; write a JSON report and a Markdown table.

    accelerate launch scripts/evaluate.py --tokenizer runs/image/tokenizer --output-dir runs/image/eval
    python scripts/evaluate.py --tokenizer A --tokenizer B --data path/to/folder --size 128

The modality comes from each tokenizer's config.json. Data is the built-in held-out samples
(``--data samples``, the default) or a folder of files. Metrics (see
``fsqtok.training.evaluation``): image PSNR/SSIM; depth RMSE/AbsRel/delta<1.25 on valid pixels;
audio SI-SDR, mel and multi-resolution STFT distance (PESQ/STOI when installed); video per-frame
PSNR/SSIM; for all, codebook usage, perplexity, bits per token and the measured bitrate.

Writes ``<output-dir>/eval.json`` (``{"results": {name: metrics}, ...}``), ``eval.md`` and, with
``--grid N``, ``<name>_grid.png`` (originals left, reconstructions right; ``/`` in a name becomes
``_``). A row is named by ``--name``, else by the shortest path tail that tells the tokenizers
apart (``runA/tokenizer``). Several processes split the data; metrics are gathered, files are
written by the main process. Exit status 2 for bad arguments, 1 for bad input.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

import fsqtok
from fsqtok.cli_support import OneLineParser, check_output_folder, exit_process, model_source, run_command
from fsqtok.data import build_dataset, collate
from fsqtok.training.evaluation import evaluate, grid, markdown_table


def data_section(args: argparse.Namespace) -> dict[str, Any]:
    folder = args.data != "samples"
    return {
        "source": "folder" if folder else "samples",
        "path": args.data if folder else None,
        "val_path": args.data if folder else None,
        "num_train": 0,
        "num_val": args.num,
        "sample_seed": args.sample_seed,
        "size": args.size,
        "frames": args.frames,
        "seconds": args.seconds,
    }


def save_grid(tokenizer, dataset, n: int, path: Path) -> None:
    from PIL import Image

    x = torch.stack([dataset[i] for i in range(min(n, len(dataset))) if dataset[i] is not None])
    with torch.no_grad():
        y = tokenizer(x).reconstruction
    img = grid(x, y, tokenizer.modality)
    Image.fromarray((img.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()).save(path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from accelerate import Accelerator

    accelerator = Accelerator()
    out = Path(args.output_dir)
    results: dict[str, dict[str, float]] = {}
    info: dict[str, Any] = {}
    for source, name in zip(args.tokenizer, row_names(args.tokenizer, args.name or [])):
        tokenizer = fsqtok.load_tokenizer(source).to(accelerator.device)
        sample_rate = getattr(tokenizer.config, "sample_rate", 16000)
        channels = getattr(tokenizer.config, "in_channels", None)  # grey tokenizers read grey media
        dataset = build_dataset(tokenizer.modality, data_section(args), "val", sample_rate, channels)
        loader = accelerator.prepare(DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate))
        t0 = time.perf_counter()
        metrics = evaluate(tokenizer, loader, accelerator, tokenizer.modality)
        metrics["seconds"] = time.perf_counter() - t0
        results[name] = metrics
        info[name] = {"tokenizer": source, "modality": tokenizer.modality, **tokenizer.summary()}
        if accelerator.is_main_process and args.grid:
            out.mkdir(parents=True, exist_ok=True)
            save_grid(tokenizer.cpu(), dataset, args.grid, out / f"{name.replace('/', '_')}_grid.png")
    report = {"data": data_section(args), "results": results, "tokenizers": info}
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
        data = "built-in held-out samples" if args.data == "samples" else args.data
        md = f"# Evaluation\n\nData: {data} ({int(next(iter(results.values()))['items'])} items).\n\n"
        (out / "eval.md").write_text(md + markdown_table(results))
        print(markdown_table(results), end="")
        print(f"wrote {out / 'eval.json'} and {out / 'eval.md'}")
    accelerator.wait_for_everyone()
    return report


def row_names(sources: list[str], names: list[str]) -> list[str]:
    """One row name per tokenizer: ``names`` first, then the shortest path tail that tells a
    source apart from the others (``runA/tokenizer`` and ``runB/tokenizer``, not ``tokenizer`` twice)."""
    if len(names) > len(sources):
        raise ValueError(f"{len(names)} --name for {len(sources)} --tokenizer")
    parts = [Path(s).parts or (s,) for s in sources]
    depth = [1] * len(sources)
    while True:
        rows = names + ["/".join(p[-d:]) for p, d in zip(parts[len(names):], depth[len(names):])]
        clashes = [i for i in range(len(names), len(rows)) if rows.count(rows[i]) > 1 and depth[i] < len(parts[i])]
        if not clashes:
            break
        for i in clashes:
            depth[i] += 1
    twice = sorted({r for r in rows if rows.count(r) > 1})
    if twice:
        raise ValueError(f"row name(s) {', '.join(twice)} given to more than one tokenizer; use --name")
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="evaluate.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--tokenizer", action="append", required=True, type=model_source,
                   help="saved tokenizer folder or Hub id (repeatable)")
    p.add_argument("--name", action="append", help="row name per --tokenizer (default: the shortest path tail "
                                                   "that tells the tokenizers apart)")
    p.add_argument("--data", default="samples", help="'samples' (built-in held-out media) or a folder of files")
    p.add_argument("--num", type=int, default=32, help="samples: held-out items")
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="image, depth, video side in pixels")
    p.add_argument("--frames", type=int, default=9, help="video frames per clip")
    p.add_argument("--seconds", type=float, default=1.0, help="audio seconds per clip")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grid", type=int, default=0, help="write a grid PNG of this many originals vs reconstructions")
    p.add_argument("--output-dir", default="eval")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    args = p.parse_args(argv)
    try:
        row_names(args.tokenizer, args.name or [])
    except ValueError as e:
        p.error(str(e))
    check_output_folder(args.output_dir, "--output-dir")  # before any tokenizer is run
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit status 0, 2 for bad arguments, 1 for bad input (one line on stderr; ``--debug`` re-raises)."""
    def body(args: list[str]) -> int:
        run(parse_args(args))
        return 0

    return run_command(body, argv)


if __name__ == "__main__":
    exit_process(main())
