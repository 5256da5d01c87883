"""1D SEANet/DAC encoder/decoder: hop, causality and the reported context."""

import pytest
import torch

from fsqtok.encoders import AudioDecoder, AudioEncoder
from fsqtok.encoders.audio import Snake1d, snake_inplace

KW = dict(latent_channels=4, base_channels=4, strides=(2, 4, 5, 8), dilations=(1, 3, 9))


@pytest.mark.parametrize("causal", [True, False])
def test_shapes(causal):
    enc, dec = AudioEncoder(1, causal=causal, **KW), AudioDecoder(1, causal=causal, **KW)
    assert enc.hop_length == 320
    z = enc(torch.randn(2, 1, 320 * 7))
    assert z.shape == (2, 4, 7)
    y = dec(z)
    assert y.shape == (2, 1, 320 * 7) and y.abs().max() <= 1


def test_causal_encoder_ignores_the_future_and_context_bounds_the_past():
    torch.manual_seed(0)
    enc = AudioEncoder(1, causal=True, **KW).eval()
    lookback, lookahead = enc.context()
    assert lookahead == 0 and lookback > 0
    hop, n = 320, 40
    x = torch.randn(1, 1, hop * n)
    with torch.no_grad():
        z = enc(x)
        future = x.clone()
        future[..., hop * 30 :] += 0.5  # changes tokens 30.. only
        z_future = enc(future)
        t = 35
        past = x.clone()
        past[..., : hop * t - lookback] += 0.5  # beyond token t's context
        z_past = enc(past)
    assert torch.equal(z[..., :30], z_future[..., :30]) and not torch.equal(z[..., 30:], z_future[..., 30:])
    assert torch.equal(z[..., t:], z_past[..., t:])


def test_causal_decoder_ignores_future_tokens():
    torch.manual_seed(0)
    dec = AudioDecoder(1, causal=True, **KW).eval()
    z = torch.randn(1, 4, 10)
    z2 = z.clone()
    z2[..., 6:] += 1.0
    with torch.no_grad():
        assert torch.equal(dec(z)[..., : 6 * 320], dec(z2)[..., : 6 * 320])


def test_inference_snake_is_the_training_snake_bit_for_bit():
    """Without autograd Snake runs in place (one buffer instead of five) with the same operations in the same order."""
    torch.manual_seed(0)
    snake = Snake1d(6)
    with torch.no_grad():
        snake.alpha.uniform_(0.05, 3.0)
    x = torch.randn(2, 6, 1000) * 3
    reference = snake(x)
    assert reference.requires_grad  # the training form
    with torch.inference_mode():
        fast = snake(x)
    assert torch.equal(fast, reference.detach()) and torch.equal(snake_inplace(x, snake.alpha.detach()), fast)
