"""Images: PNG, JPEG, WebP and BMP through Pillow, as float32 ``(C, H, W)`` in [-1, 1].

One decoder serves files (:func:`read_image`) and in-memory bytes (:func:`decode_image_bytes`, used
by the shards and data layers), so that every caller sees the same pixels:

- Every integer pixel type is scaled by its own full range: 1-bit by 1, 8-bit (``L``, ``RGB``,
  palette, ``CMYK``...) by 255, 16-bit (``I;16``, ``I;16B``, ``I``) by 65535. A 16-bit PNG keeps its
  precision; it is never clipped to 8 bits.
- Alpha (``LA``, ``RGBA``, a palette or colour key with transparency) is composited over white
  (:data:`ALPHA_BACKGROUND`), as a viewer shows the image on a white page.
- EXIF orientation is applied, so pixels come out the way the image is displayed.
- ``channels=1`` gives grey: grey sources as they are, colour ones by ITU-R 601 luma (as Pillow's
  ``convert("L")``) computed at full precision. ``channels=3`` gives RGB, with grey repeated.
- A file that declares more than :data:`MAX_IMAGE_PIXELS` pixels is refused with a :class:`MediaError`
  before any pixel is decoded (a tiny PNG can declare a huge size and take gigabytes otherwise).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .errors import MediaError, as_path, check_extension, check_readable, media_errors

IMAGE_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}
MAX_IMAGE_PIXELS = 8192 * 8192  # 67.1 megapixels: larger declared sizes are refused before decoding
ALPHA_BACKGROUND = 1.0  # transparent pixels show white (in [0, 1] before the [-1, 1] mapping)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights of R, G, B: the one luma of fsqtok (as PIL's convert("L"))

# (dtype kind, bytes) -> full scale; Pillow's 32-bit "I" mode holds the samples of 16-bit files
_FULL_SCALE = {("b", 1): 1.0, ("u", 1): 255.0, ("u", 2): 65535.0, ("i", 4): 65535.0}
_AS_RGB = {"CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "RGBX": "RGB", "RGBa": "RGBA",
           "La": "LA", "PA": "RGBA"}
_EXIF_ORIENTATION = 0x0112
# 8-bit value v -> its pixel in [-1, 1], by the operations of _unit_pixels and _signed_from_unit
_SIGNED_U8 = (torch.from_numpy(np.arange(256, dtype=np.float32) / np.float32(255.0))
              .mul(2.0).sub(1.0).clamp(-1.0, 1.0).numpy())


def read_image(path: str | Path, channels: int = 3, max_pixels: int = MAX_IMAGE_PIXELS) -> Tensor:
    """Read an image file as float32 ``(channels, H, W)`` in [-1, 1].

    Args:
        path: a PNG, JPEG, WebP or BMP file.
        channels: 1 for grey ``(1, H, W)``, 3 for RGB ``(3, H, W)``.
        max_pixels: refuse files that declare more pixels than this (see :data:`MAX_IMAGE_PIXELS`).
    """
    path = as_path(path)
    check_extension(path, IMAGE_EXTENSIONS, "image")
    check_readable(path)
    return _decode(path, path.name, channels, max_pixels)


def decode_image_bytes(data: bytes, channels: int = 3, name: str = "image bytes",
                       max_pixels: int = MAX_IMAGE_PIXELS) -> Tensor:
    """Decode encoded image bytes (any format Pillow reads) exactly as :func:`read_image` reads a file.

    Args:
        data: the encoded file contents.
        channels: 1 for grey ``(1, H, W)``, 3 for RGB ``(3, H, W)``.
        name: how errors name the source (a file name or a row key).
        max_pixels: refuse images that declare more pixels than this.
    Returns:
        float32 ``(channels, H, W)`` in [-1, 1].
    """
    if not data:
        raise MediaError(f"{name}: empty image data")
    return _decode(io.BytesIO(data), name, channels, max_pixels)


def _decode(source: str | Path | IO[bytes], name: str, channels: int, max_pixels: int) -> Tensor:
    if channels not in (1, 3):
        raise MediaError(f"{name}: channels must be 1 (grey) or 3 (RGB), got {channels}")
    with media_errors(name, "a valid image file"):
        with open_image(source, name, max_pixels) as im:
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
            arr, mode = _mode_pixels(im)
    arr = _orient(arr.reshape(*arr.shape[:2], -1), orientation)
    if arr.dtype == np.uint8 and mode not in ("LA", "RGBA") and not (channels == 1 and arr.shape[-1] == 3):
        return _signed_from_table(arr, channels)
    return _signed_from_unit(_unit_pixels(arr, mode, name), channels)


def _signed_from_table(arr: np.ndarray, channels: int) -> Tensor:
    """8-bit ``(H, W, 1 or 3)`` without alpha -> float32 ``(channels, H, W)`` in [-1, 1] by one table
    look-up per value: the floats of :func:`_signed_from_unit`, in a fraction of its time."""
    if channels == 3 and arr.shape[-1] == 1:
        arr = np.broadcast_to(arr, (*arr.shape[:2], 3))
    return torch.from_numpy(np.take(_SIGNED_U8, arr.transpose(2, 0, 1)))


def _signed_from_unit(unit: np.ndarray, channels: int) -> Tensor:
    """Float32 ``(H, W, 1 or 3)`` in [0, 1] -> float32 ``(channels, H, W)`` in [-1, 1] (luma or repeated grey)."""
    if channels == 1 and unit.shape[-1] == 3:
        unit = unit @ np.array(LUMA, dtype=np.float32)[:, None]
    elif channels == 3 and unit.shape[-1] == 1:
        unit = np.repeat(unit, 3, axis=-1)
    x = torch.from_numpy(np.ascontiguousarray(unit)).permute(2, 0, 1)
    return x.mul(2.0).sub(1.0).clamp(-1.0, 1.0).contiguous()


def open_image(source: str | Path | IO[bytes], name: str, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """``PIL.Image.open`` (lazy: header only) that refuses a declared size above ``max_pixels`` in one
    :class:`MediaError` line naming ``name``, without Pillow's warning. For any reader of image files
    (label maps, masks) that needs Pillow's own modes; use it as a context manager."""
    limit = f"the limit of {max_pixels} pixels (fsqtok.media.image.MAX_IMAGE_PIXELS)"
    try:
        with warnings.catch_warnings():  # Pillow's multi-line bomb warning: we give our own one-line error
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source)
    except Image.DecompressionBombError:
        raise MediaError(f"{name}: declares more than {2 * Image.MAX_IMAGE_PIXELS} pixels, "
                         f"over {limit}; refusing to decode it") from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise MediaError(f"{name}: declares {w}x{h} = {w * h} pixels, over {limit}; refusing to decode it")
    return im


def _mode_pixels(im: Image.Image) -> tuple[np.ndarray, str]:
    """The pixels as Pillow holds them after reducing the mode to grey/RGB (with alpha where it has
    transparency): an integer ``(H, W[, C])`` array and its mode."""
    mode = im.mode
    if mode in _AS_RGB:
        im = im.convert(_AS_RGB[mode])
    elif mode in ("P", "L", "RGB") and "transparency" in im.info:  # palette index or colour key
        im = im.convert("LA" if mode == "L" else "RGBA")
    elif mode == "P":
        im = im.convert("RGB")
    return np.asarray(im), im.mode


def _unit_pixels(arr: np.ndarray, mode: str, name: str) -> np.ndarray:
    """Integer ``(H, W, C)`` pixels of Pillow ``mode`` -> float32 ``(H, W, 1 or 3)`` in [0, 1], alpha
    composited over :data:`ALPHA_BACKGROUND`."""
    scale = _FULL_SCALE.get((arr.dtype.kind, arr.dtype.itemsize))
    if scale is None:
        raise MediaError(f"{name}: unsupported pixel type (Pillow mode {mode}, {arr.dtype}); "
                         "use 1-, 8- or 16-bit integer images")
    if arr.dtype.kind == "i" and arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise MediaError(f"{name}: 32-bit integer pixels outside the 16-bit range [0, 65535]; "
                         "save it as an 8- or 16-bit image")
    arr = arr.astype(np.float32) / np.float32(scale)
    if mode in ("LA", "RGBA"):
        colour, alpha = arr[..., :-1], arr[..., -1:]
        arr = colour * alpha + np.float32(ALPHA_BACKGROUND) * (1 - alpha)
    return arr


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1..8 to ``(H, W, C)``: the pixels as displayed (as ``ImageOps.exif_transpose``)."""
    if orientation in (5, 6, 7, 8):  # the stored image is transposed relative to its display
        a = a.transpose(1, 0, 2)
    if orientation in (2, 3, 6, 7):  # mirrored left-right
        a = a[:, ::-1]
    if orientation in (3, 4, 7, 8):  # mirrored top-bottom
        a = a[::-1]
    return a


def to_uint8_hwc(x: Tensor, path: str | Path) -> np.ndarray:
    """``(3, H, W)`` or ``(1, H, W)`` in [-1, 1] -> uint8 ``(H, W, 3)`` or ``(H, W)`` (values clamped)."""
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[0] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise MediaError(f"{Path(path).name}: expected an image tensor (3, H, W) or (1, H, W) in [-1, 1], got {shape}")
    if not torch.isfinite(x).all():
        raise MediaError(f"{Path(path).name}: image tensor contains NaN or inf")
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def write_image(path: str | Path, x: Tensor, quality: int = 95) -> None:
    """Write ``(3, H, W)`` RGB or ``(1, H, W)`` grey in [-1, 1] as 8-bit PNG (lossless), JPEG or WebP (``quality``)."""
    ext = check_extension(path, IMAGE_EXTENSIONS, "image")
    array = to_uint8_hwc(x, path)
    kwargs = {"quality": quality} if ext in (".jpg", ".jpeg", ".webp") else {}
    with media_errors(path, "a writable image file", write=True):
        Image.fromarray(array).save(path, format=IMAGE_EXTENSIONS[ext], **kwargs)
