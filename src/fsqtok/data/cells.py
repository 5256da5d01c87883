"""Decoding one Hugging Face ``datasets`` cell into a tensor, the same way for every dataset kind.

Media columns are read undecoded (``{"bytes", "path"}``) and decoded with :mod:`fsqtok.media`:
images with :func:`~fsqtok.media.decode_image_bytes` (exactly as files are read), depth from
16-bit PNGs in millimetres or ``.npy`` arrays in metres (through :func:`~fsqtok.media.read_depth`), audio with soundfile
(other codecs through :func:`~fsqtok.media.read_audio`), video through
:func:`~fsqtok.media.read_video`. Cells of plain arrays (``List``/``ArrayND``) are taken as
tensors in the tokenizer's convention. Then :class:`~fsqtok.data.Preprocess` fits them.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .. import media
from ..media import MediaError
from .preprocess import Preprocess


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def depth_from_array(d: np.ndarray) -> Tensor:
    """A 2-D array of metres -> ``(1, H, W)`` float32, NaN where not finite or <= 0."""
    d = np.squeeze(np.asarray(d, dtype=np.float32)).copy()
    if d.ndim != 2:
        raise ValueError(f"expected a 2-D depth map, got shape {d.shape}")
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return torch.from_numpy(d)[None]


def with_temp_file(data: bytes, suffix: str, reader: Callable[[str], Any]) -> Any:
    """Run a path-based media reader on in-memory bytes (codecs that need a seekable file)."""
    fd, name = tempfile.mkstemp(suffix=suffix or ".bin", prefix="fsqtok-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return reader(name)
    finally:
        os.unlink(name)


def _audio_bytes(data: bytes, suffix: str) -> tuple[Tensor, int]:
    try:
        import soundfile as sf

        arr, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        wav = torch.from_numpy(np.ascontiguousarray(arr.T))
    except Exception:  # noqa: BLE001 - not a soundfile format: let PyAV try
        wav, sr = with_temp_file(data, suffix or ".mp3", media.read_audio)
    if wav.shape[-1] == 0:
        raise ValueError("audio holds no samples")
    return wav, int(sr)


def decode_cell(cell: Any, prep: Preprocess, key: str) -> tuple[Tensor, dict[str, Any]]:
    """One dataset cell -> ``(x, meta)`` in ``prep.modality``'s convention.

    Raises :class:`MediaError` (one line naming ``key``) for anything that does not decode.
    """
    modality = prep.modality
    try:
        if isinstance(cell, dict) and ("bytes" in cell or "path" in cell):
            data, path = cell.get("bytes"), cell.get("path")
            suffix = Path(path).suffix.lower() if path else ""
            if data is None:  # a file referenced by path
                if not path:
                    raise ValueError("empty cell (no bytes, no path)")
                return prep.load(path)
            if modality == "image":
                return prep.image(media.decode_image_bytes(data, channels=prep.channels or 3, name=key), key), {}
            if modality == "depth":
                return prep.depth(with_temp_file(data, suffix or ".png", media.read_depth)), {}
            if modality == "audio":
                return prep.audio(*_audio_bytes(data, suffix))
            v, fps = with_temp_file(data, suffix or ".mp4",
                                    lambda p: media.read_video(p, fps=prep.fps, num_frames=prep.num_frames))
            return prep.video(v, fps, key)
        if modality == "audio" and isinstance(cell, dict) and "array" in cell:  # decoded Audio cells
            wav = torch.as_tensor(np.asarray(cell["array"], dtype=np.float32))
            return prep.audio(wav[None] if wav.dim() == 1 else wav, int(cell["sampling_rate"]))
        if hasattr(cell, "convert"):  # a decoded PIL image: encode losslessly and decode as bytes
            buf = io.BytesIO()
            cell.save(buf, format="PNG")
            return decode_cell({"bytes": buf.getvalue(), "path": None}, prep, key)
        x = torch.as_tensor(np.asarray(cell, dtype=np.float32))
        if modality == "image":
            return prep.image(x[None] if x.dim() == 2 else x, key), {}
        if modality == "depth":
            return prep.depth(depth_from_array(x.numpy())), {}
        if modality == "audio":
            raise ValueError("an array column has no sample rate; store audio in an Audio column")
        return prep.video(x, float(prep.fps or 1.0), key)
    except MediaError as e:
        msg = one_line(e)
        raise MediaError(msg if msg.startswith(key) else f"{key}: {msg}") from None
    except Exception as e:  # noqa: BLE001 - decoders raise anything; one line per failed sample
        raise MediaError(f"{key}: cannot decode as {modality} ({one_line(e)})") from None
