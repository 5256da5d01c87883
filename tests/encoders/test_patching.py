"""fsqtok.encoders.patching: the Haar bands as Cosmos orders them, exact inverses, the first video frame alone."""

import pytest
import torch

from fsqtok.encoders.patching import Patcher, UnPatcher, haar_merge, haar_split


def test_one_haar_level_of_a_2x2_block():
    """Bands (width filter, height filter): LL = mean, LH = (top - bottom) / 4, HL = (left - right) / 4, HH."""
    a, b, c, d = 1.0, 2.0, 4.0, 8.0  # [[a, b], [c, d]]
    x = torch.tensor([[[[a, b], [c, d]]]])
    bands = haar_split(x, (3, 2)).flatten().tolist()
    assert bands == [(a + b + c + d) / 4, (a + b - c - d) / 4, (a - b + c - d) / 4, (a - b - c + d) / 4]


def test_band_major_channel_order():
    x = torch.arange(2 * 4, dtype=torch.float64).reshape(1, 2, 2, 2)  # channel 1 = channel 0 + 4
    y = haar_split(x, (3, 2))  # (1, 8, 1, 1): band * C + c
    assert torch.equal(y[0, 1::2, 0, 0] - y[0, 0::2, 0, 0], torch.tensor([4.0, 0, 0, 0], dtype=torch.float64))


@pytest.mark.parametrize("method", ["haar", "rearrange"])
@pytest.mark.parametrize("patch_size", [1, 2, 4])
def test_patching_is_exactly_invertible(method, patch_size):
    image = torch.randn(2, 3, 8, 16, dtype=torch.float64)
    y = Patcher(patch_size, method)(image)
    assert y.shape == (2, 3 * patch_size**2, 8 // patch_size, 16 // patch_size)
    assert torch.allclose(UnPatcher(patch_size, method)(y), image, atol=1e-12)
    video = torch.randn(1, 3, 1 + 2 * patch_size, 8, 8, dtype=torch.float64)
    y = Patcher(patch_size, method, video=True)(video)
    assert y.shape == (1, 3 * patch_size**3, 3, 8 // patch_size, 8 // patch_size)
    assert torch.allclose(UnPatcher(patch_size, method, video=True)(y), video, atol=1e-12)


def test_the_first_video_frame_is_patched_alone():
    video = torch.randn(1, 3, 5, 4, 4)
    changed = video.clone()
    changed[:, :, 1:] += 1
    a, b = Patcher(4, "haar", video=True)(video), Patcher(4, "haar", video=True)(changed)
    assert torch.equal(a[:, :, 0], b[:, :, 0]) and not torch.equal(a[:, :, 1], b[:, :, 1])


def test_haar_merge_inverts_three_axes():
    x = torch.randn(2, 3, 4, 6, 8, dtype=torch.float64)
    assert torch.allclose(haar_merge(haar_split(x, (2, 3, 4)), (2, 3, 4)), x, atol=1e-12)


def test_patch_size_and_method_are_checked():
    with pytest.raises(ValueError, match="patch_size must be a power of 2, got 3"):
        Patcher(3)
    with pytest.raises(ValueError, match="patch method must be one of haar, rearrange, got 'wavelet'"):
        Patcher(2, "wavelet")
