"""Decoding one Hugging Face ``datasets`` cell into a tensor, the same way for every dataset kind.

Media columns are read undecoded (``{"bytes", "path"}``) and decoded with :mod:`fsqtok.media`:
images, depth, audio and video with :mod:`fsqtok.media`'s ``decode_*_bytes`` (exactly as files are
read: one decoder per kind). Cells of plain arrays (``List``/``ArrayND``) are taken as
tensors in the tokenizer's convention. Then :class:`~fsqtok.data.Preprocess` fits them.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import media
from ..media import MediaError
from .preprocess import Preprocess


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def decode_cell(cell: Any, prep: Preprocess, key: str) -> tuple[Tensor, dict[str, Any]]:
    """One dataset cell -> ``(x, meta)`` in ``prep.modality``'s convention.

    Raises :class:`MediaError` (one line naming ``key``) for anything that does not decode.
    """
    modality = prep.modality
    try:
        if isinstance(cell, dict) and ("bytes" in cell or "path" in cell):
            data, path = cell.get("bytes"), cell.get("path")
            if data is None:  # a file referenced by path
                if not path:
                    raise ValueError("empty cell (no bytes, no path)")
                return prep.load(path)
            if modality == "image":
                return prep.image(media.decode_image_bytes(data, channels=prep.channels or 3, name=key), key), {}
            if modality == "depth":
                return prep.depth(media.decode_depth_bytes(data, name=key)), {}
            if modality == "audio":
                return prep.audio(*media.decode_audio_bytes(data, name=key))
            v, fps = media.decode_video_bytes(data, fps=prep.fps, num_frames=prep.num_frames, name=key)
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
            return prep.depth(media.depth_from_array(x.numpy(), name=key)), {}
        if modality == "audio":
            raise ValueError("an array column has no sample rate; store audio in an Audio column")
        return prep.video(x, float(prep.fps or 1.0), key)
    except MediaError as e:
        msg = one_line(e)
        raise MediaError(msg if msg.startswith(key) else f"{key}: {msg}") from None
    except Exception as e:  # noqa: BLE001 - decoders raise anything; one line per failed sample
        raise MediaError(f"{key}: cannot decode as {modality} ({one_line(e)})") from None
