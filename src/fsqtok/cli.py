"""The ``fsqtok`` command.

    fsqtok encode      --tokenizer T INPUT... -o TOKENS.safetensors
    fsqtok decode      --tokenizer T TOKENS.safetensors -o OUTPUT
    fsqtok reconstruct --tokenizer T INPUT -o OUTPUT
    fsqtok info        T
    fsqtok tokenize    --tokenizer T --data SOURCE --output OUT ...   (dataset -> index shards)
    fsqtok shards verify OUT

``T`` is a saved tokenizer folder or a Hub repo id. Every error is one line on stderr:
exit status 2 for bad arguments, 1 for bad input; ``--debug`` shows the traceback.

Token files are safetensors: one int64 tensor per input, named ``tokens.<i>``, with
metadata ``fsqtok`` (a JSON record: tokenizer, config hash, modality and, per item, the
source file, input shape, and sample rate or fps).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any, NoReturn, Sequence

from .cli_support import OneLineParser, UsageError, exit_process, run_command

# output extension used by `decode` when -o is a folder
DEFAULT_EXT = {"image": ".png", "depth": ".npy", "audio": ".wav", "video": ".mp4"}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fsqtok", description="Discrete tokens for images, depth, audio and video.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--device", default="cpu", help="torch device for the tokenizer (default: cpu)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("encode", help="media files -> tokens (.safetensors)")
    p.add_argument("--tokenizer", "-t", required=True, help="saved tokenizer folder or Hub repo id")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="media files of the tokenizer's modality")
    p.add_argument("-o", "--output", required=True, help="tokens file to write (.safetensors)")
    _add_reading_args(p)

    p = sub.add_parser("decode", help="tokens (.safetensors) -> media files")
    p.add_argument("--tokenizer", "-t", required=True, help="saved tokenizer folder or Hub repo id")
    p.add_argument("tokens", metavar="TOKENS", help="a tokens file written by `fsqtok encode`")
    p.add_argument("-o", "--output", required=True,
                   help="media file to write (one item), or a folder (several items)")
    p.add_argument("--num-stages", type=int, default=None, help="residual FSQ: decode from the first N stages")

    p = sub.add_parser("reconstruct", help="encode and decode a media file in one go")
    p.add_argument("--tokenizer", "-t", required=True, help="saved tokenizer folder or Hub repo id")
    p.add_argument("input", metavar="INPUT", help="a media file of the tokenizer's modality")
    p.add_argument("-o", "--output", required=True, help="media file to write")
    p.add_argument("--num-stages", type=int, default=None, help="residual FSQ: decode from the first N stages")
    _add_reading_args(p)

    p = sub.add_parser("info", help="print a tokenizer's modality, size, compression, codebook and rate")
    p.add_argument("tokenizer", metavar="T", help="saved tokenizer folder or Hub repo id")
    p.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("tokenize", help="tokenize a dataset into index shards (see `fsqtok tokenize --help`)",
                   add_help=False)
    sub.add_parser("shards", help="index-shard tools: `fsqtok shards verify OUT`", add_help=False)
    return parser


def _add_reading_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=float, default=None, help="video: sample frames at this rate")
    p.add_argument("--num-frames", type=int, default=None, help="video: read at most this many frames")
    p.add_argument("--start", type=float, default=0.0, help="video: start time in seconds")


# --------------------------------------------------------------------------- helpers


def _load(source: str, device: str):
    from .tokenizers import load_tokenizer

    path = Path(source)
    if not path.exists() and (source.startswith((".", "/", "~")) or source.count("/") != 1):
        raise UsageError(f"--tokenizer {source}: no such folder, and not a Hub repo id of the form org/name")
    return load_tokenizer(source).to(device).eval()


def config_hash(tok) -> str:
    """Short sha256 of the tokenizer's config.json content: tokens from different configs never mix."""
    return hashlib.sha256(json.dumps(tok.hub_config(), sort_keys=True).encode()).hexdigest()[:16]


def _read(tok, path: str, args: argparse.Namespace):
    """Read one media file for ``tok``; returns ``(batch tensor, item metadata)``."""
    from . import media

    kind = tok.modality
    file_kind = media.media_kind(path)
    if kind == "depth":
        x = media.read_depth(path)
        return x[None], {}
    if file_kind != kind:
        raise UsageError(f"{path}: a {file_kind} file, but the tokenizer takes {kind}; pick a {kind} tokenizer")
    if kind == "image":
        return media.read_image(path)[None], {}
    if kind == "audio":
        wav, sr = media.read_audio(path)
        return wav[None], {"sample_rate": sr}
    video, fps = media.read_video(path, fps=args.fps, num_frames=args.num_frames, start=args.start)
    return video[None], {"fps": fps}


def _write(tok, path: str, x, item: dict[str, Any]) -> None:
    from . import media

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    kind = tok.modality
    if kind == "image":
        media.write_image(path, x)
    elif kind == "depth":
        media.write_depth(path, x)
    elif kind == "audio":
        media.write_audio(path, x, tok.config.sample_rate)
    else:
        media.write_video(path, x, item.get("fps") or tok.config.fps)


def _encode_item(tok, x, item: dict[str, Any]):
    import torch

    x = x.to(next(tok.parameters()).device)
    with torch.inference_mode():
        if tok.modality == "audio":
            return tok.encode(x, sample_rate=item["sample_rate"])
        return tok.encode(x)


def _decode_item(tok, tokens, item: dict[str, Any], num_stages: int | None):
    import torch

    if num_stages is not None and tok.config.quantizer != "rfsq":
        raise UsageError("--num-stages needs a residual FSQ tokenizer")
    shape = item.get("network_shape")
    with torch.inference_mode():
        return tok.decode(tokens.to(next(tok.parameters()).device), input_shape=shape,
                          num_stages=num_stages)[0].cpu()


def _network_shape(tok, x, item: dict[str, Any]) -> list[int]:
    """Shape the network saw: for audio, after resampling to the model's rate."""
    shape = list(x.shape)
    if tok.modality == "audio":
        sr = item["sample_rate"]
        shape[-1] = -(-shape[-1] * tok.config.sample_rate // sr)  # ceil, as torchaudio's resample gives
        if tok.config.channels == "mono":
            shape[1] = 1
    return shape


# --------------------------------------------------------------------------- commands


def cmd_encode(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    if not args.output.endswith(".safetensors"):
        raise UsageError(f"-o {args.output}: tokens are written to a .safetensors file")
    tok = _load(args.tokenizer, args.device)
    tensors, items = {}, []
    for i, path in enumerate(args.inputs):
        x, item = _read(tok, path, args)
        tokens = _encode_item(tok, x, item)
        item.update(source=Path(path).name, input_shape=list(x.shape), network_shape=_network_shape(tok, x, item))
        tensors[f"tokens.{i}"] = tokens.cpu().contiguous()
        items.append(item)
    meta = {"tokenizer": args.tokenizer, "config_hash": config_hash(tok), "modality": tok.modality, "items": items}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output + ".tmp"
    save_file(tensors, tmp, metadata={"fsqtok": json.dumps(meta)})
    Path(tmp).replace(args.output)
    print(f"{args.output}: {len(items)} item(s), {sum(t.numel() for t in tensors.values())} tokens")
    return 0


def read_tokens_file(path: str) -> tuple[dict[str, Any], list]:
    """``(metadata, [int64 tokens per item])`` of a file written by ``fsqtok encode``."""
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such tokens file")
    try:
        with safe_open(path, framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("fsqtok", "null"))
            if not meta:
                raise ValueError(f"{path}: not an fsqtok tokens file (no fsqtok metadata); write it with `fsqtok encode`")
            tokens = [f.get_tensor(f"tokens.{i}") for i in range(len(meta["items"]))]
    except (SafetensorError, json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"{path}: not a valid fsqtok tokens file ({e})") from None
    return meta, tokens


def cmd_decode(args: argparse.Namespace) -> int:
    meta, tokens = read_tokens_file(args.tokens)
    tok = _load(args.tokenizer, args.device)
    if meta["config_hash"] != config_hash(tok):
        raise ValueError(
            f"{args.tokens}: tokens come from tokenizer {meta['tokenizer']} (config {meta['config_hash']}), "
            f"not {args.tokenizer} (config {config_hash(tok)}); decode with the tokenizer that encoded them"
        )
    out = Path(args.output)
    if len(tokens) > 1 and out.suffix:
        raise UsageError(f"-o {args.output}: {len(tokens)} items need an output folder, not a file")
    for item, t in zip(meta["items"], tokens):
        y = _decode_item(tok, t, item, args.num_stages)
        target = out if len(tokens) == 1 and out.suffix else out / (Path(item["source"]).stem + DEFAULT_EXT[tok.modality])
        _write(tok, str(target), y, item)
        print(target)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    tok = _load(args.tokenizer, args.device)
    x, item = _read(tok, args.input, args)
    tokens = _encode_item(tok, x, item)
    item["network_shape"] = _network_shape(tok, x, item)
    _write(tok, args.output, _decode_item(tok, tokens, item, args.num_stages), item)
    print(f"{args.output}: {tokens.numel()} tokens, {tok.bits_per_token * tokens.numel() / 8:.0f} bytes of indices")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    tok = _load(args.tokenizer, args.device)
    summary = tok.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        width = max(map(len, summary))
        for k, v in summary.items():
            print(f"{k:<{width}}  {v}")
    return 0


COMMANDS = {"encode": cmd_encode, "decode": cmd_decode, "reconstruct": cmd_reconstruct, "info": cmd_info}


def _delegate(argv: list[str]) -> int | None:
    """``tokenize`` and ``shards`` have their own parsers (shared with scripts/tokenize_dataset.py);
    ``--debug`` and ``--device`` given before the subcommand are passed on to them."""
    i, lead = 0, []
    while i < len(argv) and (argv[i] == "--debug" or argv[i].startswith("--device")):
        take = 2 if argv[i] == "--device" else 1
        lead += argv[i:i + take]
        i += take
    if i < len(argv) and argv[i] == "tokenize":
        from .shards.cli import main as tokenize_main

        return tokenize_main(lead + argv[i + 1:])
    if i < len(argv) and argv[i] == "shards":
        from .shards.verify import main as shards_main

        return shards_main([a for a in lead if a == "--debug"] + argv[i + 1:])  # verify needs no device
    return None


def _run(argv: list[str]) -> int:
    delegated = _delegate(argv)
    if delegated is not None:
        return delegated
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_run, argv)


def console_main() -> NoReturn:
    """The ``fsqtok`` console script: :func:`main`, then :func:`~fsqtok.cli_support.exit_process`."""
    exit_process(main())


if __name__ == "__main__":
    console_main()
