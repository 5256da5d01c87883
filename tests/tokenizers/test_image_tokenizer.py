"""ImageTokenizer: shape contract, padding/cropping, rates, FSQ vs residual FSQ, bad input."""

import math

import pytest
import torch

from fsqtok.tokenizers import ImageConfig, ImageTokenizer, TokenizerOutput


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return ImageTokenizer().eval()


def image(*shape):
    return torch.rand(*shape) * 2 - 1


@pytest.mark.parametrize("hw", [(64, 64), (61, 75), (8, 8), (1, 1), (33, 17)])
@pytest.mark.parametrize("batch", [1, 2])
def test_shape_contract(tok, hw, batch):
    x = image(batch, 3, *hw)
    idx = tok.encode(x)
    assert idx.dtype == torch.int64
    assert tuple(idx.shape) == tok.tokens_shape(x.shape) == (batch, math.ceil(hw[0] / 8), math.ceil(hw[1] / 8))
    assert 0 <= int(idx.min()) and int(idx.max()) < tok.codebook_size
    assert tok.decode(idx, input_shape=x.shape).shape == x.shape
    # without the input shape, decode covers the padded size
    assert tok.decode(idx).shape == (batch, 3, idx.shape[1] * 8, idx.shape[2] * 8)


def test_default_config_and_rates(tok):
    assert tok.config == ImageConfig()
    assert tok.downsample_factor == 8 and tok.codebook_size == 1000 and tok.num_stages == 1
    assert tok.bits_per_token == pytest.approx(math.log2(1000))
    assert tok.bits_per_pixel == pytest.approx(math.log2(1000) / 64)
    info = tok.summary()
    assert info["modality"] == "image" and info["compression"].startswith("8x8") and info["parameters"] > 0


def test_forward_output(tok):
    x = image(2, 3, 40, 56)
    out = tok(x)
    assert isinstance(out, TokenizerOutput)
    assert out.reconstruction.shape == x.shape
    assert torch.equal(out.indices, tok.encode(x))
    assert out.quantizer_loss.ndim == 0 and float(out.quantizer_loss) == 0.0
    assert 0 < out.usage() <= 1 and out.perplexity() >= 1


def test_gradients_reach_the_encoder():
    tok = ImageTokenizer(ImageConfig(base_channels=4, channel_mult=(1, 2), mid_attention=False))
    tok(image(1, 3, 16, 16)).reconstruction.square().mean().backward()
    assert all(p.grad is not None for p in tok.encoder.parameters())


def test_f16_residual_and_grayscale_configs():
    cfg = ImageConfig(base_channels=4, channel_mult=(1, 1, 2, 2, 4), quantizer="rfsq", num_stages=3,
                      levels=(8, 8, 8, 5, 5, 5), latent_channels=8, in_channels=1)
    tok = ImageTokenizer(cfg).eval()
    x = image(1, 1, 70, 64)
    idx = tok.encode(x)
    assert idx.shape == tok.tokens_shape(x.shape) == (1, 3, 5, 4)
    assert tok.bits_per_pixel == pytest.approx(3 * math.log2(64000) / 256)
    assert tok.decode(idx, input_shape=x.shape).shape == x.shape
    torch.testing.assert_close(tok.decode(idx[:, :1]), tok.decode(idx, num_stages=1))


@pytest.mark.parametrize(
    "x,error,match",
    [
        (torch.full((1, 3, 16, 16), float("nan")), ValueError, "NaN"),
        (torch.full((1, 3, 16, 16), float("inf")), ValueError, "inf"),
        (torch.zeros(1, 4, 16, 16), ValueError, "3 channel"),
        (torch.zeros(3, 16, 16), ValueError, "3 dims"),
        (torch.zeros(1, 3, 0, 16), ValueError, "H=0"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), TypeError, "floating-point"),
        (torch.full((1, 3, 16, 16), 255.0), ValueError, r"\[-1, 1\]"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input(tok, x, error, match):
    with pytest.raises(error, match=match) as info:
        tok.encode(x)
    assert "\n" not in str(info.value) and str(info.value).startswith("ImageTokenizer: ")


def test_bad_indices(tok):
    good = tok.encode(image(1, 3, 16, 16))
    with pytest.raises(TypeError, match="integer"):
        tok.decode(good.float())
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        tok.decode(good + 1000)
    with pytest.raises(ValueError, match="3 dims"):
        tok.decode(good[0])
    with pytest.raises(ValueError, match="do not come from"):
        tok.decode(good, input_shape=(1, 3, 64, 64))
    with pytest.raises(ValueError, match="rfsq"):
        tok.decode(good, num_stages=2)
