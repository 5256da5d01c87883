"""Audio: WAV, FLAC and OGG through soundfile; MP3, M4A and Opus through PyAV.

Waveforms are float32 ``(C, T)``; ``read_audio(path, sample_rate=...)`` resamples with
``torchaudio.functional.resample``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import Tensor

from .errors import MediaError, check_extension, check_readable, media_errors

SOUNDFILE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
PYAV_CODECS = {".mp3": ("mp3", "libmp3lame"), ".m4a": ("mp4", "aac"), ".opus": ("ogg", "libopus")}
AUDIO_EXTENSIONS = {**{k: "soundfile" for k in SOUNDFILE_FORMATS}, **{k: "PyAV" for k in PYAV_CODECS}}
OPUS_RATE = 48000  # libopus encodes 48 kHz only


def read_audio(path: str | Path, sample_rate: int | None = None) -> tuple[Tensor, int]:
    """Read an audio file.

    Integer PCM of any width (8-bit unsigned, 16, 24, 32-bit) is scaled by its full range to [-1, 1].

    Args:
        path: a WAV, FLAC, OGG, MP3, M4A or Opus file.
        sample_rate: resample to this rate (Hz); ``None`` keeps the file's rate.
    Returns:
        ``(waveform float32 (C, T), sample_rate)``.
    """
    ext = check_extension(path, AUDIO_EXTENSIONS, "audio")
    check_readable(path)
    name = Path(path).name
    with media_errors(name, "a valid audio file"):
        wav, sr = _read_soundfile(path) if ext in SOUNDFILE_FORMATS else _read_pyav(path, name)
    return _checked(wav, sr, name, sample_rate)


def decode_audio_bytes(data: bytes, sample_rate: int | None = None, name: str = "audio bytes") -> tuple[Tensor, int]:
    """Decode an audio file's bytes (any format soundfile or PyAV reads) exactly as :func:`read_audio` reads a file.

    Returns:
        ``(waveform float32 (C, T), sample_rate)``.
    """
    if not data:
        raise MediaError(f"{name}: empty audio data")
    with media_errors(name, "a valid audio file"):
        try:
            wav, sr = _read_soundfile(io.BytesIO(data))
        except sf.LibsndfileError:  # not a format libsndfile knows (MP3 on old builds, M4A, Opus...): PyAV
            wav, sr = _read_pyav(io.BytesIO(data), name)
    return _checked(wav, sr, name, sample_rate)


def _checked(wav: Tensor, sr: int, name: str, sample_rate: int | None) -> tuple[Tensor, int]:
    if wav.shape[-1] == 0:
        raise MediaError(f"{name}: audio file holds no samples")
    if not torch.isfinite(wav).all():  # float WAV/FLAC can store NaN or inf
        raise MediaError(f"{name}: audio holds NaN or infinite samples")
    if sample_rate is not None and sample_rate != sr:
        wav, sr = AF.resample(wav, sr, sample_rate), sample_rate
    return wav, sr


def _read_soundfile(source: str | Path | IO[bytes]) -> tuple[Tensor, int]:
    data, sr = sf.read(source if not isinstance(source, Path) else str(source), dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)  # (T, C) -> (C, T)


def _read_pyav(source: str | Path | IO[bytes], name: str) -> tuple[Tensor, int]:
    import av

    with av.open(source if not isinstance(source, Path) else str(source)) as container:
        if not container.streams.audio:
            raise MediaError(f"{name}: no audio stream")
        stream = container.streams.audio[0]
        to_planar = av.AudioResampler(format="fltp")  # planar float32: (C, n) per frame, integer PCM scaled
        chunks = [f.to_ndarray() for frame in container.decode(stream) for f in to_planar.resample(frame)]
        chunks += [f.to_ndarray() for f in to_planar.resample(None)]
        sr = stream.codec_context.sample_rate or stream.rate
    if not chunks:
        raise MediaError(f"{name}: audio stream holds no samples")
    return torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32)), int(sr)


def write_audio(path: str | Path, wav: Tensor, sample_rate: int) -> None:
    """Write a waveform ``(C, T)`` or ``(T,)`` (clipped to [-1, 1]) at ``sample_rate`` Hz."""
    ext = check_extension(path, AUDIO_EXTENSIONS, "audio")
    if not isinstance(wav, Tensor) or wav.ndim not in (1, 2) or wav.shape[-1] == 0:
        shape = tuple(wav.shape) if isinstance(wav, Tensor) else type(wav).__name__
        raise MediaError(f"{Path(path).name}: expected a waveform (C, T) or (T,), got {shape}")
    wav = wav.detach().float().cpu()
    wav = (wav[None] if wav.ndim == 1 else wav).clamp(-1, 1)
    if not torch.isfinite(wav).all():
        raise MediaError(f"{Path(path).name}: waveform contains NaN or inf")
    with media_errors(path, "a writable audio file", write=True):
        if ext in SOUNDFILE_FORMATS:
            sf.write(str(path), wav.T.numpy(), int(sample_rate), format=SOUNDFILE_FORMATS[ext])
        else:
            _write_pyav(path, wav, int(sample_rate), *PYAV_CODECS[ext])


def _write_pyav(path: str | Path, wav: Tensor, sample_rate: int, container_format: str, codec: str) -> None:
    import av

    if codec == "libopus" and sample_rate != OPUS_RATE:
        wav, sample_rate = AF.resample(wav, sample_rate, OPUS_RATE), OPUS_RATE
    layout = "mono" if wav.shape[0] == 1 else "stereo"
    if wav.shape[0] > 2:
        raise MediaError(f"{Path(path).name}: {wav.shape[0]} channels; compressed formats take mono or stereo")
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav.numpy()), format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
