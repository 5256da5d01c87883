"""Causal 3D encoder/decoder: 1 + k*tau frames <-> 1 + k latents, first frame alone, causality."""

import pytest
import torch

from fsqtok.encoders import VideoDecoder, VideoEncoder

KW = dict(latent_channels=3, base_channels=4, channel_mult=(1, 2, 2, 2), temporal_downsample=(True, True, False),
          num_res_blocks=1)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return VideoEncoder(3, **KW).eval(), VideoDecoder(3, **KW).eval()


@pytest.mark.parametrize("k", [0, 1, 3])
def test_shapes(nets, k):
    enc, dec = nets
    assert (enc.temporal_factor, enc.spatial_factor) == (4, 8)
    with torch.no_grad():
        z = enc(torch.randn(1, 3, 1 + 4 * k, 16, 24))
        assert z.shape == (1, 3, 1 + k, 2, 3)
        assert dec(z).shape == (1, 3, 1 + 4 * k, 16, 24)


def test_first_frame_is_encoded_alone(nets):
    enc, _ = nets
    x = torch.randn(1, 3, 9, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(enc(x)[:, :, :1], enc(x[:, :, :1]), rtol=0, atol=1e-5)


def test_encoder_and_decoder_are_causal_in_time(nets):
    enc, dec = nets
    x = torch.randn(1, 3, 13, 16, 16)
    x2 = x.clone()
    x2[:, :, 5:] = torch.randn_like(x2[:, :, 5:])  # frames 5.. feed latents 2.. (latent t covers frames <= 4t)
    with torch.no_grad():
        z, z2 = enc(x), enc(x2)
        assert torch.allclose(z[:, :, :2], z2[:, :, :2], atol=1e-5) and not torch.allclose(z, z2)
        z3 = z.clone()
        z3[:, :, 2:] += 1.0  # latents 2.. feed frames 5..
        assert torch.allclose(dec(z)[:, :, :5], dec(z3)[:, :, :5], atol=1e-5)
    assert enc.lookback_frames() > 0


def test_bad_temporal_downsample_length():
    with pytest.raises(ValueError, match="temporal_downsample"):
        VideoEncoder(3, **{**KW, "temporal_downsample": (True,)})
