"""What every checkpoint converter shares: source files, strict weight mapping, and the written model folder.

A converter (``fsqtok.convert.cosmos``, ``fsqtok.convert.nemo``) reads a released checkpoint and
returns a :class:`Converted`: the fsqtok model with the weights in place, plus what the model card
must say about where they came from. :func:`load_strict` maps the source tensors onto the model so
that every source tensor is used or deliberately skipped (with a reason), and every model tensor is
filled; :func:`write_converted` writes the model folder atomically.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..hub import CheckpointError, HubMixin, resolve_repo


@dataclass
class Converted:
    """A converted checkpoint.

    ``model`` is the fsqtok model (an ``nn.Module`` with :class:`~fsqtok.hub.HubMixin`) holding the
    source's weights; ``source`` names the checkpoint (Hub repo id or path); ``license_name`` and
    ``license_text`` (a sentence or URL) are the weights' licence; ``source_files`` maps each file the
    converter read (relative name) to its sha256; ``skipped`` maps each source tensor left out on
    purpose to the reason.
    """

    model: HubMixin
    source: str
    license_name: str
    license_text: str
    source_files: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def resolve_source(source: str) -> Path:
    """A local file or folder, or a Hub repo id's snapshot folder from the Hugging Face cache.

    Offline (``HF_HUB_OFFLINE=1``) only the cache is used; a repo missing from it is a one-line
    ``FileNotFoundError`` (the wording of :func:`fsqtok.hub.resolve_repo`).
    """
    return Path(resolve_repo(source))


def sha256_file(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _listed(keys: Sequence[str], limit: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_strict(model: nn.Module, source: Mapping[str, Tensor], rename: Callable[[str], str],
                where: str, skip: Mapping[str, str] | None = None) -> dict[str, str]:
    """Copy ``source`` tensors into ``model``: each used once or skipped, each model tensor filled.

    ``rename`` maps a source tensor name to the model's state-dict key; ``skip`` maps a regular
    expression (matched in full against source names) to the reason those tensors are left out.
    A source tensor with no place in the model, a model tensor with no source, two sources for one
    key, or a shape mismatch is a :class:`~fsqtok.hub.CheckpointError` naming ``where`` and the
    tensors. Returns ``{skipped source name: reason}``. Values are cast to the model's dtypes.
    """
    skipped: dict[str, str] = {}
    mapped: dict[str, str] = {}  # model key -> source name
    expected = model.state_dict()
    extra, twice = [], []
    for name in source:
        reason = next((why for pattern, why in (skip or {}).items() if re.fullmatch(pattern, name)), None)
        if reason is not None:
            skipped[name] = reason
            continue
        key = rename(name)
        if key not in expected:
            extra.append(name)
        elif key in mapped:
            twice.append(f"{mapped[key]} and {name} -> {key}")
        else:
            mapped[key] = name
    missing = [k for k in expected if k not in mapped]
    shapes = [f"{mapped[k]} {tuple(source[mapped[k]].shape)} -> {k} {tuple(expected[k].shape)}"
              for k in mapped if source[mapped[k]].shape != expected[k].shape]
    problems = [f"{label}: {_listed(keys)}" for label, keys in (
        ("source tensors with no place in the model", extra), ("model tensors with no source", missing),
        ("used twice", twice), ("shape mismatch", shapes)) if keys]
    if problems:
        raise CheckpointError(f"{where}: does not fit {type(model).__name__} ({'; '.join(problems)})")
    state = {k: source[name].detach().to(expected[k].dtype) for k, name in mapped.items()}
    model.load_state_dict(state, strict=True)
    return skipped


def model_card(converted: Converted) -> str:
    """Markdown model card: the model's own card body, then source, licence, file hashes and skipped tensors."""
    model = converted.model
    body = model.model_card_body("PATH_OR_REPO_ID")
    files = "\n".join(f"| `{name}` | `{digest}` |" for name, digest in sorted(converted.source_files.items()))
    skipped = "\n".join(f"- `{name}`: {why}" for name, why in sorted(converted.skipped.items())) or "- none"
    slug = re.sub(r"[^a-z0-9]+", "-", converted.license_name.lower()).strip("-")  # the Hub's license_name form
    return (
        f"---\nlibrary_name: fsqtok\nlicense: other\nlicense_name: {slug}\ntags:\n- fsqtok\n- converted\n---\n\n"
        f"{body}\n"
        f"## Source\n\nConverted with `fsqtok convert` from `{converted.source}`.\n\n"
        f"## Licence\n\n{converted.license_name}: {converted.license_text}\n\n"
        f"## Source files (sha256)\n\n| file | sha256 |\n| --- | --- |\n{files}\n\n"
        f"## Source tensors not converted\n\n{skipped}\n"
    )


def write_converted(converted: Converted, out: str | Path) -> Path:
    """Write ``converted`` to the model folder ``out`` (safetensors, config.json, README.md) atomically.

    ``out`` must not exist, or be an empty folder. Everything is written into a hidden sibling
    folder that is renamed to ``out`` at the end; on any error nothing is left behind, not even
    the parent folders this call created.
    """
    out = Path(out)
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise FileExistsError(f"-o {out}: already exists; remove it or choose another folder")
    created = next((p for p in reversed([out.parent, *out.parent.parents]) if not p.exists()), None)
    tmp: Path | None = None
    done = False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        converted.model.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(converted), encoding="utf-8")
        os.replace(tmp, out)  # onto a missing or empty folder
        done = True
    finally:
        if not done:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
    return out


def torch_load_safe(path: str | Path) -> object:
    """``torch.load`` that never runs code from the file (``weights_only=True``), on CPU."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure becomes one line naming the file
        raise CheckpointError(f"{path}: not a weights-only PyTorch checkpoint ({' '.join(str(e).split())[:200]})") from None
