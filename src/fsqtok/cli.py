"""The ``fsqtok`` command.

    fsqtok encode      --tokenizer T INPUT... -o TOKENS.safetensors
    fsqtok decode      --tokenizer T TOKENS.safetensors -o OUTPUT
    fsqtok reconstruct --tokenizer T INPUT -o OUTPUT
    fsqtok info        T
    fsqtok export      --tokenizer T --format onnx -o OUT/                (encoder.onnx, decoder.onnx, JSON)
    fsqtok tokenize    --tokenizer T --data SOURCE --output OUT ...   (dataset -> index shards)
    fsqtok shards verify OUT
    fsqtok convert     cosmos|nemo SRC -o OUT ...                      (released checkpoint -> model folder)

``T`` is a saved tokenizer folder or a Hub repo id. ``--debug`` and ``--device`` work before or
after the subcommand. Every error is one line on stderr: exit status 2 for bad arguments
(checked before any work), 1 for bad input; ``--debug`` shows the traceback.

Token files are the format of :mod:`fsqtok.tokenizers.token_file`; ``decode`` refuses tokens from a
tokenizer with other weights. Argument types live in :mod:`fsqtok.cli_support`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, NoReturn, Sequence

from .cli_support import (OneLineParser, UsageError, check_device, check_output, exit_process, finite_float,
                          model_source, positive_int, run_command)

# output extension used by `decode` when -o is a folder
DEFAULT_EXT = {"image": ".png", "depth": ".npy", "audio": ".wav", "video": ".mp4"}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)  # accepted before and after the subcommand
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    common.add_argument("--device", type=check_device, default=argparse.SUPPRESS,
                        help="torch device for the tokenizer (default: cpu)")
    parser = OneLineParser(prog="fsqtok", parents=[common],
                           description="Discrete tokens for images, depth, audio and video.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("encode", parents=[common], help="media files -> tokens (.safetensors)")
    p.add_argument("--tokenizer", "-t", required=True, type=model_source, help="saved tokenizer folder or Hub repo id")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="media files of the tokenizer's modality")
    p.add_argument("-o", "--output", required=True, help="tokens file to write (.safetensors)")
    _add_reading_args(p)

    p = sub.add_parser("decode", parents=[common], help="tokens (.safetensors) -> media files")
    p.add_argument("--tokenizer", "-t", required=True, type=model_source, help="saved tokenizer folder or Hub repo id")
    p.add_argument("tokens", metavar="TOKENS", help="a tokens file written by `fsqtok encode`")
    p.add_argument("-o", "--output", required=True,
                   help="media file to write (one item), or a folder (several items)")
    p.add_argument("--num-stages", type=positive_int, default=None, help="residual FSQ: decode from the first N stages")

    p = sub.add_parser("reconstruct", parents=[common], help="encode and decode a media file in one go")
    p.add_argument("--tokenizer", "-t", required=True, type=model_source, help="saved tokenizer folder or Hub repo id")
    p.add_argument("input", metavar="INPUT", help="a media file of the tokenizer's modality")
    p.add_argument("-o", "--output", required=True, help="media file to write")
    p.add_argument("--num-stages", type=positive_int, default=None, help="residual FSQ: decode from the first N stages")
    _add_reading_args(p)

    p = sub.add_parser("info", parents=[common], help="print a tokenizer's modality, size, compression, codebook and rate")
    p.add_argument("tokenizer", metavar="T", type=model_source, help="saved tokenizer folder or Hub repo id")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("export", parents=[common], help="a tokenizer -> ONNX graphs (encoder.onnx, decoder.onnx)")
    p.add_argument("--tokenizer", "-t", required=True, type=model_source, help="saved tokenizer folder or Hub repo id")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="graph format (default: onnx)")
    p.add_argument("-o", "--output", required=True, help="folder to write: new, empty, or an earlier export")
    p.add_argument("--num-stages", type=positive_int, default=None,
                   help="residual FSQ: the stages the graphs carry (default: all; fewer still decode)")

    sub.add_parser("tokenize", help="tokenize a dataset into index shards (see `fsqtok tokenize --help`)",
                   add_help=False)
    sub.add_parser("shards", help="index-shard tools: `fsqtok shards verify OUT`", add_help=False)
    sub.add_parser("convert", help="released checkpoints -> fsqtok model folders (see `fsqtok convert --help`)",
                   add_help=False)
    return parser


def _add_reading_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=finite_float(minimum=0.0, inclusive=False), default=None,
                   help="video: sample frames at this rate (> 0)")
    p.add_argument("--num-frames", type=positive_int, default=None, help="video: read at most this many frames")
    p.add_argument("--start", type=finite_float(minimum=0.0), default=0.0, help="video: start time in seconds")


# --------------------------------------------------------------------------- helpers


def _load(source: str, device: str):
    from .tokenizers import load_tokenizer

    return load_tokenizer(source, map_location=device)


def _check_num_stages(tok, num_stages: int | None) -> None:
    if num_stages is None:
        return
    if tok.config.quantizer != "rfsq":
        raise UsageError("--num-stages needs a residual FSQ tokenizer")
    if num_stages > tok.num_stages:
        raise UsageError(f"--num-stages {num_stages}: the tokenizer has {tok.num_stages} stage(s)")


def _check_output(tok, path: str) -> None:
    """``-o`` must be a file type the tokenizer's modality can be written as."""
    from . import media

    allowed = {"image": media.IMAGE_EXTENSIONS, "depth": media.DEPTH_EXTENSIONS,
               "audio": media.AUDIO_EXTENSIONS, "video": media.VIDEO_EXTENSIONS}[tok.modality]
    if Path(path).suffix.lower() not in allowed:
        raise UsageError(f"-o {path}: cannot write {tok.modality} as {Path(path).suffix or '(no extension)'}; "
                         f"use one of {', '.join(sorted(allowed))}")
    if Path(path).is_dir():
        raise UsageError(f"-o {path}: is a folder; give a file name")


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
        return media.read_image(path, channels=tok.config.in_channels)[None], {}
    if kind == "audio":
        wav, sr = media.read_audio(path)
        return wav[None], {"sample_rate": sr}
    video, fps = media.read_video(path, fps=args.fps, num_frames=args.num_frames, start=args.start)
    return video[None], {"fps": fps}


def _write(tok, path: str | Path, x, item: dict[str, Any]) -> None:
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


def _encode_item(tok, x, item: dict[str, Any], path: str):
    """Tokens of one input; any failure names ``path``, and no index outside the codebook is returned."""
    kwargs = {"sample_rate": item["sample_rate"]} if tok.modality == "audio" else {}
    try:
        tokens = tok.encode(x.to(next(tok.parameters()).device), **kwargs)
    except ValueError as e:  # bad input, or non-finite latents (the quantizer's NonFiniteLatentError)
        raise ValueError(f"{path}: {e}") from None
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= tok.codebook_size:
        raise ValueError(f"{path}: the tokenizer gave indices outside [0, {tok.codebook_size}) (min {lo}, max {hi}); "
                         "its weights may hold NaN or inf")
    return tokens


def _decode_item(tok, tokens, item: dict[str, Any], num_stages: int | None, where: str):
    """One item's tokens -> media tensor; a token that does not fit the tokenizer names ``where``."""
    kwargs = {"sample_rate": item["sample_rate"]} if tok.modality == "audio" else {}
    try:
        return tok.decode(tokens.to(next(tok.parameters()).device), input_shape=item.get("input_shape"),
                          num_stages=num_stages, **kwargs)[0].cpu()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


def output_names(sources: Sequence[str], ext: str) -> list[str]:
    """File names for decoded items: ``stem + ext``; stems shared by several items get ``-<item>``."""
    stems = [Path(s).stem for s in sources]
    names, used = [], set()
    for i, stem in enumerate(stems):
        name = stem if stems.count(stem) == 1 else f"{stem}-{i}"
        while name in used:
            name = f"{name}-{i}"
        used.add(name)
        names.append(name + ext)
    return names


# --------------------------------------------------------------------------- commands


def cmd_encode(args: argparse.Namespace) -> int:
    from .tokenizers.token_file import write_tokens_file

    if not args.output.endswith(".safetensors"):
        raise UsageError(f"-o {args.output}: tokens are written to a .safetensors file")
    if Path(args.output).is_dir():
        raise UsageError(f"-o {args.output}: is a folder; give a .safetensors file name")
    tok = _load(args.tokenizer, args.device)
    tokens, items = [], []
    for path in args.inputs:
        x, item = _read(tok, path, args)
        tokens.append(_encode_item(tok, x, item, path))
        items.append({**item, "source": Path(path).name, "input_shape": list(x.shape)})
    meta = {"tokenizer": args.tokenizer, "weights_sha256": tok.weights_hash(), "modality": tok.modality,
            "items": items}
    write_tokens_file(args.output, tokens, meta)
    print(f"{args.output}: {len(items)} item(s), {sum(t.numel() for t in tokens)} tokens")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from .tokenizers.token_file import check_same_tokenizer, read_tokens_file

    meta, tokens = read_tokens_file(args.tokens)
    out = Path(args.output)
    if len(tokens) > 1 and out.suffix:
        raise UsageError(f"-o {args.output}: {len(tokens)} items need an output folder, not a file")
    if not out.suffix and out.is_file():
        raise UsageError(f"-o {args.output}: is a file; give a folder for the decoded items")
    tok = _load(args.tokenizer, args.device)
    _check_num_stages(tok, args.num_stages)
    if out.suffix:
        _check_output(tok, args.output)
    check_same_tokenizer(tok, meta, args.tokens, args.tokenizer)
    names = output_names([item["source"] for item in meta["items"]], DEFAULT_EXT[tok.modality])
    for name in names:
        check_output(out if out.suffix else out / name, [args.tokens])
    for i, (item, t, name) in enumerate(zip(meta["items"], tokens, names)):
        y = _decode_item(tok, t, item, args.num_stages, f"{args.tokens}: item {i} ({item['source']})")
        target = out if out.suffix else out / name
        _write(tok, target, y, item)
        print(target)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    check_output(args.output, [args.input])
    tok = _load(args.tokenizer, args.device)
    _check_num_stages(tok, args.num_stages)
    _check_output(tok, args.output)
    x, item = _read(tok, args.input, args)
    tokens = _encode_item(tok, x, item, args.input)
    item["input_shape"] = list(x.shape)
    _write(tok, args.output, _decode_item(tok, tokens, item, args.num_stages, args.input), item)
    print(f"{args.output}: {tokens.numel()} tokens, {tok.bits_per_token * tokens.numel() / 8:.0f} bytes of indices")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    tok = _load(args.tokenizer, args.device)
    summary = {**tok.summary(), "weights_sha256": tok.weights_hash()}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        width = max(map(len, summary))
        for k, v in summary.items():
            print(f"{k:<{width}}  {v}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export on the CPU (the graphs are device-free); the output folder and the extra are checked first."""
    from .export import ExportError, check_output_dir, export_onnx, missing_onnx_packages

    missing = missing_onnx_packages()
    if missing:
        raise UsageError(f"--format onnx needs {', '.join(missing)}: pip install 'fsqtok[onnx]'")
    try:
        check_output_dir(args.output)
    except ExportError as e:
        raise UsageError(f"-o {e}") from None
    tok = _load(args.tokenizer, "cpu")
    _check_num_stages(tok, args.num_stages)
    meta = export_onnx(tok, args.output, num_stages=args.num_stages, source=args.tokenizer)
    shapes = [", ".join(map(str, meta["encoder"][k]["shape"])) for k in ("input", "output")]
    check = meta["check"]
    print(f"{args.output}: encoder.onnx ({shapes[0]}) -> int64 ({shapes[1]}), decoder.onnx, {tok.modality}; "
          f"onnxruntime agrees with PyTorch on {check['index_agreement']:.2%} of {check['indices']} indices")
    return 0


COMMANDS = {"encode": cmd_encode, "decode": cmd_decode, "reconstruct": cmd_reconstruct, "info": cmd_info,
            "export": cmd_export}


def _delegate(argv: list[str]) -> int | None:
    """``tokenize``, ``shards`` and ``convert`` have their own parsers (shared with scripts/tokenize_dataset.py);
    ``--debug`` and ``--device`` given before the subcommand are passed on to them."""
    i, lead = 0, []
    while i < len(argv) and (argv[i] == "--debug" or argv[i].startswith("--device")):
        take = 2 if argv[i] == "--device" else 1
        lead += argv[i:i + take]
        i += take
    if i < len(argv) and argv[i] == "tokenize":
        from .shards.cli import main as tokenize_main

        return tokenize_main(lead + argv[i + 1:])
    if i < len(argv) and argv[i] in ("shards", "convert"):  # these need no device
        from .convert.cli import main as convert_main
        from .shards.verify import main as shards_main

        command = {"shards": shards_main, "convert": convert_main}[argv[i]]
        return command([a for a in lead if a == "--debug"] + argv[i + 1:])
    return None


def _run(argv: list[str]) -> int:
    delegated = _delegate(argv)
    if delegated is not None:
        return delegated
    args = build_parser().parse_args(argv)
    args.device = getattr(args, "device", "cpu")
    return COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_run, argv)


def console_main() -> NoReturn:
    """The ``fsqtok`` console script: :func:`main`, then :func:`~fsqtok.cli_support.exit_process`."""
    exit_process(main())


if __name__ == "__main__":
    console_main()
