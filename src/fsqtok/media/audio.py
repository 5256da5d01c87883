"""Audio: WAV, FLAC and OGG through soundfile; MP3, M4A and Opus through PyAV.

Waveforms are float32 ``(C, T)``; ``read_audio(path, sample_rate=...)`` resamples with
``torchaudio.functional.resample``.
"""

from __future__ import annotations

from pathlib import Path

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

    Args:
        path: a WAV, FLAC, OGG, MP3, M4A or Opus file.
        sample_rate: resample to this rate (Hz); ``None`` keeps the file's rate.
    Returns:
        ``(waveform float32 (C, T), sample_rate)``.
    """
    ext = check_extension(path, AUDIO_EXTENSIONS, "audio")
    check_readable(path)
    with media_errors(path, "a valid audio file"):
        wav, sr = _read_soundfile(path) if ext in SOUNDFILE_FORMATS else _read_pyav(path)
    if wav.shape[-1] == 0:
        raise MediaError(f"{Path(path).name}: audio file holds no samples")
    if sample_rate is not None and sample_rate != sr:
        wav, sr = AF.resample(wav, sr, sample_rate), sample_rate
    return wav, sr


def _read_soundfile(path: str | Path) -> tuple[Tensor, int]:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def _read_pyav(path: str | Path) -> tuple[Tensor, int]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise MediaError(f"{Path(path).name}: no audio stream")
        stream = container.streams.audio[0]
        to_planar = av.AudioResampler(format="fltp")  # planar float32: (C, n) per frame
        chunks = [f.to_ndarray() for frame in container.decode(stream) for f in to_planar.resample(frame)]
        chunks += [f.to_ndarray() for f in to_planar.resample(None)]
        sr = stream.codec_context.sample_rate or stream.rate
    if not chunks:
        raise MediaError(f"{Path(path).name}: audio stream holds no samples")
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
    with media_errors(path, "a writable audio file"):
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
