"""``fsqtok convert``: released checkpoints -> fsqtok model folders.

    fsqtok convert cosmos SRC -o OUT [--config KWARGS.json] [--allow-torchscript]
    fsqtok convert nemo   SRC -o OUT

``SRC`` is a local file or folder, or a Hub repo id read from the Hugging Face cache (set
``HF_HUB_OFFLINE=1`` to stay offline). ``OUT`` is written atomically: on any error nothing is left.
TorchScript (``.jit``) is compiled code and is read only with ``--allow-torchscript``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any, Sequence

from ..cli_support import OneLineParser, UsageError, run_command
from .core import Converted, resolve_source, write_converted


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fsqtok convert", description="Convert a released checkpoint to an fsqtok model folder.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="family", required=True, parser_class=OneLineParser)
    p = sub.add_parser("cosmos", help="NVIDIA Cosmos-Tokenizer (image DI, video DV)")
    _add_common(p)
    p.add_argument("--config", metavar="KWARGS.json", default=None,
                   help="the reference constructor's kwargs, for what the checkpoint does not determine")
    p.add_argument("--allow-torchscript", action="store_true",
                   help="read TorchScript (.jit) files, which are compiled code")
    p = sub.add_parser("nemo", help="NVIDIA NeMo audio codecs (.nemo)")
    _add_common(p)
    return parser


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    p.add_argument("source", metavar="SRC", help="local file or folder, or Hub repo id (from the Hugging Face cache)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="fsqtok model folder to write (must not exist)")


def read_kwargs(path: str | None) -> dict[str, Any] | None:
    """``--config KWARGS.json``: a JSON object of constructor kwargs (None when not given)."""
    if path is None:
        return None
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"--config {path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"--config {path}: must hold a JSON object of keyword arguments")
    return raw


def _converter(family: str):
    """The family's converter function, imported now (``fsqtok.convert.<family>.convert_<family>``)."""
    name = f"fsqtok.convert.{family}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        raise UsageError(f"fsqtok convert {family}: not available in this version of fsqtok") from None
    return getattr(module, f"convert_{family}")


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.output)
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise UsageError(f"-o {args.output}: already exists; remove it or choose another folder")
    convert = _converter(args.family)
    kwargs = read_kwargs(args.config) if args.family == "cosmos" else None
    path = resolve_source(args.source)
    if args.family == "cosmos":
        converted: Converted = convert(path, config=kwargs, allow_torchscript=args.allow_torchscript)
    else:
        converted = convert(path)
    converted = dataclasses.replace(converted, source=args.source)
    write_converted(converted, out)
    print(f"{out}: {type(converted.model).__name__} from {args.source} "
          f"({len(converted.skipped)} source tensor(s) skipped)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_run, argv)
