"""The token-file format that ``fsqtok encode`` writes and ``fsqtok decode`` reads.

A token file is safetensors: one int64 tensor per input, named ``tokens.<i>``, with metadata
``fsqtok`` (a JSON record: tokenizer, ``weights_sha256`` (:meth:`~fsqtok.hub.HubMixin.weights_hash`,
which decides the tokens), modality and, per item, the source file, input shape, and sample rate
or fps). Files written before weights hashes record ``config_hash`` (:func:`legacy_config_hash`)
instead; they still decode with a tokenizer of that config.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from torch import Tensor

from ..files import atomic_path

META_KEY = "fsqtok"  # the safetensors metadata entry that holds the JSON record


def write_tokens_file(path: str | Path, tokens: Sequence[Tensor], meta: dict[str, Any]) -> None:
    """Write ``tokens`` (one int64 tensor per item of ``meta["items"]``) and ``meta``, whole or not at all."""
    from safetensors.torch import save_file

    if len(tokens) != len(meta["items"]):
        raise ValueError(f"{path}: {len(tokens)} token tensors for {len(meta['items'])} items")
    tensors = {f"tokens.{i}": t.cpu().contiguous() for i, t in enumerate(tokens)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})


def read_tokens_file(path: str | Path) -> tuple[dict[str, Any], list[Tensor]]:
    """``(metadata, [int64 tokens per item])`` of a file written by ``fsqtok encode``."""
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such tokens file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "null"))
            if not meta:
                raise ValueError(f"{path}: not an fsqtok tokens file (no fsqtok metadata); write it with `fsqtok encode`")
            tokens = [f.get_tensor(f"tokens.{i}") for i in range(len(meta["items"]))]
    except (SafetensorError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a valid fsqtok tokens file ({e})") from None
    return meta, tokens


def legacy_config_hash(tok: Any) -> str:
    """What token files written before weights hashes held: a hash of config.json (model_type came later)."""
    config = {k: v for k, v in tok.hub_config().items() if k != "model_type"}
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def check_same_tokenizer(tok: Any, meta: dict[str, Any], tokens_path: str, tokenizer: str) -> None:
    """Refuse (``ValueError`` naming both) tokens that ``tok`` (loaded from ``tokenizer``) did not make."""
    if "weights_sha256" in meta:
        made, ours, what = meta["weights_sha256"], tok.weights_hash(), "weights"
    else:  # written before token files recorded the weights
        made, ours, what = meta.get("config_hash"), legacy_config_hash(tok), "config"
    if made != ours:
        raise ValueError(
            f"{tokens_path}: tokens come from tokenizer {meta.get('tokenizer')} ({what} {str(made)[:16]}), "
            f"not {tokenizer} ({what} {ours[:16]}); decode with the tokenizer that encoded them"
        )
