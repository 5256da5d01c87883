"""The run identity (``OUT/run.json``) and the merged manifest (``OUT/manifest.json``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..data.token_shards import MANIFEST_FILE
from .writer import DATA_DIR, META_DIR, atomic_write_json, read_sidecar, shard_complete

FORMAT = "fsqtok-shards"
VERSION = 1
RUN_FILE = "run.json"


class OutputMismatch(RuntimeError):
    """The output folder holds a run made with a different tokenizer, source or selection."""


def tokenizer_identity(tok: Any, source: str) -> dict[str, Any]:
    """Tokenizer path/repo id, its config.json content and :meth:`fsqtok.hub.HubMixin.weights_hash`.

    The hash is always recomputed from the loaded weights (never the file's own sha256), so shards,
    token files and generative models name one tokenizer by one hash, also for folders saved by
    older fsqtok versions whose files carried other metadata.
    """
    weights = tok.weights_hash()
    return {"source": str(source), "modality": tok.modality, "hub_config": tok.hub_config(),
            "weights_sha256": weights, "codebook_size": int(tok.codebook_size),
            "num_stages": int(tok.num_stages)}


def run_record(tokenizer: dict[str, Any], source: dict[str, Any], selection: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "tokenizer": tokenizer, "source": source, "selection": selection}


def _comparable(rec: dict[str, Any]) -> dict[str, Any]:
    """What must match for a resume; ``fsqtok_version`` and the tokenizer's path may differ."""
    rec = json.loads(json.dumps(rec))
    tok = rec.get("tokenizer", {})
    tok.pop("source", None)
    for key in ("fsqtok_version", "model_type"):  # model_type: absent from runs before fsqtok.hub
        tok.get("hub_config", {}).pop(key, None)
    return rec


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = _comparable(old), _comparable(new)
    diffs = []
    for section in ("format", "version", "tokenizer", "source", "selection"):
        if a.get(section) != b.get(section):
            if isinstance(a.get(section), dict) and isinstance(b.get(section), dict):
                keys = sorted(k for k in set(a[section]) | set(b[section]) if a[section].get(k) != b[section].get(k))
                diffs.append(f"{section} ({', '.join(keys)})")
            else:
                diffs.append(section)
    return diffs


def _read_run(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / RUN_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise OutputMismatch(f"--output {out}: unreadable {RUN_FILE}; use --overwrite to start over") from None


def check_reusable(out: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Read-only (every rank, before anything is written or deleted): may this run use ``out``?

    ``out`` must be absent, an empty folder, or an fsqtok shards output (it holds run.json) made
    with the same tokenizer, source and selection; with ``overwrite`` any fsqtok shards output
    will do. A folder holding anything else is refused either way, so nothing is deleted first.
    """
    if out.exists() and not out.is_dir():
        raise OutputMismatch(f"--output {out}: exists and is not a folder")
    if (out / RUN_FILE).is_file():
        if overwrite:
            return
        diffs = differences(_read_run(out), record)
        if diffs:
            raise OutputMismatch(f"--output {out}: holds shards made with a different {'; '.join(diffs)}; "
                                 "use another --output or --overwrite to replace them")
    elif out.is_dir() and any(out.iterdir()):
        raise OutputMismatch(f"--output {out}: not empty and not an fsqtok shards output "
                             f"(no {RUN_FILE}); use another --output, or empty it yourself")


def prepare_output(out: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Rank 0: create ``out`` and its run.json, or keep a matching one (resume).

    With ``overwrite`` an existing fsqtok output is cleared first (only what a shards run writes;
    other files stay). Checks with :func:`check_reusable` before it deletes anything.
    """
    check_reusable(out, record, overwrite)
    if overwrite and (out / RUN_FILE).is_file():
        clear_output(out)
    if (out / RUN_FILE).is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RUN_FILE, record)


def check_output(out: Path, record: dict[str, Any]) -> None:
    """Ranks > 0, after rank 0 prepared: the run.json must be ours."""
    diffs = differences(_read_run(out), record)
    if diffs:
        raise OutputMismatch(f"--output {out}: run.json differs in {'; '.join(diffs)}")


def clear_output(out: Path) -> None:
    """Remove what a shards run writes (data/, meta/, run.json, manifest.json); other files are left."""
    shutil.rmtree(out / DATA_DIR, ignore_errors=True)
    shutil.rmtree(out / META_DIR, ignore_errors=True)
    for name in (RUN_FILE, MANIFEST_FILE, f".{RUN_FILE}.tmp", f".{MANIFEST_FILE}.tmp"):
        if (out / name).exists():
            os.remove(out / name)


def content_identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a finished shards output IS, whatever its path: the tokenizer's weights hash, codebook size
    and stages, the row count, and ``content_sha256`` (a sha256 over its shards' own sha256s, in order).

    Re-tokenizing the same images with another tokenizer, or other images, changes it; moving or
    renaming the folder does not. Training runs record it and compare it on resume.
    """
    tok = manifest["tokenizer"]
    digest = hashlib.sha256("\n".join(s["sha256"] for s in manifest["shards"]).encode()).hexdigest()
    return {"tokenizer_sha256": tok["weights_sha256"], "codebook_size": int(tok["codebook_size"]),
            "num_stages": int(tok.get("num_stages", 1)), "rows": int(manifest["totals"]["rows"]),
            "content_sha256": digest}


TOKEN_SPACE = ("tokenizer_sha256", "codebook_size", "num_stages", "grid")


def token_space_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``"key: a -> b"`` for each :data:`TOKEN_SPACE` entry (present in either) where two identities differ."""
    return [f"{k}: {a.get(k)} -> {b.get(k)}" for k in TOKEN_SPACE if (k in a or k in b) and a.get(k) != b.get(k)]


def build_manifest(out: Path, record: dict[str, Any], num_shards: int, num_keys: int,
                   token_dtype: str) -> dict[str, Any]:
    """Merge every shard's sidecar into the manifest dict (all shards must be complete)."""
    missing = [i for i in range(num_shards) if not shard_complete(out, i)]
    if missing:
        raise RuntimeError(f"{out}: {len(missing)} shard(s) not complete (first: {missing[0]}); re-run to finish")
    shards, failures = [], []
    rows = tokens = 0
    for i in range(num_shards):
        side = read_sidecar(out, i)
        shards.append({"name": side["name"], "rows": side["rows"], "tokens": side["tokens"], "sha256": side["sha256"],
                       "first_key": side["first_key"], "last_key": side["last_key"], "failures": len(side["failures"])})
        failures += [dict(f, shard=side["name"]) for f in side["failures"]]
        rows += side["rows"]
        tokens += side["tokens"]
    return {
        **record,
        "token_dtype": token_dtype,
        "shards": shards,
        "totals": {"samples": num_keys, "rows": rows, "tokens": tokens, "failed": len(failures),
                   "shards": num_shards},
        "failures": failures,
    }


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    atomic_write_json(out / MANIFEST_FILE, manifest)
