"""The one preprocessing: crop boxes, interpolation by kind, channels, audio and video fitting."""

import math

import pytest
import torch

from fsqtok.data import Box, Preprocess, fit_spatial


def test_square_of_the_target_size_is_cropped_exactly():
    x = torch.rand(3, 10, 14) * 2 - 1
    assert torch.equal(fit_spatial(x, 10, "image"), x[:, :, 2:12])  # centred square, no resampling
    box = Box(1, 3, 6, flip=True)
    assert torch.equal(fit_spatial(x, 6, "image", box), x[:, 1:7, 3:9].flip(-1))
    with pytest.raises(ValueError, match="does not fit"):
        fit_spatial(x, 6, "image", Box(5, 0, 6))


def test_image_resize_is_antialiased_bilinear_and_clamped():
    x = torch.zeros(1, 16, 16)
    x[..., ::4] = 1.0  # one bright column in four: antialiased 4x downsampling averages it to 0.25
    y = fit_spatial(x, 4, "image")
    assert torch.allclose(y[..., 1:3], torch.full((1, 4, 2), 0.25), atol=1e-6)  # (plain bilinear gives 0)
    assert fit_spatial(torch.full((3, 5, 5), 3.0), 2, "image").max() == 1.0


def test_nearest_kinds_never_mix_values():
    label = torch.arange(64).reshape(8, 8) * 1000 + 7
    out = fit_spatial(label, 3, "label")
    assert out.dtype == torch.int64 and set(out.flatten().tolist()) <= set(label.flatten().tolist())
    # centre-aligned: output pixel i samples source pixel floor((i + 0.5) * 8 / 3)
    assert out[:, 0].tolist() == [label[r, 1].item() for r in (1, 4, 6)]
    depth = torch.rand(1, 9, 9) + 1
    depth[..., :, :4] = float("nan")
    y = fit_spatial(depth, 4, "depth")
    finite = y[torch.isfinite(y)]
    assert torch.isnan(y).any() and all(bool((depth == v).any()) for v in finite)


def test_random_box_is_inside_and_seeded():
    g = torch.Generator().manual_seed(0)
    boxes = [Box.random(20, 30, g, min_scale=0.5, flip=True) for _ in range(50)]
    assert all(b.top >= 0 and b.left >= 0 and b.top + b.side <= 20 and b.left + b.side <= 30 for b in boxes)
    assert len({b.side for b in boxes}) > 5 and any(b.flip for b in boxes) and not all(b.flip for b in boxes)
    g2 = torch.Generator().manual_seed(0)
    assert boxes == [Box.random(20, 30, g2, min_scale=0.5, flip=True) for _ in range(50)]


def test_image_channels():
    rgb = torch.rand(3, 4, 4) * 2 - 1
    grey = Preprocess("image", channels=1).image(rgb)
    assert torch.allclose(grey[0], 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2], atol=1e-6)
    assert torch.equal(Preprocess("image", channels=3).image(grey), grey.expand(3, -1, -1))
    with pytest.raises(ValueError, match="has 2 channel"):
        Preprocess("image", channels=3).image(torch.zeros(2, 4, 4))


def test_audio_resample_mono_clip():
    t = torch.arange(8000) / 8000
    wav = torch.stack([torch.sin(2 * math.pi * 440 * t), torch.zeros(8000)])  # 1 s stereo at 8 kHz
    x, meta = Preprocess("audio", sample_rate=16000, channels=1, clip_seconds=1.5).audio(wav, 8000)
    assert x.shape == (1, 24000) and meta == {"sample_rate": 16000, "duration": 1.0}
    assert x[:, 16000:].abs().max() == 0 and x[:, :16000].abs().max() > 0.4  # half the sine: the mean of 2 channels
    y, meta = Preprocess("audio", clip_seconds=0.5).audio(wav, 8000)
    assert y.shape == (2, 4000) and meta["duration"] == 0.5


def test_video_repeats_last_frame_and_fits():
    v = torch.rand(3, 2, 6, 8) * 2 - 1
    y, meta = Preprocess("video", size=6, num_frames=4).video(v, 8.0)
    assert y.shape == (3, 4, 6, 6) and meta == {"fps": 8.0, "duration": 0.25}
    assert torch.equal(y[:, 3], y[:, 1]) and torch.equal(y[:, 0], v[:, 0, :, 1:7])


def test_identity_of_a_run():
    assert Preprocess("image").to_dict() == {"modality": "image", "size": None, "clip_seconds": None,
                                             "num_frames": None, "fps": None, "sample_rate": None}
    assert Preprocess("image", channels=3).to_dict() == Preprocess("image").to_dict()  # old runs resume
    assert Preprocess("image", channels=1).to_dict()["channels"] == 1
    assert Preprocess("image", size=8).to_dict()["fitting"] == 2  # resized runs from the old fit do not
