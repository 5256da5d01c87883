"""DepthTokenizer: metric normalization, invalid pixels never reach the network, metres out."""

import math

import pytest
import torch

from fsqtok.tokenizers import DepthConfig, DepthOutput, DepthTokenizer


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return DepthTokenizer().eval()


def depth(*shape):
    return torch.rand(*shape) * 9.5 + 0.5


@pytest.mark.parametrize("transform", ["log", "inverse"])
def test_normalize_round_trip(transform):
    tok = DepthTokenizer(DepthConfig(depth_transform=transform, min_depth=0.2, max_depth=20.0))
    d = torch.tensor([0.2, 0.5, 1.0, 3.3, 20.0]).view(1, 1, 1, 5)
    n, valid = tok.normalize_depth(d)
    assert valid.all() and n.min() >= -1 and n.max() <= 1
    assert n[0, 0, 0, 0].abs() == pytest.approx(1.0) and n[0, 0, 0, -1].abs() == pytest.approx(1.0)
    torch.testing.assert_close(tok.denormalize_depth(n), d, rtol=1e-5, atol=0)
    # out-of-range depth is clamped
    assert tok.denormalize_depth(tok.normalize_depth(torch.full((1, 1, 1, 1), 500.0))[0]).item() == pytest.approx(20.0)


def test_invalid_pixels_are_masked_and_never_fed_as_nan(tok):
    d = depth(2, 1, 30, 41)
    bad = [(0, 0, 0, 0), (0, 0, 5, 7), (1, 0, 29, 40), (1, 0, 3, 3), (0, 0, 10, 10)]
    for (b, c, i, j), v in zip(bad, [float("nan"), float("inf"), 0.0, -2.0, float("-inf")]):
        d[b, c, i, j] = v
    seen = []
    hook = tok.encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        out = tok(d)
        idx = tok.encode(d)
    finally:
        hook.remove()
    assert all(torch.isfinite(t).all() for t in seen)
    assert isinstance(out, DepthOutput)
    assert out.valid_mask.shape == d.shape and out.valid_mask.dtype == torch.bool
    assert int((~out.valid_mask).sum()) == len(bad)
    assert all(not out.valid_mask[p] for p in bad)
    assert out.target.shape == out.reconstruction_normalized.shape == d.shape
    assert torch.isfinite(out.target).all() and (out.target[~out.valid_mask] == 0).all()
    # decode returns metres within the configured range
    metres = tok.decode(idx, input_shape=d.shape)
    assert metres.shape == d.shape and torch.isfinite(metres).all()
    assert metres.min() >= tok.config.min_depth - 1e-6 and metres.max() <= tok.config.max_depth * (1 + 1e-5)
    # decode's inference convs (channels-last) round apart from the forward's; metres amplify it (tests/tokenizers/test_inference_path.py)
    torch.testing.assert_close(out.reconstruction, metres, rtol=1e-4, atol=0)


def test_shapes_and_rates(tok):
    x = depth(1, 1, 45, 64)
    idx = tok.encode(x)
    assert idx.shape == tok.tokens_shape(x.shape) == (1, 6, 8)
    assert tok.bits_per_pixel == pytest.approx(math.log2(1000) / 64)
    assert "log depth" in tok.summary()["compression"]


def test_bad_input(tok):
    with pytest.raises(ValueError, match="1 channel"):
        tok.encode(depth(1, 3, 16, 16))
    with pytest.raises(ValueError, match="3 dims"):
        tok.encode(depth(1, 16, 16))
    with pytest.raises(TypeError, match="floating-point"):
        tok.encode(torch.ones(1, 1, 8, 8, dtype=torch.int32))
    # all-invalid input is fine: nothing but the neutral value reaches the network
    assert tok.encode(torch.full((1, 1, 8, 8), float("nan"))).shape == (1, 1, 1)


def test_config_validation():
    with pytest.raises(ValueError, match=r"DepthConfig.max_depth: must be > min_depth"):
        DepthConfig(min_depth=5.0, max_depth=1.0)
    with pytest.raises(ValueError, match=r"DepthConfig.depth_transform"):
        DepthConfig(depth_transform="disparity")
    with pytest.raises(ValueError, match=r"DepthConfig.min_depth: must be > 0"):
        DepthConfig(min_depth=0.0)
