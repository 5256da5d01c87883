"""Audio decoding: integer PCM of every width at its full range, non-finite samples refused, and a
bytes decoder that matches the file reader (soundfile formats and PyAV ones)."""

import numpy as np
import pytest
import soundfile as sf
import torch

from fsqtok.media import MediaError, decode_audio_bytes, read_audio, write_audio

RAMP = np.array([-1.0, -0.5, 0.0, 0.25, 0.5], dtype=np.float64)


@pytest.mark.parametrize("fmt,subtype,step", [("WAV", "PCM_U8", 2 ** -7), ("WAV", "PCM_16", 2 ** -15),
                                              ("WAV", "PCM_24", 2 ** -23), ("WAV", "PCM_32", 2 ** -31),
                                              ("FLAC", "PCM_24", 2 ** -23), ("WAV", "FLOAT", 0.0)])
def test_integer_pcm_is_scaled_by_its_full_range(tmp_path, fmt, subtype, step):
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(str(path), RAMP, 8000, subtype=subtype, format=fmt)
    wav, sr = read_audio(path)
    assert sr == 8000 and wav.shape == (1, 5) and wav.dtype == torch.float32
    assert np.abs(wav[0].numpy() - RAMP).max() <= step / 2 + 1e-7  # exact up to the format's own step
    b, b_sr = decode_audio_bytes(path.read_bytes(), name=path.name)
    assert b_sr == sr and torch.equal(b, wav)


def test_compressed_bytes_go_through_pyav_like_files(tmp_path):
    t = torch.arange(16000) / 16000
    write_audio(tmp_path / "a.m4a", 0.5 * torch.sin(2 * np.pi * 440 * t)[None], 16000)
    wav, sr = read_audio(tmp_path / "a.m4a")
    b, b_sr = decode_audio_bytes((tmp_path / "a.m4a").read_bytes(), name="a.m4a")
    assert b_sr == sr == 16000 and torch.equal(b, wav)
    r, r_sr = decode_audio_bytes((tmp_path / "a.m4a").read_bytes(), sample_rate=8000)
    assert r_sr == 8000 and abs(r.shape[1] - wav.shape[1] / 2) <= 1


def test_non_finite_samples_are_refused(tmp_path):
    sf.write(str(tmp_path / "nan.wav"), np.array([0.1, np.nan, 0.2]), 8000, subtype="FLOAT")
    with pytest.raises(MediaError, match=r"^nan.wav: audio holds NaN or infinite samples"):
        read_audio(tmp_path / "nan.wav")
    with pytest.raises(MediaError, match=r"^row 2: audio holds NaN"):
        decode_audio_bytes((tmp_path / "nan.wav").read_bytes(), name="row 2")


def test_bad_bytes():
    with pytest.raises(MediaError, match=r"^k: empty audio data"):
        decode_audio_bytes(b"", name="k")
    with pytest.raises(MediaError, match=r"^k: not a valid audio file"):
        decode_audio_bytes(b"not audio at all" * 20, name="k")
