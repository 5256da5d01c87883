"""``fsqtok shards verify OUT``: check an output folder against its manifest.

Checks: the manifest exists and parses; every listed shard exists with the recorded sha256
and row count; no unlisted shard or leftover temporary file; the token column has the
manifest's unsigned dtype; keys sorted and unique across shards; each row's token count equals
the product of its shape; every index < codebook size; totals add up. Prints ``OK: N rows in M shards`` or one line per problem (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow.parquet as pq

from ..cli_support import OneLineParser, UsageError, run_command
from .manifest import MANIFEST_FILE
from ..files import sha256_file
from .writer import DATA_DIR


def _check_shard(name: str, p: Path, s: dict[str, Any], codebook: int, dtype: str,
                 problems: list[str]) -> tuple[int, list[str]]:
    """Problems of one listed shard (appended to ``problems``); returns its row count and keys (0, [] if unreadable)."""
    if sha256_file(p) != s["sha256"]:
        problems.append(f"{name}: checksum mismatch (file changed since it was written)")
    try:
        t = pq.read_table(p, columns=["key", "tokens", "shape"])
    except Exception as e:  # noqa: BLE001 - any unreadable file is one problem line
        problems.append(f"{name}: unreadable Parquet ({' '.join(str(e).split())})")
        return 0, []
    if len(t) != s["rows"]:
        problems.append(f"{name}: {len(t)} rows, manifest says {s['rows']}")
    value_type = str(t.schema.field("tokens").type.value_type)
    if value_type != dtype:
        problems.append(f"{name}: tokens stored as {value_type}, manifest says {dtype}")
    tokens = t.column("tokens").combine_chunks()
    values = tokens.values.to_numpy(zero_copy_only=False)
    lengths = np.diff(tokens.offsets.to_numpy())
    if values.size and int(values.max()) >= codebook:
        bad = int((values >= codebook).sum())
        problems.append(f"{name}: {bad} token(s) >= codebook size {codebook} (max {int(values.max())})")
    shape = t.column("shape").to_pylist()
    wrong = [i for i, (n, sh) in enumerate(zip(lengths, shape)) if int(np.prod(sh)) != int(n)]
    if wrong:
        problems.append(f"{name}: {len(wrong)} row(s) whose token count differs from their shape")
    return len(t), t.column("key").to_pylist()


def verify(out_dir: str | Path) -> list[str]:
    """Every problem found in ``out_dir``, one line each; empty when the output is sound."""
    out = Path(out_dir)
    path = out / MANIFEST_FILE
    if not path.is_file():
        return [f"{out}: no {MANIFEST_FILE} (run unfinished, or not an fsqtok shards output)"]
    try:
        m = json.loads(path.read_text())
        shards = m["shards"]
        codebook = int(m["tokenizer"]["codebook_size"])
        totals = m["totals"]
        dtype = str(m["token_dtype"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        return [f"{path}: unreadable manifest ({type(e).__name__}: {e})"]
    problems: list[str] = []
    listed = {s["name"] for s in shards}
    data = out / DATA_DIR
    for p in sorted(data.glob("*")) if data.is_dir() else []:
        rel = f"{DATA_DIR}/{p.name}"
        if p.name.endswith(".tmp"):
            problems.append(f"{rel}: leftover temporary file")
        elif p.suffix == ".parquet" and rel not in listed:
            problems.append(f"{rel}: shard not listed in the manifest")
    rows_total, prev_key = 0, None
    for s in shards:
        name = s["name"]
        if not (out / name).is_file():
            problems.append(f"{name}: missing shard")
            continue
        rows, keys = _check_shard(name, out / name, s, codebook, dtype, problems)
        rows_total += rows
        for key in keys:
            if prev_key is not None and key <= prev_key:
                problems.append(f"{name}: key {key!r} out of order or duplicated")
                break
            prev_key = key
    if rows_total != totals.get("rows"):
        problems.append(f"{MANIFEST_FILE}: totals say {totals.get('rows')} rows, shards hold {rows_total}")
    if totals.get("rows", 0) + totals.get("failed", 0) != totals.get("samples"):
        problems.append(f"{MANIFEST_FILE}: rows + failed != samples ({totals})")
    if len(m.get("failures", [])) != totals.get("failed"):
        problems.append(f"{MANIFEST_FILE}: {len(m.get('failures', []))} failures listed, totals say {totals.get('failed')}")
    return problems


def _run(argv: list[str]) -> int:
    parser = OneLineParser(prog="fsqtok shards", description="Index-shard tools.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    p = sub.add_parser("verify", help="check checksums, counts, token range and the manifest")
    p.add_argument("output", metavar="OUT", help="a folder written by `fsqtok tokenize`")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    args = parser.parse_args(argv)
    if not Path(args.output).is_dir():
        raise UsageError(f"{args.output}: no such folder")
    try:
        problems = verify(args.output)
    except Exception as e:  # noqa: BLE001 - an unreadable output is one more problem to list
        problems = [f"{args.output}: {' '.join(str(e).split()) or type(e).__name__}"]
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 1
    m = json.loads((Path(args.output) / MANIFEST_FILE).read_text())
    print(f"OK: {m['totals']['rows']} rows in {len(m['shards'])} shards")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``fsqtok shards verify OUT``: 0 when clean, 1 with one line per problem, 2 for bad arguments."""
    return run_command(_run, argv)
