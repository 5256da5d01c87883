"""Media I/O: round trips per format, frame sampling, resampling, and one-line MediaErrors."""

import numpy as np
import pytest
import torch

from fsqtok import media
from fsqtok.media import MediaError


def test_image_round_trips(tmp_path):
    x = torch.rand(3, 37, 50) * 2 - 1
    media.write_image(tmp_path / "a.png", x)
    y = media.read_image(tmp_path / "a.png")
    assert y.shape == (3, 37, 50) and y.dtype == torch.float32
    assert (y - x).abs().max() <= 1 / 127.5 + 1e-6  # PNG is lossless up to 8-bit quantization
    for ext in ("jpg", "webp"):
        media.write_image(tmp_path / f"a.{ext}", x)
        assert media.read_image(tmp_path / f"a.{ext}").shape == (3, 37, 50)
    media.write_image(tmp_path / "g.png", torch.zeros(1, 4, 4))  # grey in, RGB out
    assert torch.allclose(media.read_image(tmp_path / "g.png"), torch.full((3, 4, 4), 128 / 127.5 - 1), atol=1e-6)  # 0 -> 128


@pytest.mark.parametrize("ext,exact", [("wav", True), ("flac", True), ("ogg", False), ("mp3", False), ("opus", False)])
def test_audio_round_trips(tmp_path, ext, exact):
    sr = 16000
    t = torch.arange(sr) / sr
    wav = torch.stack([0.5 * torch.sin(2 * np.pi * 440 * t), 0.3 * torch.sin(2 * np.pi * 220 * t)])
    path = tmp_path / f"a.{ext}"
    media.write_audio(path, wav, sr)
    out, out_sr = media.read_audio(path, sample_rate=sr)
    assert out_sr == sr and out.shape[0] == 2
    if exact:
        assert out.shape == wav.shape and (out - wav).abs().max() < 1e-4
    else:
        assert abs(out.shape[1] - sr) < 0.1 * sr


def test_audio_resampling_length(tmp_path):
    media.write_audio(tmp_path / "a.wav", torch.zeros(1, 22050) + 0.1, 22050)
    out, sr = media.read_audio(tmp_path / "a.wav", sample_rate=16000)
    assert sr == 16000 and out.shape == (1, 16000)


def test_video_round_trip_and_sampling(tmp_path):
    v = torch.rand(3, 16, 32, 48) * 2 - 1
    media.write_video(tmp_path / "v.mp4", v, fps=8)
    full, fps = media.read_video(tmp_path / "v.mp4")
    assert full.shape == (3, 16, 32, 48) and fps == 8
    half, fps = media.read_video(tmp_path / "v.mp4", fps=4)
    assert half.shape[1] == 8 and fps == 4
    assert torch.equal(half, full[:, ::2])  # nearest frames at 4 fps are every other frame
    part, _ = media.read_video(tmp_path / "v.mp4", start=1.0, num_frames=3)
    assert torch.equal(part, full[:, 8:11])
    media.write_video(tmp_path / "odd.webm", torch.zeros(3, 2, 31, 33), fps=8)  # odd sizes padded to even
    assert media.read_video(tmp_path / "odd.webm")[0].shape == (3, 2, 32, 34)


@pytest.mark.parametrize("reader,name", [(media.read_image, "broken.png"), (media.read_audio, "broken.wav"),
                                         (media.read_video, "broken.mp4"), (media.read_depth, "broken.npy")])
def test_corrupt_empty_missing_files(tmp_path, reader, name):
    path = tmp_path / name
    with pytest.raises(MediaError, match=f"^{name}: no such file"):
        reader(path)
    path.write_bytes(b"")
    with pytest.raises(MediaError, match=f"^{name}: empty file"):
        reader(path)
    path.write_bytes(b"this is not media" * 20)
    with pytest.raises(MediaError, match=f"^{name}: not a valid"):
        reader(path)


def test_unsupported_and_kind():
    assert media.media_kind("a/b.JPG") == "image" and media.media_kind("x.opus") == "audio"
    assert media.media_kind("x.npy") == "depth" and media.media_kind("x.webm") == "video"
    with pytest.raises(MediaError, match=r"^x.txt: unsupported"):
        media.media_kind("x.txt")
    with pytest.raises(MediaError, match=r"^x.gif: unsupported image format"):
        media.read_image("x.gif")


def test_bad_tensors_rejected(tmp_path):
    with pytest.raises(MediaError, match="a.png: expected an image tensor"):
        media.write_image(tmp_path / "a.png", torch.zeros(4, 2, 2))
    with pytest.raises(MediaError, match="NaN"):
        media.write_audio(tmp_path / "a.wav", torch.full((1, 10), float("nan")), 16000)
