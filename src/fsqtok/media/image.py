"""Images: PNG, JPEG, WebP and BMP through Pillow, as float32 ``(3, H, W)`` in [-1, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .errors import MediaError, check_extension, check_readable, media_errors

IMAGE_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}


def read_image(path: str | Path) -> Tensor:
    """Read an image as float32 ``(3, H, W)`` in [-1, 1]; grey and RGBA are converted to RGB."""
    check_extension(path, IMAGE_EXTENSIONS, "image")
    check_readable(path)
    with media_errors(path, "a valid image file"):
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(rgb).permute(2, 0, 1).div(127.5).sub(1.0).contiguous()


def to_uint8_hwc(x: Tensor, path: str | Path) -> np.ndarray:
    """``(3, H, W)`` or ``(1, H, W)`` in [-1, 1] -> uint8 ``(H, W, 3)`` (values clamped)."""
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[0] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise MediaError(f"{Path(path).name}: expected an image tensor (3, H, W) or (1, H, W) in [-1, 1], got {shape}")
    if not torch.isfinite(x).all():
        raise MediaError(f"{Path(path).name}: image tensor contains NaN or inf")
    x = x.detach().float().cpu().expand(3, -1, -1)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def write_image(path: str | Path, x: Tensor, quality: int = 95) -> None:
    """Write ``(3, H, W)`` or ``(1, H, W)`` in [-1, 1] as PNG (lossless), JPEG or WebP (``quality``)."""
    ext = check_extension(path, IMAGE_EXTENSIONS, "image")
    array = to_uint8_hwc(x, path)
    kwargs = {"quality": quality} if ext in (".jpg", ".jpeg", ".webp") else {}
    with media_errors(path, "a writable image file"):
        Image.fromarray(array).save(path, format=IMAGE_EXTENSIONS[ext], **kwargs)
