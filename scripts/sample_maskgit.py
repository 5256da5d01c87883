"""Sample images from a trained MaskGIT: generate tokens, decode them with the tokenizer, write PNGs and a grid.

    python scripts/sample_maskgit.py --model runs/maskgit/maskgit --num-samples 64 --output-dir samples
    python scripts/sample_maskgit.py --model M --num-samples 5000 --labels 0,3 --steps 12 --temperature 1.0 \\
        --noise 4.5 --guidance 0.5 --seed 0 --output-dir OUT --tokens-out OUT/tokens

Writes ``OUT/images/<index>_<label>.png``, ``OUT/grid.png`` (one row per class, labelled) and
``OUT/samples.json`` (the settings, the model's weights hash, the tokenizer and each sample's label).
``--tokens-out`` (a new or empty folder) also writes the sampled tokens as fsqtok shards
(``manifest.json``, ``data/train-*.parquet``) for ``scripts/evaluate_generation.py --tokens``: their
manifest records the model, the settings and the PNG names, and ``samples.json`` their content hash.
Both outputs are checked before any sampling. The tokenizer is, in this order, ``--tokenizer``, the
location the model's config records, or the copy inside the model folder (``MODEL/tokenizer``); a
tokenizer with other weights is refused. Labels are class ids or class names, cycled over
``--num-samples`` (default: every class in turn). Samples are deterministic for a given
``--seed``, ``--batch-size`` and device. Exit status 0, 1 (bad input), 2 (bad arguments).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from fsqtok.cli_support import OneLineParser, UsageError, check_output_folder, exit_process, run_command
from fsqtok.generative import MaskGIT
from fsqtok.generative.maskgit.sampling import class_name, decode_images, labelled_grid, resolve_tokenizer
from fsqtok.media.image import write_image
from fsqtok.shards.manifest import content_identity, tokenizer_identity
from fsqtok.shards.pipeline import write_token_shards


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="sample_maskgit.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a saved MaskGIT folder (save_pretrained) or Hub repo id")
    p.add_argument("--num-samples", type=int, required=True, help="images to sample")
    p.add_argument("--output-dir", required=True, help="folder for images/, grid.png and samples.json")
    p.add_argument("--labels", default=None, help="comma-separated class ids or names, cycled (default: all classes)")
    p.add_argument("--steps", type=int, default=12, help="decoding steps (default 12)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0; 0 = argmax)")
    p.add_argument("--noise", type=float, default=4.5, help="Gumbel noise on the confidence, annealed (default 4.5)")
    p.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance weight (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="images per generate call (default 64)")
    p.add_argument("--tokens-out", default=None, help="also write the sampled tokens as shards to this folder")
    p.add_argument("--tokenizer", default=None, help="the tokenizer folder/repo id (default: the one the model names)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def parse_labels(text: str | None, config) -> list[int]:
    """``"0,3"`` or ``"Sneaker,Bag"`` -> class ids; ``None`` -> every class."""
    if text is None:
        return list(range(config.num_classes))
    ids = []
    for item in (s.strip() for s in text.split(",")):
        if item in config.class_names:
            ids.append(config.class_names.index(item))
        elif item.isdigit() and int(item) < config.num_classes:
            ids.append(int(item))
        else:
            names = f" or one of {', '.join(config.class_names)}" if config.class_names else ""
            raise UsageError(f"--labels: {item!r} is not a class id in [0, {config.num_classes}){names}")
    return ids


def check_args(args) -> None:
    for name in ("num_samples", "steps", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("temperature", "noise", "guidance"):
        v = getattr(args, name)
        if not v >= 0 or v == float("inf"):
            raise UsageError(f"--{name} must be a finite number >= 0, got {v}")
    check_output_folder(args.output_dir, "--output-dir")
    out = Path(args.output_dir)
    if (out / "samples.json").exists() or ((out / "images").is_dir() and any((out / "images").iterdir())):
        raise UsageError(f"--output-dir {out}: holds samples already; choose another folder")
    if args.tokens_out:
        check_output_folder(args.tokens_out, "--tokens-out", empty=True)


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = MaskGIT.from_pretrained(args.model, map_location=device)
    cfg = model.config
    ids = parse_labels(args.labels, cfg)
    tok, tok_source = resolve_tokenizer(cfg, args.tokenizer, args.model if Path(args.model).is_dir() else None)
    tok = tok.to(device)
    labels = torch.tensor([ids[i % len(ids)] for i in range(args.num_samples)])

    t0 = time.perf_counter()
    g = torch.Generator(device).manual_seed(args.seed)
    tokens = torch.cat([
        model.generate(labels[i:i + args.batch_size], steps=args.steps, temperature=args.temperature,
                       noise=args.noise, guidance=args.guidance, generator=g).cpu()
        for i in range(0, len(labels), args.batch_size)])
    images = decode_images(tok, tokens, args.batch_size)
    seconds = time.perf_counter() - t0

    out = Path(args.output_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    names = [class_name(cfg, c) for c in range(cfg.num_classes)]
    width = len(str(args.num_samples - 1))
    pngs = []
    for i, (img, lab) in enumerate(zip(images, labels.tolist())):
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in names[lab])
        pngs.append(f"{i:0{width}d}_{safe}.png")
        write_image(out / "images" / pngs[-1], img)
    grid = labelled_grid(images, labels.tolist(), names)
    write_image(out / "grid.png", grid * 2 - 1)
    settings = {k: getattr(args, k) for k in ("model", "steps", "temperature", "noise", "guidance", "seed",
                                              "batch_size")}
    record = {"settings": settings, "model_sha256": model.weights_hash(), "tokenizer": tok_source,
              "num_samples": args.num_samples, "labels": [names[c] for c in labels.tolist()], "seconds": seconds}
    if args.tokens_out:
        made = {"maskgit": settings, "model_sha256": record["model_sha256"], "output_dir": str(out.resolve()),
                "images": pngs}
        manifest = write_token_shards(args.tokens_out, tokens, record["labels"], tokenizer_identity(tok, tok_source), made)
        record["tokens"] = {"path": str(Path(args.tokens_out).resolve()),
                            "content_sha256": content_identity(manifest)["content_sha256"]}
    (out / "samples.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"sampled {args.num_samples} images in {seconds:.1f} s ({args.num_samples / seconds:.1f} images/s) "
          f"-> {out}/images, {out}/grid.png" + (f"; tokens -> {args.tokens_out}" if args.tokens_out else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    exit_process(main())
