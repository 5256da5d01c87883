"""Depth maps in metres: 16-bit PNG in millimetres (0 = invalid) or ``.npy``; invalid pixels are NaN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .errors import MediaError, check_extension, check_readable, media_errors

DEPTH_EXTENSIONS = {".png": "16-bit PNG, millimetres", ".npy": "float metres"}
MAX_PNG_METRES = 65.535  # uint16 millimetres


def read_depth(path: str | Path) -> Tensor:
    """Read a depth map as float32 ``(1, H, W)`` metres; invalid pixels (0 mm, non-finite, <= 0) are NaN."""
    ext = check_extension(path, DEPTH_EXTENSIONS, "depth")
    check_readable(path)
    with media_errors(path, "a valid depth file"):
        if ext == ".npy":
            d = np.load(path, allow_pickle=False).astype(np.float32)
        else:
            with Image.open(path) as im:
                if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
                    raise MediaError(f"{Path(path).name}: not a 16-bit depth PNG (mode {im.mode}); "
                                     "depth PNGs hold uint16 millimetres")
                d = np.asarray(im, dtype=np.float32) / 1000.0
    d = np.squeeze(d)
    if d.ndim != 2:
        raise MediaError(f"{Path(path).name}: expected a 2-D depth map, got shape {d.shape}")
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return torch.from_numpy(d)[None]


def write_depth(path: str | Path, depth: Tensor) -> None:
    """Write ``(1, H, W)`` or ``(H, W)`` metres; NaN, inf and values <= 0 are stored as invalid."""
    ext = check_extension(path, DEPTH_EXTENSIONS, "depth")
    d = depth.detach().float().cpu().squeeze()
    if d.ndim != 2:
        raise MediaError(f"{Path(path).name}: expected a depth map (1, H, W) or (H, W), got {tuple(depth.shape)}")
    d = d.numpy().copy()
    invalid = ~np.isfinite(d) | (d <= 0)
    with media_errors(path, "a writable depth file"):
        if ext == ".npy":
            d[invalid] = np.nan
            np.save(path, d.astype(np.float32), allow_pickle=False)
            return
        if np.nanmax(np.where(invalid, np.nan, d), initial=0) > MAX_PNG_METRES:
            raise MediaError(f"{Path(path).name}: depth above {MAX_PNG_METRES} m does not fit 16-bit millimetres; "
                             "write .npy instead")
        mm = np.where(invalid, 0, np.round(d * 1000)).astype(np.uint16)
        Image.fromarray(mm).save(path, format="PNG")
