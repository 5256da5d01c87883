"""Label maps (semantic classes, instance or panoptic ids) as int64 ``(H, W)`` tensors.

Read from PNG (8-bit grey, palette index, 16-bit, or RGB-coded ids ``R + 256 G + 256^2 B`` in the
COCO panoptic convention) or from integer ``.npy`` arrays. :mod:`fsqtok.media` covers images and
depth; ids are not pixels (never scaled, never converted between colour spaces), so they are read here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..media import MediaError, open_image
from ..media.errors import check_readable, media_errors

LABEL_EXTENSIONS = (".npy", ".png")


def label_map_from_array(a: np.ndarray, name: str) -> Tensor:
    """A 2-D integer array (or ``(H, W, 3)`` RGB-coded ids) -> int64 ``(H, W)``."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] in (3, 4) and a.dtype == np.uint8:  # COCO panoptic: R + 256 G + 256^2 B
        a = a[..., 0].astype(np.int64) + 256 * a[..., 1].astype(np.int64) + 65536 * a[..., 2].astype(np.int64)
    if a.ndim == 3 and 1 in (a.shape[0], a.shape[-1]):  # (1, H, W) or (H, W, 1)
        a = a[0] if a.shape[0] == 1 else a[..., 0]
    if a.ndim != 2:
        raise MediaError(f"{name}: expected a 2-D label map, got shape {a.shape}")
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        a = a.astype(np.int64)
    if a.dtype.kind not in "iub":
        raise MediaError(f"{name}: label maps hold integer ids, got {a.dtype}")
    return torch.from_numpy(a.astype(np.int64))


def read_label_map(source: str | Path | bytes, name: str | None = None) -> Tensor:
    """A label map file (or its bytes) -> int64 ``(H, W)`` ids: PNG (8/16-bit, palette index, RGB ids) or ``.npy``."""
    name = name or (Path(source).name if not isinstance(source, bytes) else "label map")
    is_npy = source[:6] == b"\x93NUMPY" if isinstance(source, bytes) else Path(source).suffix.lower() == ".npy"
    with media_errors(name, "a valid label map"):
        if not isinstance(source, bytes):
            check_readable(source)
        raw = io.BytesIO(source) if isinstance(source, bytes) else source
        if is_npy:
            return label_map_from_array(np.load(raw, allow_pickle=False), name)
        with open_image(raw, name) as im:  # the media layer's pixel limit, as for every image
            if im.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "RGB"):
                raise MediaError(f"{name}: label PNGs are grey, palette, 16-bit or RGB ids, got mode {im.mode}")
            return label_map_from_array(np.asarray(im), name)
