"""2D encoder/decoder (images and depth): shapes at f=8 and f=16, gradients."""

import pytest
import torch

from fsqtok.encoders import ImageDecoder, ImageEncoder


@pytest.mark.parametrize("mult,f", [((1, 2, 2, 4), 8), ((1, 1, 2, 2, 4), 16)])
@pytest.mark.parametrize("attention", [True, False])
def test_encoder_decoder_shapes(mult, f, attention):
    kw = dict(latent_channels=5, base_channels=4, channel_mult=mult, num_res_blocks=1, mid_attention=attention)
    enc, dec = ImageEncoder(3, **kw), ImageDecoder(3, **kw)
    assert enc.downsample_factor == f
    z = enc(torch.randn(2, 3, 2 * f, 3 * f))
    assert z.shape == (2, 5, 2, 3)
    assert dec(z).shape == (2, 3, 2 * f, 3 * f)


def test_one_channel_and_gradients():
    enc = ImageEncoder(1, 4, base_channels=4, channel_mult=(1, 2), num_res_blocks=2)
    dec = ImageDecoder(1, 4, base_channels=4, channel_mult=(1, 2), num_res_blocks=2)
    x = torch.randn(1, 1, 8, 8, requires_grad=True)
    dec(enc(x)).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in enc.parameters())
