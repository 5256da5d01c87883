"""VideoTokenizer: 1 + k*tau frames, first frame alone, padding, chunked == whole, bad input."""

import math

import pytest
import torch

from fsqtok.tokenizers import VideoConfig, VideoTokenizer


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return VideoTokenizer().eval()


def video(*shape):
    return torch.rand(*shape) * 2 - 1


def test_defaults_and_rates(tok):
    assert (tok.temporal_factor, tok.downsample_factor) == (4, 8)
    assert tok.codebook_size == 64000
    assert tok.bits_per_pixel == pytest.approx(math.log2(64000) / (4 * 64))
    assert tok.tokens_per_second(256, 256) == pytest.approx(24 / 4 * 32 * 32)
    assert tok.summary()["compression"].startswith("4x8x8")


@pytest.mark.parametrize("thw,latent", [((9, 64, 64), (3, 8, 8)), ((1, 16, 16), (1, 2, 2)), ((10, 20, 13), (4, 3, 2)),
                                        ((5, 8, 8), (2, 1, 1))])
def test_shape_contract(tok, thw, latent):
    x = video(1, 3, *thw)
    idx = tok.encode(x)
    assert idx.dtype == torch.int64
    assert tuple(idx.shape) == tok.tokens_shape(x.shape) == (1, *latent)
    assert tok.decode(idx, input_shape=x.shape).shape == x.shape
    assert tok.decode(idx).shape == (1, 3, 1 + (latent[0] - 1) * 4, latent[1] * 8, latent[2] * 8)


def test_one_frame_video_is_an_image(tok):
    x = video(2, 3, 9, 16, 16)
    assert torch.equal(tok.encode(x[:, :, :1])[:, 0], tok.encode(x)[:, 0])


def test_forward(tok):
    x = video(1, 3, 5, 16, 24)
    out = tok(x)
    assert out.reconstruction.shape == x.shape and torch.equal(out.indices, tok.encode(x))


@pytest.mark.parametrize("chunk_frames", [4, 8])
def test_chunked_encoding_equals_whole(tok, chunk_frames):
    x = video(1, 3, 26, 16, 24)  # padded to 29 frames: 8 latent frames
    assert torch.equal(tok.encode_chunked(x, chunk_frames=chunk_frames), tok.encode(x))


def test_residual_config():
    cfg = VideoConfig(quantizer="rfsq", num_stages=2, levels=(8, 5, 5, 5), base_channels=4)
    tok = VideoTokenizer(cfg).eval()
    x = video(1, 3, 5, 16, 16)
    idx = tok.encode(x)
    assert idx.shape == tok.tokens_shape(x.shape) == (1, 2, 2, 2, 2)
    assert tok.decode(idx, num_stages=1, input_shape=x.shape).shape == x.shape
    assert torch.equal(tok.encode_chunked(x, chunk_frames=4), idx)


@pytest.mark.parametrize(
    "x,error,match",
    [
        (torch.full((1, 3, 5, 8, 8), float("nan")), ValueError, "NaN"),
        (torch.zeros(1, 3, 0, 8, 8), ValueError, "T=0"),
        (torch.zeros(1, 1, 5, 8, 8), ValueError, "3 channel"),
        (torch.zeros(1, 3, 8, 8), ValueError, "4 dims"),
        (torch.full((1, 3, 1, 8, 8), 200.0), ValueError, r"\[-1, 1\]"),
    ],
)
def test_bad_input(tok, x, error, match):
    with pytest.raises(error, match=match) as info:
        tok.encode(x)
    assert str(info.value).startswith("VideoTokenizer: ") and "\n" not in str(info.value)
    with pytest.raises(error, match=match):
        tok.encode_chunked(x, chunk_frames=4)


def test_bad_chunk_size(tok):
    with pytest.raises(ValueError, match="multiple of tau=4"):
        tok.encode_chunked(video(1, 3, 5, 8, 8), chunk_frames=6)


def test_config_validation():
    with pytest.raises(ValueError, match=r"VideoConfig.temporal_downsample: needs len\(channel_mult\) - 1 = 3"):
        VideoConfig(temporal_downsample=(True,))
    with pytest.raises(ValueError, match=r"VideoConfig.temporal_downsample: expected a list of true/false"):
        VideoConfig(temporal_downsample=(1, 1, 0))
