"""A torch ``Dataset`` over any random-access source, where a sample that fails is returned, not raised."""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor

from ..media import MediaError
from .cells import one_line
from .preprocess import Preprocess


class Source(Protocol):
    """What :class:`SourceDataset` needs: sorted string ``keys`` and ``load(i, prep) -> (x, meta, label)``."""

    keys: list[str]

    def load(self, index: int, prep: Preprocess) -> tuple[Tensor, dict[str, Any], str | None]: ...


def failed_item(index: int, key: str, e: BaseException) -> dict[str, Any]:
    """The item of a sample that failed: ``x=None`` and a one-line ``error`` naming the sample."""
    msg = one_line(e)
    if not isinstance(e, MediaError):
        msg = f"{key}: {type(e).__name__}: {msg}"
    return {"index": index, "key": key, "x": None, "meta": {}, "label": None, "error": msg}


def all_finite(x: Tensor) -> bool:
    """No NaN or inf in ``x`` (any dtype). A finite sum proves it in one cheap reduction (a NaN or inf
    anywhere makes the sum NaN or inf); only a sum that is not finite (also an overflow) looks closer."""
    return math.isfinite(float(x.sum())) or bool(torch.isfinite(x).all())


def checked_item(index: int, key: str, x: Tensor, meta: dict[str, Any], label: str | None,
                 modality: str) -> dict[str, Any]:
    """The item of a decoded sample; NaN or inf outside depth (where NaN means invalid) is a failure."""
    if modality != "depth" and not all_finite(x):
        raise MediaError(f"{key}: NaN or inf values")
    return {"index": index, "key": key, "x": x, "meta": meta, "label": label, "error": None}


def load_item(source: Source, index: int, prep: Preprocess) -> dict[str, Any]:
    """``{"index", "key", "x" or None, "meta", "label", "error"}`` for sample ``index`` of ``source``."""
    key = source.keys[index]
    try:
        x, meta, label = source.load(index, prep)
        return checked_item(index, key, x, meta, label, prep.modality)
    except (MediaError, OSError, ValueError, RuntimeError) as e:
        return failed_item(index, key, e)


class SourceDataset(torch.utils.data.Dataset):
    """Index -> :func:`load_item`'s dict; failures are returned (``x=None``, ``error``), not raised."""

    def __init__(self, source: Source, prep: Preprocess) -> None:
        self.source, self.prep = source, prep

    def __len__(self) -> int:
        return len(self.source.keys)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return load_item(self.source, index, self.prep)
