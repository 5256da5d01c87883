"""Depth maps in metres, as float32 ``(1, H, W)`` with NaN where invalid.

One convention for every reader and writer in fsqtok:

- ``.npy``: float metres; NaN, inf and values <= 0 are invalid. Any range, lossless.
- 16-bit PNG: unsigned integer **millimetres**, 0 = invalid, so it holds 1 mm ... 65.535 m
  (:data:`PNG_RANGE_METRES`) in 1 mm steps. :func:`write_depth` saturates valid depth outside that
  range to its ends (a valid pixel never turns invalid) and logs one warning line, once per process;
  write ``.npy`` for farther depth.
- Float images (Pillow mode ``F``, e.g. a float TIFF in a dataset) are metres.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .errors import MediaError, check_extension, check_readable, media_errors
from .image import open_image

DEPTH_EXTENSIONS = {".png": "16-bit PNG, millimetres", ".npy": "float metres"}
PNG_RANGE_METRES = (0.001, 65.535)  # uint16 millimetres; 0 is reserved for invalid
_MILLIMETRE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_NPY_MAGIC = b"\x93NUMPY"
_log = logging.getLogger(__name__)
_saturation_reported = False


def read_depth(path: str | Path) -> Tensor:
    """Read a depth map as float32 ``(1, H, W)`` metres; invalid pixels (0 mm, non-finite, <= 0) are NaN."""
    ext = check_extension(path, DEPTH_EXTENSIONS, "depth")
    check_readable(path)
    return _decode(path, Path(path).name, npy=ext == ".npy")


def decode_depth_bytes(data: bytes, name: str = "depth bytes") -> Tensor:
    """Decode a depth file's bytes (``.npy``, 16-bit millimetre image or float-metre image) as :func:`read_depth`.

    Returns:
        float32 ``(1, H, W)`` metres, NaN where invalid.
    """
    if not data:
        raise MediaError(f"{name}: empty depth data")
    return _decode(io.BytesIO(data), name, npy=data.startswith(_NPY_MAGIC))


def depth_from_array(d: np.ndarray | Tensor, name: str = "depth array") -> Tensor:
    """A metre array ``(H, W)``, ``(1, H, W)``, ``(1, 1, H, W)`` or ``(H, W, 1)`` -> float32 ``(1, H, W)``, NaN where invalid."""
    d = _plane(np.array(d, dtype=np.float32))
    if d.ndim != 2:
        raise MediaError(f"{name}: expected a 2-D depth map, got shape {d.shape}")
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return torch.from_numpy(d)[None]


def _plane(a: np.ndarray) -> np.ndarray:
    """Drop leading size-1 axes and one trailing size-1 channel axis, down to 2-D (a 1-row map stays 2-D)."""
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    return a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a


def _decode(source: str | Path | IO[bytes], name: str, npy: bool) -> Tensor:
    with media_errors(name, "a valid depth file"):
        if npy:
            d = np.load(source, allow_pickle=False)
        else:
            with open_image(source, name) as im:  # refuses huge declared sizes before decoding
                if im.mode in _MILLIMETRE_MODES:
                    d = np.asarray(im, dtype=np.float32) / 1000.0
                elif im.mode == "F":
                    d = np.asarray(im, dtype=np.float32)
                else:
                    raise MediaError(f"{name}: not a 16-bit depth PNG (mode {im.mode}); "
                                     "depth PNGs hold uint16 millimetres")
        return depth_from_array(d, name)


def write_depth(path: str | Path, depth: Tensor) -> None:
    """Write ``(1, H, W)`` or ``(H, W)`` metres; NaN, inf and values <= 0 are stored as invalid.

    A PNG saturates valid depth to :data:`PNG_RANGE_METRES` (one warning line per process).
    """
    ext = check_extension(path, DEPTH_EXTENSIONS, "depth")
    d = _plane(depth.detach().float().cpu().numpy()) if isinstance(depth, Tensor) else None
    if d is None or d.ndim != 2:
        shape = tuple(depth.shape) if isinstance(depth, Tensor) else type(depth).__name__
        raise MediaError(f"{Path(path).name}: expected a depth map (1, H, W) or (H, W), got {shape}")
    d = d.copy()
    invalid = ~np.isfinite(d) | (d <= 0)
    with media_errors(path, "a writable depth file", write=True):
        if ext == ".npy":
            d[invalid] = np.nan
            np.save(path, d, allow_pickle=False)
            return
        lo, hi = PNG_RANGE_METRES
        outside = ~invalid & ((d < lo) | (d > hi))
        if outside.any():
            _report_saturation(path, d[outside], int(outside.sum()))
        mm = np.where(invalid, 0, np.round(np.clip(d, lo, hi) * 1000)).astype(np.uint16)
        Image.fromarray(mm).save(path, format="PNG")


def _report_saturation(path: str | Path, values: np.ndarray, count: int) -> None:
    global _saturation_reported
    if not _saturation_reported:
        _saturation_reported = True
        lo, hi = PNG_RANGE_METRES
        _log.warning(f"{Path(path).name}: {count} depth pixel(s) in [{values.min():g}, {values.max():g}] m saturated "
                     f"to the 16-bit millimetre PNG range [{lo}, {hi}] m; write .npy to keep them "
                     "(reported once per process)")
