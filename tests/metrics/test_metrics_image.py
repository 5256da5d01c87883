import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from torchmetrics.functional.image import structural_similarity_index_measure

from fsqtok.metrics import psnr, ssim, video_psnr_ssim


def test_psnr_known_value_and_identical():
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 -> 10 log10(4 / 0.01)
    y[1] += 0.2  # MSE 0.04
    p = psnr(y, x)
    assert p.shape == (2,)
    assert torch.allclose(p, torch.tensor([10 * math.log10(400), 10 * math.log10(100)]), atol=1e-4)
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(psnr(y, x, data_range=1.0), p - 10 * math.log10(4), atol=1e-4)


def test_ssim_identity_and_monotone_in_noise():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2))
    n = torch.randn_like(x)
    s = [ssim((x + a * n).clamp(-1, 1), x).mean().item() for a in (0.05, 0.2, 0.5)]
    assert 1 > s[0] > s[1] > s[2]


def test_ssim_matches_skimage():
    x = torch.rand(1, 3, 40, 48) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    ref = structural_similarity(
        x[0].double().numpy(), y[0].double().numpy(),
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2, channel_axis=0,
    )
    assert np.isclose(ssim(x, y).item(), ref, atol=1e-6)


def test_ssim_is_closer_to_the_reference_than_torchmetrics_and_takes_small_images():
    """Why fsqtok keeps its own SSIM (see the ssim docstring): both claims, measured."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    ref = np.array([structural_similarity(a.double().numpy(), b.double().numpy(), gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=2, channel_axis=0) for a, b in zip(x, y)])
    ours = np.abs(ssim(x, y).numpy() - ref).max()
    theirs = np.abs(structural_similarity_index_measure(x, y, data_range=2.0, reduction="none").numpy() - ref).max()
    assert ours < 1e-6 and theirs > 1e-3
    small = torch.rand(2, 1, 5, 5, generator=g) * 2 - 1
    with pytest.raises(RuntimeError):
        structural_similarity_index_measure(small, small.flip(-1), data_range=2.0)
    s = ssim(small, small.flip(-1))
    assert s.shape == (2,) and torch.isfinite(s).all() and torch.allclose(ssim(small, small), torch.ones(2))


def test_video_is_frame_average():
    v = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    w = (v + 0.1 * torch.randn_like(v)).clamp(-1, 1)
    p, s = video_psnr_ssim(w, v)
    assert p.shape == s.shape == (2,)
    frames_p = torch.stack([psnr(w[:, :, t], v[:, :, t]) for t in range(4)], 1).mean(1)
    frames_s = torch.stack([ssim(w[:, :, t], v[:, :, t]) for t in range(4)], 1).mean(1)
    assert torch.allclose(p, frames_p) and torch.allclose(s, frames_s)
